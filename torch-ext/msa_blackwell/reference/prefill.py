"""Reference for block-sparse prefill (`sparse_atten_func`): the k2q CSR turned back into
per-query block visibility, then `masked_attention` per request."""
import torch

from .attention import block_selection_visible, causal_visible, masked_attention
from .decode import gather_paged_tokens


def csr_row_blocks(cu_seqlens_k, blk_kv):
    """(request, block) of every CSR row under the block-major round-robin numbering."""
    lens = (cu_seqlens_k[1:] - cu_seqlens_k[:-1]).tolist()
    nb = [(n + blk_kv - 1) // blk_kv for n in lens]
    rows = []
    for j in range(max(nb, default=0)):
        rows.extend((b, j) for b in range(len(nb)) if j < nb[b])
    return rows


def k2q_csr_to_q2k(k2q_row_ptr, k2q_q_indices, cu_seqlens_q, cu_seqlens_k, blk_kv, topK):
    """Inverse of the k2q CSR: q2k [Hkv, total_q, topK] ascending batch-local block ids, -1 padded.

    Queries out of their request's range are skipped; a query listed twice in a row counts once.
    """
    hkv = k2q_row_ptr.shape[0]
    cu_q = cu_seqlens_q.tolist()
    total_q = cu_q[-1]
    rows = csr_row_blocks(cu_seqlens_k, blk_kv)
    ptr = k2q_row_ptr.tolist()
    idx = k2q_q_indices.tolist()
    sel = [[set() for _ in range(total_q)] for _ in range(hkv)]
    for g in range(hkv):
        for r, (b, j) in enumerate(rows):
            if r + 1 >= len(ptr[g]):
                break
            lq = cu_q[b + 1] - cu_q[b]
            for e in range(max(ptr[g][r], 0), min(ptr[g][r + 1], len(idx[g]))):
                if 0 <= idx[g][e] < lq:
                    sel[g][cu_q[b] + idx[g][e]].add(j)
    q2k = torch.full((hkv, total_q, topK), -1, dtype=torch.int32)
    for g in range(hkv):
        for t in range(total_q):
            blocks = sorted(sel[g][t])[:topK]
            q2k[g, t, : len(blocks)] = torch.tensor(blocks, dtype=torch.int32)
    return q2k.to(k2q_row_ptr.device)


def q2k_to_k2q_csr(q2k, cu_seqlens_q, cu_seqlens_k, blk_kv):
    """Small q2k -> k2q CSR builder for tests (layout of CONTRACT §2.2)."""
    hkv, total_q, topk = q2k.shape
    cu_q = cu_seqlens_q.tolist()
    cu_k = cu_seqlens_k.tolist()
    rows = csr_row_blocks(cu_seqlens_k, blk_kv)
    row_ptr = torch.zeros(hkv, len(rows) + 1, dtype=torch.int32)
    q_idx = torch.full((hkv, total_q * topk), -1, dtype=torch.int32)
    sel = q2k.tolist()
    for g in range(hkv):
        n = 0
        for r, (b, j) in enumerate(rows):
            nb = (cu_k[b + 1] - cu_k[b] + blk_kv - 1) // blk_kv
            for ql in range(cu_q[b + 1] - cu_q[b]):
                if j < nb and j in sel[g][cu_q[b] + ql]:
                    q_idx[g, n] = ql
                    n += 1
            row_ptr[g, r + 1] = n
    return row_ptr.to(q2k.device), q_idx.to(q2k.device)


def gather_paged_kv(cache, page_table_row, k_len):
    """Paged cache [num_pages, Hkv, page_size, D] -> this request's [k_len, Hkv, D] (keys past the
    page-table row or on a page outside the cache read page 0: `gather_paged_tokens` tells them)."""
    return gather_paged_tokens(cache, page_table_row, k_len, cache.shape[2])[0]


def request_kv_lengths(cu_seqlens_k, seqused_k, paged):
    """Each request's key count, >= 0 as the kernel clamps it: cu_seqlens_k, or seqused_k (paged) /
    min of both (dense)."""
    lens = cu_seqlens_k[1:] - cu_seqlens_k[:-1]
    if seqused_k is not None:
        lens = seqused_k if paged else torch.minimum(lens, seqused_k)
    return lens.clamp(min=0).tolist()


def sparse_prefill_reference(
    q, k, v, k2q_row_ptr, k2q_q_indices, topK, *, cu_seqlens_q, cu_seqlens_k, blk_kv=128,
    causal=False, softmax_scale=None, lse_temperature_scale=1.0, page_table=None, seqused_k=None,
    dequant_k=None, dequant_v=None,
):
    """FP32 (out [total_q, Hq, D], lse [total_q, Hq], tlse [total_q, Hq]).

    `dequant_k`/`dequant_v` (optional) map the raw K/V cache to float32 with the same layout
    (NVFP4); otherwise K/V are upcast as they are.
    """
    paged = page_table is not None
    kf = dequant_k(k) if dequant_k is not None else k.float()
    vf = dequant_v(v) if dequant_v is not None else v.float()
    total_q, hq, d = q.shape
    q2k = k2q_csr_to_q2k(k2q_row_ptr, k2q_q_indices, cu_seqlens_q, cu_seqlens_k, blk_kv, topK)
    out = torch.zeros(total_q, hq, d, dtype=torch.float32, device=q.device)
    lse = torch.full((total_q, hq), float("-inf"), dtype=torch.float32, device=q.device)
    tlse = lse.clone()
    cu_q = cu_seqlens_q.tolist()
    cu_k = cu_seqlens_k.tolist()
    k_lens = request_kv_lengths(cu_seqlens_k, seqused_k, paged)
    for b in range(len(cu_q) - 1):
        q0, q1 = cu_q[b], cu_q[b + 1]
        lq, lk = q1 - q0, k_lens[b]
        if lq == 0:
            continue
        if paged:
            # a seqused_k past the page table is kept (it sets the causal end); the kernel
            # skips the keys that have no page, and so does this
            kb, key_ok = gather_paged_tokens(kf, page_table[b], lk, kf.shape[2])
            vb, _ = gather_paged_tokens(vf, page_table[b], lk, vf.shape[2])
        else:
            kb = kf[cu_k[b]: cu_k[b] + lk]
            vb = vf[cu_k[b]: cu_k[b] + lk]
        visible = block_selection_visible(q2k[:, q0:q1], lk, blk_kv)
        if causal:
            visible = visible & causal_visible(lq, lk, device=q.device).unsqueeze(0)
        if paged:
            visible = visible & key_ok.view(1, 1, -1)
        o, l_, t_ = masked_attention(
            q[q0:q1], kb, vb, visible, softmax_scale=softmax_scale,
            lse_temperature_scale=lse_temperature_scale,
        )
        out[q0:q1], lse[q0:q1], tlse[q0:q1] = o, l_, t_
    return out, lse, tlse
