"""Split-K sparse/dense decode over a paged or token-slot KV cache, plus the split merge.

One program per (query row, KV head [, head chunk], split). The tile's M dimension packs
the G query heads of the KV-head group (padded to >= 16 rows for tl.dot), so each K/V
tile is loaded once and used by every head of the group. Selections are deduplicated
in-kernel (a slot whose id equals an earlier slot's id is skipped).
"""
import itertools

import triton
import triton.language as tl
from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait

from .gate import GateCase

LN2 = tl.constexpr(0.6931471805599453)
TOPK_P2 = 64  # selection vector width (topK <= 64)
MERGE_BLOCK_S = (2, 4, 8, 16)  # splits merged per step: the smallest that holds them all, else 16


def merge_block_s(num_splits):
    return next((b for b in MERGE_BLOCK_S if b >= num_splits), MERGE_BLOCK_S[-1])


# e4m3 -> fp16 (exact), 4 per asm instance, for targets where FP8_CAST spills (SM12x). Triton
# sinks pure casts past the shared-memory staging of a dot operand; an asm marked impure stays
# in the load layout, so the tile is converted in registers and staged as fp16.
FP8_TO_FP16_ASM = tl.constexpr(
    "{ .reg .b16 lo, hi; mov.b32 {lo, hi}, $2; cvt.rn.f16x2.e4m3x2 $0, lo; cvt.rn.f16x2.e4m3x2 $1, hi; }")


@triton.jit
def _fp8_to_fp16(x, FP8_CAST: tl.constexpr):
    if FP8_CAST:
        return x.to(tl.float16)
    return tl.inline_asm_elementwise(FP8_TO_FP16_ASM, "=r,=r,r", [x.to(tl.uint8, bitcast=True)],
                                     dtype=tl.float16, is_pure=False, pack=4)


@triton.jit
def _tile_rows(it, ids, pages, offs_s, offs_n, vis_end, table_base, table_cols, cache_rows, blk_kv,
               sub_tiles, k_head_off, v_head_off, stride_kc, stride_kt, stride_vc, stride_vt,
               BLOCK_N: tl.constexpr, PAGED: tl.constexpr, SPARSE: tl.constexpr):
    """K and V row offsets of the program's tile `it` and which of its tokens count."""
    if SPARSE:
        slot = it // sub_tiles
        pick = offs_s == slot
        block_id = tl.max(tl.where(pick, ids, -1), axis=0)
        tok0 = block_id * blk_kv + (it - slot * sub_tiles) * BLOCK_N
        pos = tok0 + offs_n
        tok_ok = (block_id >= 0) & (pos < vis_end)
        if PAGED:
            page = tl.max(tl.where(pick, pages, -1), axis=0)
            in_page = pos - block_id * blk_kv
    else:
        tok0 = it * BLOCK_N
        pos = tok0 + offs_n
        tile_ok = tok0 < vis_end
        tok_ok = tile_ok & (pos < vis_end)
        if PAGED:
            page_idx = tok0 // blk_kv
            page = tl.load(table_base + page_idx, mask=tile_ok & (page_idx < table_cols), other=-1)
            tok_ok = tok_ok & (page >= 0) & (page < cache_rows)
            in_page = pos - page_idx * blk_kv
    if PAGED:
        k_rows = page.to(tl.int64) * stride_kc + k_head_off + in_page * stride_kt
        v_rows = page.to(tl.int64) * stride_vc + v_head_off + in_page * stride_vt
    else:
        slot_id = tl.load(table_base + pos, mask=tok_ok & (pos < table_cols), other=-1)
        tok_ok = tok_ok & (slot_id >= 0) & (slot_id < cache_rows)
        k_rows = slot_id.to(tl.int64) * stride_kc + k_head_off
        v_rows = slot_id.to(tl.int64) * stride_vc + v_head_off
    # Host validation makes every cache stride a multiple of 16 elements: 16-byte vector loads.
    return tl.multiple_of(k_rows, 16), tl.multiple_of(v_rows, 16), tok_ok


@triton.jit
def sparse_decode_kernel(
    q_ptr, k_ptr, v_ptr, idx_ptr, seqused_ptr, table_ptr, req_row_ptr,
    sink_ptr, k_scale_ptr, v_scale_ptr,
    out_ptr, lse_ptr, o_part_ptr, lse_part_ptr,
    qk_scale_log2,
    rows, seqlen_q, num_heads_q, group, topk, blk_kv, num_splits,
    cache_rows, table_cols, table_rows,
    stride_qt, stride_qh,
    stride_kc, stride_kh, stride_kt,
    stride_vc, stride_vh, stride_vt,
    stride_ih, stride_it,
    stride_table,
    causal, has_sink, has_k_scale, has_v_scale,
    HEAD_DIM: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_N: tl.constexpr, TOPK_P2: tl.constexpr,
    PAGED: tl.constexpr, SPARSE: tl.constexpr, FP8_CAST: tl.constexpr, USE_PDL: tl.constexpr,
):
    if USE_PDL:
        gdc_wait()  # launched before the previous kernel finished (programmatic dependent launch)
    row = tl.program_id(0)
    head_block = tl.program_id(1)
    split = tl.program_id(2)
    n_chunks = tl.cdiv(group, BLOCK_G)
    kvh = head_block // n_chunks
    g0 = (head_block % n_chunks) * BLOCK_G
    b = row // seqlen_q
    qi = row % seqlen_q

    offs_g = tl.arange(0, BLOCK_G)
    offs_d = tl.arange(0, HEAD_DIM)
    offs_n = tl.arange(0, BLOCK_N)
    offs_s = tl.arange(0, TOPK_P2)
    if SPARSE:
        # Issued before the length load: the two loads overlap instead of chaining.
        ids = tl.load(idx_ptr + kvh.to(tl.int64) * stride_ih + row.to(tl.int64) * stride_it + offs_s,
                      mask=offs_s < topk, other=-1)
    kv_len = tl.maximum(tl.load(seqused_ptr + b), 0)
    if PAGED:
        table_base = table_ptr + b.to(tl.int64) * stride_table
    else:
        req = tl.load(req_row_ptr + b)
        req_ok = (req >= 0) & (req < table_rows)
        kv_len = tl.where(req_ok, kv_len, 0)
        table_base = table_ptr + tl.where(req_ok, req, 0).to(tl.int64) * stride_table
    # Bottom-right causal: query qi sits at kv_len - seqlen_q + qi.
    vis_end = tl.maximum(kv_len - causal * (seqlen_q - 1 - qi), 0)
    g_ok = (g0 + offs_g) < group
    head = kvh * group + g0 + offs_g
    q = tl.load(q_ptr + row.to(tl.int64) * stride_qt + head[:, None] * stride_qh + offs_d[None, :],
                mask=g_ok[:, None], other=0.0)

    # torch.compile passes Python floats as fp64 scalars: pin the softmax math to fp32.
    qk_scale_log2 = tl.cast(qk_scale_log2, tl.float32)
    qk_scale = qk_scale_log2
    if has_k_scale:
        qk_scale = qk_scale * tl.load(k_scale_ptr)
    if k_ptr.dtype.element_ty == tl.float8e4nv:
        # FP8 K/V run the MMAs in fp16: e4m3 -> fp16 is one exact instruction per pair (bf16
        # needs a second conversion). A bf16 Q is scaled by a power of two into fp16 range
        # (exact); the scale comes back out through qk_scale.
        if q.dtype == tl.bfloat16:
            q32 = q.to(tl.float32)
            amax = tl.max(tl.max(tl.abs(q32), axis=1), axis=0)
            q_exp = tl.floor(tl.log2(tl.maximum(amax, 1e-30)))
            q_mul = tl.exp2(8.0 - q_exp)
            q_mma = (q32 * q_mul).to(tl.float16)
            qk_scale = qk_scale / q_mul
        else:
            q_mma = q.to(tl.float16)
    else:
        q_mma = q

    sub_tiles = blk_kv // BLOCK_N
    if SPARSE:
        nb = tl.cdiv(vis_end, blk_kv)  # blocks past the causal end hold nothing visible
        earlier_same = (ids[:, None] == ids[None, :]) & (offs_s[None, :] < offs_s[:, None])
        is_dup = tl.max(earlier_same.to(tl.int32), axis=1) > 0
        ids = tl.where((ids >= 0) & (ids < nb) & (~is_dup), ids, -1)
        if PAGED:
            # Every selected page is looked up once, up front: no page-table load in the loop.
            pages = tl.load(table_base + ids, mask=(ids >= 0) & (ids < table_cols), other=-1)
            pages = tl.where((pages >= 0) & (pages < cache_rows), pages, -1)
            ids = tl.where(pages >= 0, ids, -1)
        else:
            pages = ids
        n_tiles = topk * sub_tiles
    else:
        ids = offs_s  # unused: the dense path walks the visible length
        pages = offs_s
        n_tiles = tl.cdiv(vis_end, BLOCK_N)
    per_split = tl.cdiv(n_tiles, num_splits)
    it_begin = split * per_split
    it_end = tl.minimum(it_begin + per_split, n_tiles)

    m_i = tl.full([BLOCK_G], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_G], tl.float32)
    acc = tl.zeros([BLOCK_G, HEAD_DIM], tl.float32)
    k_head_off = kvh.to(tl.int64) * stride_kh
    v_head_off = kvh.to(tl.int64) * stride_vh
    for it in range(it_begin, it_end):
        k_rows, v_rows, tok_ok = _tile_rows(
            it, ids, pages, offs_s, offs_n, vis_end, table_base, table_cols, cache_rows, blk_kv, sub_tiles,
            k_head_off, v_head_off, stride_kc, stride_kt, stride_vc, stride_vt, BLOCK_N, PAGED, SPARSE)
        k = tl.load(k_ptr + k_rows[:, None] + offs_d[None, :], mask=tok_ok[:, None], other=0.0)
        # Paged sparse issues V with K, so its fetch overlaps QK and the softmax; the dense and
        # token-slot paths hold more live addresses and would spill on SM12x, so they load V late.
        if SPARSE and PAGED:
            v = tl.load(v_ptr + v_rows[:, None] + offs_d[None, :], mask=tok_ok[:, None], other=0.0)
        if k_ptr.dtype.element_ty == tl.float8e4nv:
            # FP8_CAST: plain casts, applied by the compiler after staging the 8-bit tiles in shared
            # memory, so its pipeliner keeps the next tiles' loads in flight (H200: B=64 58 us
            # against 72 us converting in registers right after the load).
            k = _fp8_to_fp16(k, FP8_CAST)
        qk = tl.dot(q_mma, tl.trans(k.to(q_mma.dtype))) * qk_scale
        qk = tl.where(tok_ok[None, :], qk, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(qk, axis=1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha = tl.exp2(m_i - m_safe)
        p = tl.exp2(qk - m_safe[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        if not (SPARSE and PAGED):
            v = tl.load(v_ptr + v_rows[:, None] + offs_d[None, :], mask=tok_ok[:, None], other=0.0)
        if k_ptr.dtype.element_ty == tl.float8e4nv:
            v = _fp8_to_fp16(v, FP8_CAST)
        acc = acc * alpha[:, None] + tl.dot(p.to(q_mma.dtype), v.to(q_mma.dtype))
        m_i = m_new

    if has_v_scale:
        acc = acc * tl.load(v_scale_ptr)
    out_rows = (row.to(tl.int64) * num_heads_q + head)
    if num_splits == 1:
        if has_sink:
            sink = tl.load(sink_ptr + head[:, None] * HEAD_DIM + offs_d[None, :], mask=g_ok[:, None], other=0.0)
            sink_logit = tl.sum(q.to(tl.float32) * sink, axis=1) * qk_scale_log2
            m_f = tl.maximum(m_i, sink_logit)
            rescale = tl.exp2(m_i - m_f)
            l_i = l_i * rescale + tl.exp2(sink_logit - m_f)
            acc = acc * rescale[:, None]
            m_i = m_f
        l_safe = tl.where(l_i == 0.0, 1.0, l_i)
        lse = tl.where(l_i == 0.0, float("-inf"), (m_i + tl.log2(l_safe)) * LN2)
        tl.store(out_ptr + out_rows[:, None] * HEAD_DIM + offs_d[None, :],
                 (acc / l_safe[:, None]).to(out_ptr.dtype.element_ty), mask=g_ok[:, None])
        tl.store(lse_ptr + out_rows, lse, mask=g_ok)
    else:
        # Partials: normalised output and log2-domain LSE; the merge adds the sink.
        l_safe = tl.where(l_i == 0.0, 1.0, l_i)
        lse2 = tl.where(l_i == 0.0, float("-inf"), m_i + tl.log2(l_safe))
        part_rows = split.to(tl.int64) * rows * num_heads_q + out_rows
        tl.store(o_part_ptr + part_rows[:, None] * HEAD_DIM + offs_d[None, :], acc / l_safe[:, None],
                 mask=g_ok[:, None])
        tl.store(lse_part_ptr + part_rows, lse2, mask=g_ok)
    if USE_PDL:
        # Triggered last: an earlier trigger lets the merge grid take SM slots the split grid needs
        # (measured slower); this one still hides the merge kernel's launch.
        gdc_launch_dependents()


@triton.jit
def split_merge_kernel(
    o_part_ptr, lse_part_ptr, q_ptr, sink_ptr, out_ptr, lse_ptr,
    qk_scale_log2, rows, num_heads_q, num_splits, stride_qt, stride_qh, has_sink,
    HEAD_DIM: tl.constexpr, BLOCK_S: tl.constexpr, USE_PDL: tl.constexpr,
):
    if USE_PDL:
        gdc_wait()  # the split kernel's partials
    row = tl.program_id(0)
    head = tl.program_id(1)
    qk_scale_log2 = tl.cast(qk_scale_log2, tl.float32)
    offs_d = tl.arange(0, HEAD_DIM)
    offs_s = tl.arange(0, BLOCK_S)
    out_row = row.to(tl.int64) * num_heads_q + head
    # `rows` may arrive specialised to the constant 1: keep it out of tensor-method calls.
    plane = num_heads_q * rows
    m = tl.max(tl.full([BLOCK_S], float("-inf"), tl.float32), axis=0)
    denom = tl.sum(tl.zeros([BLOCK_S], tl.float32), axis=0)
    acc = tl.zeros([HEAD_DIM], tl.float32)
    for s0 in range(0, num_splits, BLOCK_S):
        s = s0 + offs_s
        part = s.to(tl.int64) * plane + out_row
        lse_s = tl.load(lse_part_ptr + part, mask=s < num_splits, other=float("-inf"))
        m_new = tl.maximum(m, tl.max(lse_s, axis=0))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        w = tl.exp2(lse_s - m_safe)
        alpha = tl.exp2(m - m_safe)
        # Every split stored its partial (0 where it saw no key) and w is 0 where lse is -inf,
        # so the O load needs no LSE test and both loads are in flight together.
        o_s = tl.load(o_part_ptr + part[:, None] * HEAD_DIM + offs_d[None, :],
                      mask=(s < num_splits)[:, None], other=0.0)
        acc = acc * alpha + tl.sum(w[:, None] * o_s, axis=0)
        denom = denom * alpha + tl.sum(w, axis=0)
        m = m_new
    if has_sink:
        q = tl.load(q_ptr + row.to(tl.int64) * stride_qt + head * stride_qh + offs_d).to(tl.float32)
        sink_logit = tl.sum(q * tl.load(sink_ptr + head * HEAD_DIM + offs_d), axis=0) * qk_scale_log2
        m_f = tl.maximum(m, sink_logit)
        rescale = tl.exp2(m - m_f)
        denom = denom * rescale + tl.exp2(sink_logit - m_f)
        acc = acc * rescale
        m = m_f
    d_safe = tl.where(denom == 0.0, 1.0, denom)
    tl.store(out_ptr + out_row * HEAD_DIM + offs_d, (acc / d_safe).to(out_ptr.dtype.element_ty))
    tl.store(lse_ptr + out_row, tl.where(denom == 0.0, float("-inf"), (m + tl.log2(d_safe)) * LN2))


def block_g_for(group, kv_fp8=False):
    """Rows of the head tile: >= 16 for tl.dot, at most 64 (32 for FP8 K/V, whose fp16 staging
    spills at 64 rows on SM12x); larger groups use head chunks."""
    return min(max(16, triton.next_power_of_2(group)), 32 if kv_fp8 else 64)


def num_warps_for(block_g):
    return 8 if block_g >= 32 else 4


def default_config(arch_major, block_g, blk_kv, kv_fp8, one_wave=False):
    """(BLOCK_N, num_warps, num_stages). Hopper (228 KB smem) takes 128-token tiles;
    SM12x (101 KB) and everything else 64. On Hopper, FP8 K/V (half the bytes per stage) and a
    16-bit grid that fits one program per SM (`one_wave`) pipeline 3 tiles deep: with few
    programs per SM, loads in flight per program set the bandwidth (H200 sweeps)."""
    block_n = 128 if arch_major == 9 and blk_kv >= 128 else 64
    stages = 3 if arch_major == 9 and (one_wave or kv_fp8) else 2
    return block_n, num_warps_for(block_g), stages


def fp8_cast_supported(arch_major):
    """FP8 K/V by plain casts (see the kernel) on Hopper; on SM12x they spill (gate), so the
    conversion stays in registers there."""
    return arch_major == 9


def pdl_supported(arch_major):
    """Programmatic dependent launch (griddepcontrol) needs sm_90 or newer."""
    return arch_major >= 9


# (q dtype, kv dtype, out dtype) combinations the launcher accepts.
DTYPE_KINDS = (
    ("bf16", "bf16", "bf16"),
    ("fp16", "fp16", "fp16"),
    ("bf16", "fp8e4nv", "bf16"),
    ("fp16", "fp8e4nv", "fp16"),
    ("fp8e4nv", "fp8e4nv", "bf16"),
)


def _decode_signature(q_t, kv_t, out_t):
    sig = {
        "q_ptr": "*" + q_t, "k_ptr": "*" + kv_t, "v_ptr": "*" + kv_t, "idx_ptr": "*i32", "seqused_ptr": "*i32",
        "table_ptr": "*i32", "req_row_ptr": "*i32", "sink_ptr": "*fp32", "k_scale_ptr": "*fp32",
        "v_scale_ptr": "*fp32", "out_ptr": "*" + out_t, "lse_ptr": "*fp32", "o_part_ptr": "*fp32",
        "lse_part_ptr": "*fp32", "qk_scale_log2": "fp32",
    }
    for name in ("rows", "seqlen_q", "num_heads_q", "group", "topk", "blk_kv", "num_splits", "cache_rows",
                 "table_cols", "table_rows", "stride_qt", "stride_qh", "stride_kc", "stride_kh", "stride_kt",
                 "stride_vc", "stride_vh", "stride_vt", "stride_ih", "stride_it", "stride_table", "causal",
                 "has_sink", "has_k_scale", "has_v_scale"):
        sig[name] = "i32"
    for name in ("HEAD_DIM", "BLOCK_G", "BLOCK_N", "TOPK_P2", "PAGED", "SPARSE", "FP8_CAST", "USE_PDL"):
        sig[name] = "constexpr"
    return sig


def gate_cases():
    cases = []
    for q_t, kv_t, out_t in DTYPE_KINDS:
        for head_dim in (64, 128):
            for block_g in sorted({block_g_for(g, kv_t == "fp8e4nv") for g in (16, 32, 64)}):
                block_n, num_warps, num_stages = default_config(12, block_g, 128, kv_t == "fp8e4nv")
                for paged, sparse, pdl in itertools.product((True, False), (True, False), (True, False)):
                    tag = "{}q,{}kv,D{},G{},{},{}{}".format(
                        q_t, kv_t, head_dim, block_g, "paged" if paged else "slot", "sparse" if sparse else "dense",
                        ",pdl" if pdl else "")
                    cases.append(GateCase(
                        name="sparse_decode[" + tag + "]", fn=sparse_decode_kernel,
                        signature=_decode_signature(q_t, kv_t, out_t),
                        constexprs={"HEAD_DIM": head_dim, "BLOCK_G": block_g, "BLOCK_N": block_n,
                                    "TOPK_P2": TOPK_P2, "PAGED": paged, "SPARSE": sparse,
                                    "FP8_CAST": fp8_cast_supported(12), "USE_PDL": pdl},
                        num_warps=num_warps, num_stages=num_stages))
    merge_kinds = sorted({(q_t, out_t) for q_t, _, out_t in DTYPE_KINDS})
    for q_t, out_t in merge_kinds:
        for head_dim in (64, 128):
            sig = {"o_part_ptr": "*fp32", "lse_part_ptr": "*fp32", "q_ptr": "*" + q_t, "sink_ptr": "*fp32",
                   "out_ptr": "*" + out_t, "lse_ptr": "*fp32", "qk_scale_log2": "fp32"}
            for name in ("rows", "num_heads_q", "num_splits", "stride_qt", "stride_qh", "has_sink"):
                sig[name] = "i32"
            sig["HEAD_DIM"] = "constexpr"
            sig["BLOCK_S"] = "constexpr"
            sig["USE_PDL"] = "constexpr"
            for block_s, pdl in itertools.product(MERGE_BLOCK_S, (True, False)):
                cases.append(GateCase(
                    name=f"split_merge[{q_t}q,D{head_dim},S{block_s}{',pdl' if pdl else ''}]", fn=split_merge_kernel,
                    signature=sig, constexprs={"HEAD_DIM": head_dim, "BLOCK_S": block_s, "USE_PDL": pdl},
                    num_warps=4, num_stages=1))
    return cases
