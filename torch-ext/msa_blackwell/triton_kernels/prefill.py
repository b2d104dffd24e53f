"""Block-sparse prefill launcher: k2q CSR inversion, then KV-outer or query-major attention.

1. `k2q_invert_kernel` turns the CSR back into per-query selections q2k [Hkv, total_q, topK]
   (slot from the schedule's `qsplit_indices` when given, else an atomic counter).
2. Large prefills run KV-outer (`prefill_kv_outer.py`, design note there): it walks the
   CSR rows and merges per-block partials, using q2k only to rank each query's blocks.
3. Short ones (few queries per CSR row, `prefill_kernel_choice`) run `sparse_prefill_fwd_kernel`,
   query-major: one program per (query token, KV head, head chunk), the tile's M dimension
   packing the group's query heads; it needs no partials. Its selections are sorted first
   (empty slots last), so it walks blocks in ascending order and skips a repeat by comparing
   with the previous slot.
Both paths are bitwise identical with or without a schedule. FP8 and NVFP4 K/V are converted
to the compute dtype at tile load and pass a dtype fence (`_dtype_fence`), after which the
instructions are the BF16/FP16 path's.
"""
import os

import torch
import triton
import triton.language as tl

from .._backend import add_op_namespace_prefix, cuda_properties
from .gate import GateCase
from .kv_tiles import _key_offsets, _kv_tile, _request_extent, _softmax_step
from .prefill_kv_outer import DTYPE_PAIRS, _TRITON_TYPES, chunk_queries, kv_geometry, sparse_prefill_kv_outer

TOPK_MAX = 64  # the selection vector each program loads to count its visible blocks
INVERT_ROWS = 16
INVERT_BLOCK = 128
INT32_MAX = 2147483647
INT_MAX = tl.constexpr(INT32_MAX)
LN2 = tl.constexpr(0.6931471805599453)
LOG2E = 1.4426950408889634


@triton.jit
def k2q_invert_kernel(
    RowPtr, QIdx, QSplit, RowReq, RowBlk, CuQ, Count, Q2K,
    total_rows, nnz, total_q, topk,
    ROWS: tl.constexpr, BLOCK_E: tl.constexpr, HAS_SPLIT: tl.constexpr,
):
    pid = tl.program_id(0)
    g = tl.program_id(1).to(tl.int64)
    offs = tl.arange(0, BLOCK_E)
    ptr_base = RowPtr + g * (total_rows + 1)
    idx_base = g * nnz
    for r in range(pid * ROWS, tl.minimum(pid * ROWS + ROWS, total_rows)):
        b = tl.load(RowReq + r)
        j = tl.load(RowBlk + r)
        if b >= 0:
            start = tl.maximum(tl.load(ptr_base + r), 0)
            end = tl.minimum(tl.load(ptr_base + r + 1), nnz)
            q0 = tl.load(CuQ + b)
            lq = tl.load(CuQ + b + 1) - q0
            for e0 in range(start, end, BLOCK_E):
                e = e0 + offs
                live = e < end
                ql = tl.load(QIdx + idx_base + e, mask=live, other=-1)
                # Row lists are ascending: a repeated query is adjacent and counts once.
                prev = tl.load(QIdx + idx_base + e - 1, mask=live & (e > start), other=-1)
                ok = live & (ql >= 0) & (ql < lq) & (ql != prev)
                qg = (q0 + ql).to(tl.int64)
                if HAS_SPLIT:
                    code = tl.load(QSplit + idx_base + e, mask=ok, other=0)
                    slot = (code >> 24) & 255
                else:
                    slot = tl.atomic_add(Count + g * total_q + qg, 1, mask=ok)
                ok = ok & (slot >= 0) & (slot < topk)
                tl.store(Q2K + (g * total_q + qg) * topk + slot, j, mask=ok)


@triton.jit
def sparse_prefill_fwd_kernel(
    Q, K, V, KScale, VScale, KGlobal, VGlobal, Out, Lse, TLse, Q2K, QReq, CuQ, CuK, SeqUsed, PageTable,
    stride_qt, stride_qh, stride_ot, stride_oh,
    stride_k0, stride_kh, stride_ks, stride_v0, stride_vh, stride_vs, stride_pt,
    total_q, Hq, Hkv, G, head_chunks, topk, blk_kv, num_pages, max_pages, page_size, scale_tiles_n,
    qk_scale_log2, inv_temperature, causal, has_seqused,
    D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, TOPK_P2: tl.constexpr,
    PAGED: tl.constexpr, NVFP4: tl.constexpr, WRITE_TLSE: tl.constexpr, FENCE: tl.constexpr,
):
    CDT: tl.constexpr = Out.dtype.element_ty
    # torch.compile may pass Python floats as fp64: pin the math to fp32.
    qk_scale_log2 = tl.cast(qk_scale_log2, tl.float32)
    inv_temperature = tl.cast(inv_temperature, tl.float32)
    pid_q = tl.program_id(0)
    g = tl.program_id(1) // head_chunks
    chunk = tl.program_id(1) % head_chunks

    offs_m = tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, D)
    in_group = chunk * BLOCK_M + offs_m
    row_ok = in_group < G
    heads = g * G + in_group

    b = tl.load(QReq + pid_q)
    q0, lq, k0, lk = _request_extent(b, CuQ, CuK, SeqUsed, has_seqused, PAGED)
    nb = (lk + blk_kv - 1) // blk_kv
    last = lk - 1  # last visible key position
    if causal != 0:
        last = tl.minimum(last, pid_q - q0 + lk - lq)

    # The selection arrives sorted ascending with empty slots (-1) as INT_MAX, so the
    # visible blocks (id < nb and starting at or before the causal end) form a prefix.
    offs_s = tl.arange(0, TOPK_P2)
    sel_base = (g.to(tl.int64) * total_q + pid_q) * topk
    ids = tl.load(Q2K + sel_base + offs_s, mask=offs_s < topk, other=INT_MAX)
    n_sel = tl.sum(((ids < nb) & (ids * blk_kv <= last)).to(tl.int32), axis=0)
    tiles_per_blk = blk_kv // BLOCK_N

    q_ptrs = Q + pid_q.to(tl.int64) * stride_qt + heads[:, None].to(tl.int64) * stride_qh + offs_d[None, :]
    q = tl.load(q_ptrs, mask=row_ok[:, None], other=0.0).to(CDT)
    if NVFP4:
        qk_scale_log2 = qk_scale_log2 * tl.load(KGlobal)

    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, D], tl.float32)
    mt_i = tl.full([BLOCK_M], float("-inf"), tl.float32)  # temperature LSE (used with WRITE_TLSE)
    lt_i = tl.zeros([BLOCK_M], tl.float32)

    k_head = g.to(tl.int64) * stride_kh
    v_head = g.to(tl.int64) * stride_vh
    for it in range(0, n_sel * tiles_per_blk):
        slot = it // tiles_per_blk
        blk = tl.load(Q2K + sel_base + slot)
        prev = tl.load(Q2K + sel_base + slot - 1, mask=slot > 0, other=-1)
        t = blk * blk_kv + (it % tiles_per_blk) * BLOCK_N + offs_n
        k_off, v_off, scale_row, tmask = _key_offsets(
            t, (t <= last) & (blk != prev),  # a repeated block counts once
            b, g, k0, PageTable, stride_pt, max_pages, num_pages, page_size, Hkv,
            k_head, v_head, stride_k0, stride_ks, stride_v0, stride_vs, PAGED)
        k = _kv_tile(K, KScale, k_off, scale_row, tmask, scale_tiles_n, D, NVFP4, CDT, FENCE)
        s = tl.dot(q, tl.trans(k)) * qk_scale_log2
        s = tl.where(tmask[None, :], s, float("-inf"))
        p, alpha, m_i, l_i, mt_i, lt_i = _softmax_step(s, m_i, l_i, mt_i, lt_i, inv_temperature, WRITE_TLSE)
        v = _kv_tile(V, VScale, v_off, scale_row, tmask, scale_tiles_n, D, NVFP4, CDT, FENCE)
        acc = acc * alpha[:, None] + tl.dot(p.to(CDT), v)

    empty = l_i == 0.0
    out = acc / tl.where(empty, 1.0, l_i)[:, None]
    if NVFP4:
        out = out * tl.load(VGlobal)
    o_ptrs = Out + pid_q.to(tl.int64) * stride_ot + heads[:, None].to(tl.int64) * stride_oh + offs_d[None, :]
    tl.store(o_ptrs, out.to(CDT), mask=row_ok[:, None])
    lse = tl.where(empty, float("-inf"), (m_i + tl.log2(tl.where(empty, 1.0, l_i))) * LN2)
    lse_off = pid_q.to(tl.int64) * Hq + heads
    tl.store(Lse + lse_off, lse, mask=row_ok)
    if WRITE_TLSE:
        t_empty = lt_i == 0.0
        tlse = tl.where(t_empty, float("-inf"), (mt_i + tl.log2(tl.where(t_empty, 1.0, lt_i))) * LN2)
        tl.store(TLse + lse_off, tlse, mask=row_ok)


# ---------------------------------------------------------------------------------------
# Launch configuration (deterministic; every choice is listed by gate_cases()).

def block_m_for_group(g):
    return 16 if g <= 16 else (32 if g <= 32 else 64)


def prefill_config(block_m, nvfp4, arch_major=12, blk_kv=128):
    """(BLOCK_N, num_warps, num_stages): tiles that fit SM12x (99 KB smem) without spills.

    The config never depends on whether K/V are FP8 or 16-bit, so the FP8 path stays
    bit-identical to the BF16 path on upcast K/V. NVFP4 dequantisation needs 32-key steps
    over 8 warps. On SM12x 16-row tiles take 32-key steps over 4 warps without pipelining
    (64-key steps spill the 16-bit variants; with 8 warps ptxas caps the FP8 variants at
    128 registers and spills); 32/64-row tiles take 16-key steps over 8 warps. blk_kv is a
    multiple of BLOCK_N (the public functions require blk_kv % 64 == 0).
    """
    if nvfp4:
        return 32, 8, 1
    if arch_major == 9 and blk_kv % 128 == 0:
        # Hopper only (validation card): 128-key tiles, 4 warps, no pipelining ran 30-40%
        # faster on an H200 (benchmarks/sweep_prefill.py).
        return 128, 4, 1
    if block_m >= 32:
        return 16, 8, 1
    return 32, 4, 1


def arch_major(device):
    """Compute-capability major of the device (12 = the SM12x target, also for the interpreter).

    Meta tensors (torch.compile tracing) stand for the current CUDA device, so the compiled
    graph picks the same config as eager.
    """
    if device.type == "cpu" or not torch.cuda.is_available():
        return 12
    return cuda_properties(device.index if device.type == "cuda" else None)[0]


def sm_count(device):
    """Streaming multiprocessors of the device (meta tensors: the current CUDA device).

    The CPU interpreter reports 8, so that the tests' small shapes exercise split CSR rows.
    """
    if device.type == "cpu" or not torch.cuda.is_available():
        return 8
    return cuda_properties(device.index if device.type == "cuda" else None)[1]


def csr_row_map(cu_seqlens_k, blk_kv, max_seqlen_k, total_rows):
    """(request, block) of every CSR row, on device without a host sync.

    Rows past what `max_seqlen_k` covers stay -1 (skipped by the inversion).
    """
    device = cu_seqlens_k.device
    nb = torch.clamp((cu_seqlens_k[1:] - cu_seqlens_k[:-1] + blk_kv - 1) // blk_kv, min=0)
    n_rounds = (max_seqlen_k + blk_kv - 1) // blk_kv
    j = torch.arange(n_rounds, dtype=torch.int32, device=device)
    active = nb[:, None] > j[None, :]  # [B, rounds]
    per_round = active.sum(0, dtype=torch.int32)
    round_start = torch.cumsum(per_round, 0, dtype=torch.int32) - per_round
    rank = torch.cumsum(active.to(torch.int32), 0, dtype=torch.int32) - active.to(torch.int32)
    row = round_start[None, :] + rank
    row = torch.where(active & (row < total_rows), row, total_rows).reshape(-1).long()
    req = torch.arange(nb.shape[0], dtype=torch.int32, device=device)[:, None].expand_as(active)
    row_req = torch.full((total_rows + 1,), -1, dtype=torch.int32, device=device)
    row_blk = torch.full((total_rows + 1,), -1, dtype=torch.int32, device=device)
    row_req.scatter_(0, row, req.reshape(-1))
    row_blk.scatter_(0, row, j[None, :].expand_as(active).reshape(-1))
    # The overflow slot the inactive (b, j) pairs were scattered into; a device fill (an
    # indexed assignment from a Python int would copy host->device, illegal in graph capture).
    row_req.narrow(0, total_rows, 1).fill_(-1)
    return row_req, row_blk


def invert_k2q(row_ptr, q_idx, qsplit, row_req, row_blk, cu_q, total_q, topk):
    """k2q CSR -> q2k [Hkv, total_q, topK] in slot order (-1 = empty slot)."""
    hkv = row_ptr.shape[0]
    total_rows = row_ptr.shape[1] - 1
    device = row_ptr.device
    q2k = torch.full((hkv, total_q, topk), -1, dtype=torch.int32, device=device)
    if total_rows <= 0 or total_q == 0 or q_idx.shape[1] == 0:
        return q2k
    has_split = qsplit is not None
    count = torch.zeros((1,) if has_split else (hkv, total_q), dtype=torch.int32, device=device)
    grid = (triton.cdiv(total_rows, INVERT_ROWS), hkv)
    torch.library.wrap_triton(k2q_invert_kernel)[grid](
        row_ptr, q_idx, qsplit if has_split else q_idx, row_req, row_blk, cu_q, count, q2k,
        total_rows, q_idx.shape[1], total_q, topk,
        ROWS=INVERT_ROWS, BLOCK_E=INVERT_BLOCK, HAS_SPLIT=has_split,
    )
    return q2k


# KV-outer pays a fixed cost per CSR row and query chunk (search, K/V tile load). Below this
# many (query, block) entries per row and chunk the query-major kernel is faster (H200 sweep,
# M3 shape: query-major 2x faster at 171-338 queries, even at 1,626 (~7 entries), KV-outer
# 2x faster at 16K queries (~140 entries)).
KV_OUTER_MIN_ENTRIES = 8


def prefill_kernel_choice(entries, total_rows, chunks):
    """"kv_outer" or "query_major" for `entries` CSR entries; MSA_PREFILL_KERNEL overrides it."""
    choice = os.environ.get("MSA_PREFILL_KERNEL")
    if choice is None:
        return "kv_outer" if entries >= KV_OUTER_MIN_ENTRIES * total_rows * chunks else "query_major"
    if choice not in ("kv_outer", "query_major"):
        raise ValueError(f"MSA_PREFILL_KERNEL must be kv_outer or query_major, got {choice!r}")
    return choice


@torch.library.triton_op(
    add_op_namespace_prefix("sparse_prefill_fwd"), mutates_args={"out", "lse", "tlse"}
)
def sparse_prefill_fwd(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    k_scale: torch.Tensor,
    v_scale: torch.Tensor,
    k_global: torch.Tensor,
    v_global: torch.Tensor,
    row_ptr: torch.Tensor,
    q_idx: torch.Tensor,
    qsplit: torch.Tensor,
    cu_q: torch.Tensor,
    cu_k: torch.Tensor,
    seqused_k: torch.Tensor,
    page_table: torch.Tensor,
    out: torch.Tensor,
    lse: torch.Tensor,
    tlse: torch.Tensor,
    topk: int,
    blk_kv: int,
    max_seqlen_k: int,
    causal: bool,
    softmax_scale: float,
    lse_temperature_scale: float,
    has_qsplit: bool,
    has_seqused: bool,
    paged: bool,
    nvfp4: bool,
    write_tlse: bool,
    partial_fp32: bool,
) -> None:
    """Fills out/lse (and tlse when write_tlse). Unused optional inputs are placeholders."""
    total_q, hq, d = q.shape
    hkv = row_ptr.shape[0]
    if total_q == 0:
        return
    g = hq // hkv
    total_rows = row_ptr.shape[1] - 1
    row_req, row_blk = csr_row_map(cu_k, blk_kv, max_seqlen_k, total_rows)
    q2k = invert_k2q(row_ptr, q_idx, qsplit if has_qsplit else None, row_req, row_blk, cu_q,
                     total_q, topk)
    chunk = chunk_queries(total_q, hq, d, topk, out.dtype, partial_fp32, write_tlse)
    if prefill_kernel_choice(total_q * topk, total_rows, triton.cdiv(total_q, chunk)) == "kv_outer":
        if total_rows > 0 and q_idx.shape[1] > 0:
            sparse_prefill_kv_outer(
                q, k, v, k_scale, v_scale, k_global, v_global, row_ptr, q_idx, q2k, row_req, row_blk,
                cu_q, cu_k, seqused_k, page_table, out, lse, tlse, topk, blk_kv, causal,
                softmax_scale, lse_temperature_scale, has_seqused, paged, nvfp4, write_tlse,
                partial_fp32, chunk, arch_major(q.device), sm_count(q.device))
        else:
            out.zero_()
            lse.fill_(float("-inf"))
            tlse.fill_(float("-inf"))
        return
    # Canonical ascending block order (whatever slot order the inversion produced) keeps
    # runs bitwise identical with or without a schedule; empty slots sort last.
    q2k = torch.sort(torch.where(q2k < 0, INT32_MAX, q2k), dim=-1).values
    q_req = torch.searchsorted(
        cu_q[1:].contiguous(), torch.arange(total_q, dtype=torch.int32, device=q.device),
        right=True, out_int32=True,
    )
    block_m = block_m_for_group(g)
    head_chunks = triton.cdiv(g, block_m)
    block_n, num_warps, num_stages = prefill_config(block_m, nvfp4, arch_major(q.device), blk_kv)
    strides_k, strides_v, num_pages, page_size = kv_geometry(k, v, paged)
    scale_tiles_n = triton.cdiv(d // 16, 4)
    grid = (total_q, hkv * head_chunks)
    torch.library.wrap_triton(sparse_prefill_fwd_kernel)[grid](
        q, k, v, k_scale, v_scale, k_global, v_global, out, lse, tlse, q2k, q_req, cu_q, cu_k,
        seqused_k, page_table,
        q.stride(0), q.stride(1), out.stride(0), out.stride(1),
        strides_k[0], strides_k[1], strides_k[2], strides_v[0], strides_v[1], strides_v[2],
        page_table.stride(0) if paged else 0,
        total_q, hq, hkv, g, head_chunks, topk, blk_kv, num_pages,
        page_table.shape[1] if paged else 0, page_size, scale_tiles_n,
        softmax_scale * LOG2E, 1.0 / lse_temperature_scale, int(causal), int(has_seqused),
        D=d, BLOCK_M=block_m, BLOCK_N=block_n, TOPK_P2=TOPK_MAX,
        PAGED=paged, NVFP4=nvfp4, WRITE_TLSE=write_tlse, FENCE=q.device.type != "cpu",
        num_warps=num_warps, num_stages=num_stages,
    )


# ---------------------------------------------------------------------------------------
# SM12x compile gate.

def _prefill_signature(q_dtype, kv_dtype):
    qt, kvt = _TRITON_TYPES[q_dtype], _TRITON_TYPES[kv_dtype]
    ot = "bf16" if q_dtype == torch.float8_e4m3fn else qt
    sig = {
        "Q": "*" + qt, "K": "*" + kvt, "V": "*" + kvt, "KScale": "*u8", "VScale": "*u8",
        "KGlobal": "*fp32", "VGlobal": "*fp32", "Out": "*" + ot, "Lse": "*fp32", "TLse": "*fp32",
        "Q2K": "*i32", "QReq": "*i32", "CuQ": "*i32", "CuK": "*i32", "SeqUsed": "*i32",
        "PageTable": "*i32",
    }
    for name in ("stride_qt", "stride_qh", "stride_ot", "stride_oh", "stride_k0", "stride_kh",
                 "stride_ks", "stride_v0", "stride_vh", "stride_vs", "stride_pt", "total_q", "Hq",
                 "Hkv", "G", "head_chunks", "topk", "blk_kv", "num_pages", "max_pages",
                 "page_size", "scale_tiles_n"):
        sig[name] = "i32"
    sig.update({"qk_scale_log2": "fp32", "inv_temperature": "fp32", "causal": "i32",
                "has_seqused": "i32"})
    for name in ("D", "BLOCK_M", "BLOCK_N", "TOPK_P2", "PAGED", "NVFP4", "WRITE_TLSE", "FENCE"):
        sig[name] = "constexpr"
    return sig


def gate_cases():
    cases = []
    for has_split in (False, True):
        cases.append(GateCase(
            name="k2q_invert[split]" if has_split else "k2q_invert[atomic]",
            fn=k2q_invert_kernel,
            signature={"RowPtr": "*i32", "QIdx": "*i32", "QSplit": "*i32", "RowReq": "*i32",
                       "RowBlk": "*i32", "CuQ": "*i32", "Count": "*i32", "Q2K": "*i32",
                       "total_rows": "i32", "nnz": "i32", "total_q": "i32", "topk": "i32",
                       "ROWS": "constexpr", "BLOCK_E": "constexpr", "HAS_SPLIT": "constexpr"},
            constexprs={"ROWS": INVERT_ROWS, "BLOCK_E": INVERT_BLOCK, "HAS_SPLIT": has_split},
            num_warps=4, num_stages=1,
        ))
    for q_dtype, kv_dtype in DTYPE_PAIRS:
        nvfp4 = kv_dtype == torch.uint8
        for d in (64, 128):
            for block_m in (16, 32, 64):
                for paged in (False, True):
                    for write_tlse in (False, True):
                        block_n, num_warps, num_stages = prefill_config(block_m, nvfp4)
                        layout = "paged" if paged else "dense"
                        tag = (f"{_TRITON_TYPES[q_dtype]}/{_TRITON_TYPES[kv_dtype]},D{d},M{block_m},"
                               f"N{block_n},{layout}{',tlse' if write_tlse else ''}")
                        cases.append(GateCase(
                            name="sparse_prefill_fwd[" + tag + "]",
                            fn=sparse_prefill_fwd_kernel,
                            signature=_prefill_signature(q_dtype, kv_dtype),
                            constexprs={"D": d, "BLOCK_M": block_m, "BLOCK_N": block_n,
                                        "TOPK_P2": TOPK_MAX, "PAGED": paged, "NVFP4": nvfp4,
                                        "WRITE_TLSE": write_tlse, "FENCE": True},
                            num_warps=num_warps, num_stages=num_stages,
                        ))
    return cases
