"""KV-outer block-sparse prefill: one program per (k2q CSR row, KV head), partials + combine.

Design note. A query-major kernel streams each query's topK blocks from L2/HBM for only G
rows of work (16 FLOP per byte at the M3 shape), so it is bandwidth-bound far below the
tensor-core rate. Walking the CSR instead, a program holds one KV block and runs every
query that selected it through it in tiles of BLOCK_M (query, head) rows, so each K/V tile
is reused by hundreds of rows. The price is one partial (normalised O in 16 bits + a
log2-domain LSE) per (query, selected block), merged by a combine kernel in ascending
block order: deterministic, and independent of the CSR's or the schedule's slot order.
A query's partial for block j goes to slot rank(j) = #{selected blocks < j} of its own
selection (the CSR inverted to q2k), so slots need no atomics.
Partials are topK x the output, so queries run in chunks sized to keep them within
`PARTIAL_BUDGET` x the output bytes (the issue allows 4x for all extra memory); each
chunk re-reads only the blocks its queries selected, finding its slice of every CSR row
with a 128-ary search (rows are ascending).
"""
import torch
import triton
import triton.language as tl

from .gate import GateCase
from .kv_tiles import _key_offsets, _kv_tile, _request_extent, _softmax_step

INT_MAX = tl.constexpr(2147483647)
LN2 = tl.constexpr(0.6931471805599453)
LOG2E = 1.4426950408889634
PARTIAL_BUDGET = 3.5  # partial bytes / output bytes; q2k and the CSR take < 0.1x at the M3 shape
SEARCH_ARY = tl.constexpr(128)
SEARCH_LEVELS = tl.constexpr(4)  # 128**4 entries per CSR row
COMBINE_WARPS = 4
PROGRAMS_PER_SM = 4  # rows are split until the partial kernel has this many programs per SM
MAX_ROW_SPLITS = 16


@triton.jit
def _lower_bound(Ptr, lo, hi, target, ARY: tl.constexpr, LEVELS: tl.constexpr):
    """First index in [lo, hi) of an ascending int32 array whose value is >= target (hi if none).

    Each level samples ARY evenly spaced entries and keeps the one gap that holds the
    answer, so a row of n entries takes ceil(log_ARY(n)) dependent loads.
    """
    offs = tl.arange(0, ARY)
    for _ in tl.static_range(LEVELS):
        step = (hi - lo + ARY - 1) // ARY
        pos = lo + offs * step
        live = pos < hi
        vals = tl.load(Ptr + pos, mask=live, other=INT_MAX)
        below = tl.sum((live & (vals < target)).to(tl.int32), axis=0)
        new_lo = tl.where(below == 0, lo, lo + (below - 1) * step + 1)
        hi = tl.where(below == 0, lo, tl.minimum(lo + below * step, hi))
        lo = new_lo
    return lo


@triton.jit
def _tile_queries(idx, e0, e_hi, start, lo_q, hi_q, lk, shift, causal, qi):
    """(query index, live, last visible key) of each row of a tile starting at CSR entry e0."""
    e = e0 + qi
    live = e < e_hi
    ql = tl.load(idx + e, mask=live, other=-1)
    # Row lists are ascending: a repeated query is adjacent and counts once.
    prev = tl.load(idx + e - 1, mask=live & (e > start), other=-1)
    ok = live & (ql >= lo_q) & (ql < hi_q) & (ql != prev)
    last = tl.zeros_like(ql) + (lk - 1)
    if causal != 0:
        last = tl.minimum(last, ql + shift)
    return ql, ok, last


@triton.jit
def _store_partials(OPart, LPart, TPart, Q2K, acc, m_i, l_i, mt_i, lt_i, g, qg, ok, head_ok, heads, j,
                    total_q, topk, Hq, chunk_start, offs_d, offs_s, D: tl.constexpr,
                    WRITE_TLSE: tl.constexpr):
    # Slot = rank of block j in the query's own selection (empty slots are -1).
    sel = tl.load(Q2K + ((g.to(tl.int64) * total_q + qg) * topk)[:, None] + offs_s[None, :],
                  mask=ok[:, None] & (offs_s < topk)[None, :], other=-1)
    slot = tl.sum(((sel >= 0) & (sel < j)).to(tl.int32), axis=1)
    # A query listed under more than topK blocks (malformed CSR) lost some to the
    # inversion: only blocks its selection holds may write, so slots never collide.
    found = tl.sum((sel == j).to(tl.int32), axis=1) > 0
    store = ok & head_ok & found
    part = ((qg - chunk_start) * topk + slot) * Hq + heads
    empty = l_i == 0.0
    o = acc / tl.where(empty, 1.0, l_i)[:, None]
    tl.store(OPart + part[:, None] * D + offs_d[None, :], o.to(OPart.dtype.element_ty),
             mask=store[:, None])
    tl.store(LPart + part, tl.where(empty, float("-inf"), m_i + tl.log2(tl.where(empty, 1.0, l_i))),
             mask=store)
    if WRITE_TLSE:
        t_empty = lt_i == 0.0
        tl.store(TPart + part,
                 tl.where(t_empty, float("-inf"), mt_i + tl.log2(tl.where(t_empty, 1.0, lt_i))),
                 mask=store)


@triton.jit
def sparse_prefill_partial_kernel(
    Q, K, V, KScale, VScale, KGlobal, OPart, LPart, TPart, Q2K, RowPtr, QIdx, RowReq, RowBlk,
    CuQ, CuK, SeqUsed, PageTable,
    stride_qt, stride_qh, stride_k0, stride_kh, stride_ks, stride_v0, stride_vh, stride_vs, stride_pt,
    total_q, total_rows, nnz, Hq, Hkv, G, head_chunks, topk, blk_kv, num_pages, max_pages,
    page_size, scale_tiles_n, chunk_start, chunk_end, row_splits,
    qk_scale_log2, inv_temperature, causal, has_seqused,
    D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, HEADS: tl.constexpr,
    TOPK_P2: tl.constexpr, ONE_KEY_TILE: tl.constexpr, FP16: tl.constexpr, PAGED: tl.constexpr,
    NVFP4: tl.constexpr, WRITE_TLSE: tl.constexpr, FENCE: tl.constexpr,
):
    CDT: tl.constexpr = tl.float16 if FP16 else tl.bfloat16
    QT: tl.constexpr = BLOCK_M // HEADS  # queries per tile
    # torch.compile may pass Python floats as fp64: pin the math to fp32.
    qk_scale_log2 = tl.cast(qk_scale_log2, tl.float32)
    inv_temperature = tl.cast(inv_temperature, tl.float32)
    r = tl.program_id(0) // row_splits
    split = tl.program_id(0) % row_splits
    g = tl.program_id(1) // head_chunks
    hc = tl.program_id(1) % head_chunks

    b = tl.load(RowReq + r)
    j = tl.load(RowBlk + r)
    bs = tl.maximum(b, 0)
    q0, lq, k0, lk = _request_extent(bs, CuQ, CuK, SeqUsed, has_seqused, PAGED)
    kb = j * blk_kv  # first key of the block
    shift = lk - lq  # causal: query i sees keys <= i + shift

    # This chunk's queries of the row; causally, queries before the block's first key skip it.
    lo_q = tl.maximum(chunk_start - q0, 0)
    hi_q = tl.minimum(chunk_end - q0, lq)
    if causal != 0:
        lo_q = tl.maximum(lo_q, kb - shift)
    row_ptr = RowPtr + g.to(tl.int64) * (total_rows + 1) + r
    start = tl.maximum(tl.load(row_ptr), 0)
    end = tl.minimum(tl.load(row_ptr + 1), nnz)
    idx = QIdx + g.to(tl.int64) * nnz
    e_lo = _lower_bound(idx, start, end, lo_q, SEARCH_ARY, SEARCH_LEVELS)
    e_hi = _lower_bound(idx, e_lo, end, hi_q, SEARCH_ARY, SEARCH_LEVELS)
    # Padding rows (request and block -1) and blocks past the visible keys hold no key: their
    # key masks must stay empty, or a resident tile would read before the cache's first row.
    row_live = (b >= 0) & (kb >= 0) & (kb < lk)
    if (~row_live) | (lo_q >= hi_q):
        e_hi = e_lo
    # Long rows are shared by `row_splits` programs, each taking whole query tiles.
    per_split = tl.cdiv(tl.cdiv(e_hi - e_lo, row_splits), QT) * QT
    e_lo = tl.minimum(e_lo + split * per_split, e_hi)
    e_hi = tl.minimum(e_lo + per_split, e_hi)

    offs_m = tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, D)
    offs_s = tl.arange(0, TOPK_P2)
    qi = offs_m // HEADS
    in_group = hc * HEADS + offs_m % HEADS
    head_ok = in_group < G
    heads = (g * G + in_group).to(tl.int64)
    if NVFP4:
        qk_scale_log2 = qk_scale_log2 * tl.load(KGlobal)
    k_head = g.to(tl.int64) * stride_kh
    v_head = g.to(tl.int64) * stride_vh

    if ONE_KEY_TILE:
        # The whole block is one key tile: K and V stay resident while query tiles stream
        # through (the loop Triton pipelines), one exact softmax per tile.
        t = kb + offs_n
        k_off, v_off, scale_row, tmask = _key_offsets(
            t, row_live & (t < lk), bs, g, k0, PageTable, stride_pt, max_pages, num_pages, page_size, Hkv,
            k_head, v_head, stride_k0, stride_ks, stride_v0, stride_vs, PAGED)
        k = _kv_tile(K, KScale, k_off, scale_row, tmask, scale_tiles_n, D, NVFP4, CDT, FENCE)
        v = _kv_tile(V, VScale, v_off, scale_row, tmask, scale_tiles_n, D, NVFP4, CDT, FENCE)
        for e0 in range(e_lo, e_hi, QT):
            ql, ok, last = _tile_queries(idx, e0, e_hi, start, lo_q, hi_q, lk, shift, causal, qi)
            qg = (q0 + ql).to(tl.int64)
            q = tl.load(Q + qg[:, None] * stride_qt + heads[:, None] * stride_qh + offs_d[None, :],
                        mask=(ok & head_ok)[:, None], other=0.0).to(CDT)
            s = tl.dot(q, tl.trans(k)) * qk_scale_log2
            s = tl.where(tmask[None, :] & (t[None, :] <= last[:, None]), s, float("-inf"))
            m_i = tl.max(s, axis=1)
            m_safe = tl.where(m_i == float("-inf"), 0.0, m_i)
            p = tl.exp2(s - m_safe[:, None])
            l_i = tl.sum(p, axis=1)
            mt_i = m_i
            lt_i = l_i
            if WRITE_TLSE:
                mt_i = m_i * inv_temperature  # the temperature is > 0: max commutes with it
                lt_i = tl.sum(tl.exp2(s * inv_temperature - tl.where(mt_i == float("-inf"), 0.0, mt_i)[:, None]),
                              axis=1)
            acc = tl.dot(p.to(CDT), v)
            _store_partials(OPart, LPart, TPart, Q2K, acc, m_i, l_i, mt_i, lt_i, g, qg, ok, head_ok,
                            heads, j, total_q, topk, Hq, chunk_start, offs_d, offs_s, D, WRITE_TLSE)
    else:
        for e0 in range(e_lo, e_hi, QT):
            ql, ok, last = _tile_queries(idx, e0, e_hi, start, lo_q, hi_q, lk, shift, causal, qi)
            qg = (q0 + ql).to(tl.int64)
            q = tl.load(Q + qg[:, None] * stride_qt + heads[:, None] * stride_qh + offs_d[None, :],
                        mask=(ok & head_ok)[:, None], other=0.0).to(CDT)
            m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
            l_i = tl.zeros([BLOCK_M], tl.float32)
            mt_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
            lt_i = tl.zeros([BLOCK_M], tl.float32)
            acc = tl.zeros([BLOCK_M, D], tl.float32)
            for n0 in range(0, blk_kv, BLOCK_N):
                t = kb + n0 + offs_n
                k_off, v_off, scale_row, tmask = _key_offsets(
                    t, row_live & (t < lk), bs, g, k0, PageTable, stride_pt, max_pages, num_pages, page_size, Hkv,
                    k_head, v_head, stride_k0, stride_ks, stride_v0, stride_vs, PAGED)
                k = _kv_tile(K, KScale, k_off, scale_row, tmask, scale_tiles_n, D, NVFP4, CDT, FENCE)
                s = tl.dot(q, tl.trans(k)) * qk_scale_log2
                s = tl.where(tmask[None, :] & (t[None, :] <= last[:, None]), s, float("-inf"))
                p, alpha, m_i, l_i, mt_i, lt_i = _softmax_step(s, m_i, l_i, mt_i, lt_i, inv_temperature,
                                                               WRITE_TLSE)
                v = _kv_tile(V, VScale, v_off, scale_row, tmask, scale_tiles_n, D, NVFP4, CDT, FENCE)
                acc = acc * alpha[:, None] + tl.dot(p.to(CDT), v)
            _store_partials(OPart, LPart, TPart, Q2K, acc, m_i, l_i, mt_i, lt_i, g, qg, ok, head_ok,
                            heads, j, total_q, topk, Hq, chunk_start, offs_d, offs_s, D, WRITE_TLSE)


@triton.jit
def sparse_prefill_combine_kernel(
    OPart, LPart, TPart, VGlobal, Out, Lse, TLse,
    stride_ot, stride_oh, chunk_start, Hq, G, head_chunks, topk,
    D: tl.constexpr, HEADS: tl.constexpr, TOPK_P2: tl.constexpr, NVFP4: tl.constexpr,
    WRITE_TLSE: tl.constexpr,
):
    qc = tl.program_id(0).to(tl.int64)
    g = tl.program_id(1) // head_chunks
    hc = tl.program_id(1) % head_chunks
    offs_h = tl.arange(0, HEADS)
    offs_d = tl.arange(0, D)
    offs_s = tl.arange(0, TOPK_P2)
    in_group = hc * HEADS + offs_h
    ok = in_group < G
    heads = (g * G + in_group).to(tl.int64)
    base = qc * topk

    # Unwritten slots hold -inf (the launcher clears LPart per chunk): they weigh nothing.
    lp = tl.load(LPart + (base + offs_s)[:, None] * Hq + heads[None, :],
                 mask=(offs_s < topk)[:, None] & ok[None, :], other=float("-inf"))
    m = tl.max(lp, axis=0)
    m_safe = tl.where(m == float("-inf"), 0.0, m)
    l_sum = tl.sum(tl.exp2(lp - m_safe[None, :]), axis=0)
    n_slots = tl.max(tl.max(tl.where(lp > float("-inf"), offs_s[:, None] + 1, 0), axis=1), axis=0)
    acc = tl.zeros([HEADS, D], tl.float32)
    for si in range(0, n_slots):
        ls = tl.load(LPart + (base + si) * Hq + heads, mask=ok, other=float("-inf"))
        w = tl.exp2(ls - m_safe)
        o = tl.load(OPart + ((base + si) * Hq + heads)[:, None] * D + offs_d[None, :],
                    mask=(ok & (ls > float("-inf")))[:, None], other=0.0)
        acc += w[:, None] * o.to(tl.float32)
    empty = l_sum == 0.0
    out = acc / tl.where(empty, 1.0, l_sum)[:, None]
    if NVFP4:
        out = out * tl.load(VGlobal)
    q_row = chunk_start + qc
    tl.store(Out + q_row * stride_ot + heads[:, None] * stride_oh + offs_d[None, :],
             out.to(Out.dtype.element_ty), mask=ok[:, None])
    lse_off = q_row * Hq + heads
    tl.store(Lse + lse_off, tl.where(empty, float("-inf"), (m + tl.log2(tl.where(empty, 1.0, l_sum))) * LN2),
             mask=ok)
    if WRITE_TLSE:
        tp = tl.load(TPart + (base + offs_s)[:, None] * Hq + heads[None, :],
                     mask=(offs_s < topk)[:, None] & ok[None, :], other=float("-inf"))
        mt = tl.max(tp, axis=0)
        mt_safe = tl.where(mt == float("-inf"), 0.0, mt)
        lt = tl.sum(tl.exp2(tp - mt_safe[None, :]), axis=0)
        t_empty = lt == 0.0
        tl.store(TLse + lse_off,
                 tl.where(t_empty, float("-inf"), (mt + tl.log2(tl.where(t_empty, 1.0, lt))) * LN2),
                 mask=ok)


# ---------------------------------------------------------------------------------------
# Launch configuration (deterministic; every choice is listed by gate_cases()).

def kv_outer_config(nvfp4, arch_major=12, blk_kv=128):
    """(BLOCK_M, BLOCK_N, num_warps, num_stages) of the partial kernel.

    Independent of FP8 vs 16-bit K/V, so the FP8 path stays bit-identical to the BF16 path
    on upcast K/V. A 64- or 128-key block is one key tile (K/V resident, query tiles
    pipelined); larger blocks loop over 64-key tiles. SM12x (99 KB smem, mma.sync, 255
    registers) takes 32-row tiles over 8 warps: 64-row tiles spill there. Hopper (the
    validation card) takes 64-row tiles over 4 warps: they ran 10-35% faster than 128-row
    tiles over 8 warps on an H200 (benchmarks/sweep_prefill.py, 2026-11-27). NVFP4
    dequantises 16 keys per step on SM12x (wider steps spill) and 32 on Hopper.
    blk_kv is a multiple of 64.
    """
    if nvfp4:
        return (32, 32, 8, 1) if arch_major == 9 else (32, 16, 8, 1)
    block_n = blk_kv if blk_kv in (64, 128) else 64
    if arch_major == 9:
        return 64, block_n, 4, 2
    # Looping over key tiles (blocks over 128 keys) holds the online-softmax state too:
    # without pipelining it fits SM12x's registers.
    return 32, block_n, 8, (2 if block_n == blk_kv else 1)


def kv_geometry(k, v, paged):
    """(K strides, V strides, pages, page size): row/head/slot strides; dense caches have no slots."""
    if paged:
        return (k.stride(0), k.stride(1), k.stride(2)), (v.stride(0), v.stride(1), v.stride(2)), \
            k.shape[0], k.shape[2]
    return (k.stride(0), k.stride(1), 0), (v.stride(0), v.stride(1), 0), 0, 1


def row_split_count(programs, sm_count):
    """Programs per CSR row: few rows (a long request without prefix) would leave SMs idle."""
    return max(1, min(MAX_ROW_SPLITS, triton.cdiv(PROGRAMS_PER_SM * sm_count, max(programs, 1))))


def tile_heads(g, block_m):
    """(heads per tile, head chunks): a tile packs BLOCK_M // heads queries x heads rows."""
    heads = min(triton.next_power_of_2(g), block_m)
    return heads, triton.cdiv(g, heads)


def partial_dtype_for(out_dtype, partial_fp32):
    """FP32 when asked for; otherwise 16 bits in the output's own format (FP16 keeps FP16's mantissa)."""
    return torch.float32 if partial_fp32 else out_dtype


def chunk_queries(total_q, hq, d, topk, out_dtype, partial_fp32, write_tlse):
    """Queries per chunk so the partials stay within PARTIAL_BUDGET x the output bytes."""
    out_bytes = hq * d * out_dtype.itemsize
    part_elt = partial_dtype_for(out_dtype, partial_fp32).itemsize
    part_bytes = topk * hq * (d * part_elt + 4 + (4 if write_tlse else 0))
    return max(1, min(total_q, int(PARTIAL_BUDGET * out_bytes * total_q) // part_bytes))


def sparse_prefill_kv_outer(q, k, v, k_scale, v_scale, k_global, v_global, row_ptr, q_idx, q2k,
                            row_req, row_blk, cu_q, cu_k, seqused_k, page_table, out, lse, tlse,
                            topk, blk_kv, causal, softmax_scale, lse_temperature_scale,
                            has_seqused, paged, nvfp4, write_tlse, partial_fp32, chunk, arch_major,
                            sm_count):
    """Runs the partial + combine kernels `chunk` queries at a time (see chunk_queries); q2k is
    the (unsorted) inverted CSR."""
    total_q, hq, d = q.shape
    hkv, total_rows = row_ptr.shape[0], row_ptr.shape[1] - 1
    g = hq // hkv
    block_m, block_n, num_warps, num_stages = kv_outer_config(nvfp4, arch_major, blk_kv)
    heads, head_chunks = tile_heads(g, block_m)
    c_heads, c_chunks = tile_heads(g, 64)
    part_dt = partial_dtype_for(out.dtype, partial_fp32)
    o_part = torch.empty(chunk * topk * hq * d, dtype=part_dt, device=q.device)
    l_part = torch.empty(chunk * topk * hq, dtype=torch.float32, device=q.device)
    t_part = torch.empty(chunk * topk * hq if write_tlse else 1, dtype=torch.float32, device=q.device)
    strides_k, strides_v, num_pages, page_size = kv_geometry(k, v, paged)
    scale_tiles_n = triton.cdiv(d // 16, 4)
    splits = row_split_count(total_rows * hkv * head_chunks, sm_count)
    for c0 in range(0, total_q, chunk):
        c1 = min(c0 + chunk, total_q)
        l_part.fill_(float("-inf"))
        if write_tlse:
            t_part.fill_(float("-inf"))
        torch.library.wrap_triton(sparse_prefill_partial_kernel)[(total_rows * splits, hkv * head_chunks)](
            q, k, v, k_scale, v_scale, k_global, o_part, l_part, t_part, q2k, row_ptr, q_idx,
            row_req, row_blk, cu_q, cu_k, seqused_k, page_table,
            q.stride(0), q.stride(1),
            strides_k[0], strides_k[1], strides_k[2], strides_v[0], strides_v[1], strides_v[2],
            page_table.stride(0) if paged else 0,
            total_q, total_rows, q_idx.shape[1], hq, hkv, g, head_chunks, topk, blk_kv, num_pages,
            page_table.shape[1] if paged else 0, page_size, scale_tiles_n, c0, c1, splits,
            softmax_scale * LOG2E, 1.0 / lse_temperature_scale, int(causal), int(has_seqused),
            D=d, BLOCK_M=block_m, BLOCK_N=block_n, HEADS=heads,
            TOPK_P2=max(triton.next_power_of_2(topk), 2), ONE_KEY_TILE=block_n == blk_kv,
            FP16=out.dtype == torch.float16,
            PAGED=paged, NVFP4=nvfp4, WRITE_TLSE=write_tlse, FENCE=q.device.type != "cpu",
            num_warps=num_warps, num_stages=num_stages,
        )
        torch.library.wrap_triton(sparse_prefill_combine_kernel)[(c1 - c0, hkv * c_chunks)](
            o_part, l_part, t_part, v_global, out, lse, tlse,
            out.stride(0), out.stride(1), c0, hq, g, c_chunks, topk,
            D=d, HEADS=c_heads, TOPK_P2=max(triton.next_power_of_2(topk), 2), NVFP4=nvfp4,
            WRITE_TLSE=write_tlse, num_warps=COMBINE_WARPS,
        )


# ---------------------------------------------------------------------------------------
# SM12x compile gate.

_TRITON_TYPES = {
    torch.bfloat16: "bf16", torch.float16: "fp16", torch.float8_e4m3fn: "fp8e4nv", torch.uint8: "u8",
    torch.float32: "fp32",
}

# (q dtype, K/V dtype) pairs the public functions accept.
DTYPE_PAIRS = (
    (torch.bfloat16, torch.bfloat16), (torch.float16, torch.float16),
    (torch.bfloat16, torch.float8_e4m3fn), (torch.float16, torch.float8_e4m3fn),
    (torch.float8_e4m3fn, torch.float8_e4m3fn),
    (torch.bfloat16, torch.uint8), (torch.float16, torch.uint8),
)
# Strides the public functions validate as multiples of 16 elements.
_ALIGNED_STRIDES = ("stride_qt", "stride_qh", "stride_k0", "stride_kh", "stride_ks", "stride_v0",
                    "stride_vh", "stride_vs")
_INT_ARGS = ("stride_qt", "stride_qh", "stride_k0", "stride_kh", "stride_ks", "stride_v0",
             "stride_vh", "stride_vs", "stride_pt", "total_q", "total_rows", "nnz", "Hq", "Hkv",
             "G", "head_chunks", "topk", "blk_kv", "num_pages", "max_pages", "page_size",
             "scale_tiles_n", "chunk_start", "chunk_end", "row_splits")


def _partial_signature(q_dtype, kv_dtype, part_dtype):
    qt, kvt, pt = _TRITON_TYPES[q_dtype], _TRITON_TYPES[kv_dtype], _TRITON_TYPES[part_dtype]
    sig = {"Q": "*" + qt, "K": "*" + kvt, "V": "*" + kvt, "KScale": "*u8", "VScale": "*u8",
           "KGlobal": "*fp32", "OPart": "*" + pt, "LPart": "*fp32", "TPart": "*fp32"}
    for name in ("Q2K", "RowPtr", "QIdx", "RowReq", "RowBlk", "CuQ", "CuK", "SeqUsed", "PageTable"):
        sig[name] = "*i32"
    sig.update({name: "i32" for name in _INT_ARGS})
    sig.update({"qk_scale_log2": "fp32", "inv_temperature": "fp32", "causal": "i32",
                "has_seqused": "i32"})
    for name in ("D", "BLOCK_M", "BLOCK_N", "HEADS", "TOPK_P2", "ONE_KEY_TILE", "FP16", "PAGED",
                 "NVFP4", "WRITE_TLSE", "FENCE"):
        sig[name] = "constexpr"
    return sig


def _combine_signature(part_dtype, out_dtype):
    sig = {"OPart": "*" + _TRITON_TYPES[part_dtype], "LPart": "*fp32", "TPart": "*fp32",
           "VGlobal": "*fp32", "Out": "*" + _TRITON_TYPES[out_dtype], "Lse": "*fp32", "TLse": "*fp32"}
    sig.update({name: "i32" for name in ("stride_ot", "stride_oh", "chunk_start", "Hq", "G",
                                         "head_chunks", "topk")})
    for name in ("D", "HEADS", "TOPK_P2", "NVFP4", "WRITE_TLSE"):
        sig[name] = "constexpr"
    return sig


def gate_cases():
    """Every SM12x launch config (per dtype pair, partial dtype, D, layout, TLSE) plus the combine.

    The heads per tile and topK only change index math and the rank vector's width
    (TOPK_P2): their extremes (1 and BLOCK_M heads, TOPK_P2 2 and 64) rotate through the cases.
    """
    cases = []
    for q_dtype, kv_dtype in DTYPE_PAIRS:
        nvfp4 = kv_dtype == torch.uint8
        out_dtype = torch.bfloat16 if q_dtype == torch.float8_e4m3fn else q_dtype
        configs = sorted({kv_outer_config(nvfp4, 12, blk) + (kv_outer_config(nvfp4, 12, blk)[1] == blk,)
                          for blk in (64, 128, 256)})
        for block_m, block_n, num_warps, num_stages, one_tile in configs:
            for d in (64, 128):
                for paged in (False, True):
                    for write_tlse in (False, True):
                        part_dtype = torch.float32 if write_tlse == paged else out_dtype
                        heads, topk_p2 = (1, 64) if write_tlse else (block_m, 2)
                        tag = (f"{_TRITON_TYPES[q_dtype]}/{_TRITON_TYPES[kv_dtype]}->"
                               f"{_TRITON_TYPES[part_dtype]},D{d},M{block_m},N{block_n}"
                               f"{',resident' if one_tile else ''},H{heads},K{topk_p2},"
                               f"{'paged' if paged else 'dense'}{',tlse' if write_tlse else ''}")
                        cases.append(GateCase(
                            name="sparse_prefill_partial[" + tag + "]",
                            fn=sparse_prefill_partial_kernel,
                            signature=_partial_signature(q_dtype, kv_dtype, part_dtype),
                            constexprs={"D": d, "BLOCK_M": block_m, "BLOCK_N": block_n,
                                        "HEADS": heads, "TOPK_P2": topk_p2, "ONE_KEY_TILE": one_tile,
                                        "FP16": out_dtype == torch.float16, "PAGED": paged,
                                        "NVFP4": nvfp4, "WRITE_TLSE": write_tlse, "FENCE": True},
                            num_warps=num_warps, num_stages=num_stages, aligned_ints=_ALIGNED_STRIDES,
                        ))
    for out_dtype in (torch.bfloat16, torch.float16):
        for part_dtype in (out_dtype, torch.float32):
            for d in (64, 128):
                for heads in (1, 16, 64):
                    for nvfp4, write_tlse, topk_p2 in ((False, False, 64), (True, True, 2)):
                        tag = (f"{_TRITON_TYPES[part_dtype]}->{_TRITON_TYPES[out_dtype]},D{d},H{heads},"
                               f"K{topk_p2}{',nvfp4' if nvfp4 else ''}{',tlse' if write_tlse else ''}")
                        cases.append(GateCase(
                            name="sparse_prefill_combine[" + tag + "]",
                            fn=sparse_prefill_combine_kernel,
                            signature=_combine_signature(part_dtype, out_dtype),
                            constexprs={"D": d, "HEADS": heads, "TOPK_P2": topk_p2, "NVFP4": nvfp4,
                                        "WRITE_TLSE": write_tlse},
                            num_warps=COMBINE_WARPS, num_stages=1,
                            aligned_ints=("stride_ot", "stride_oh"),
                        ))
    return cases
