"""References for the index branch: FP4 operand decoding, block-max scores, the proxy max_score.

Every score here is a raw dot product (no softmax scale, no global scale) in float32.
"""
import math

import torch

from .attention import causal_visible
from .decode import gather_slot_tokens
from .nvfp4 import unpack_e2m1

SCORE_BLOCK = 128  # tokens per scored key block (= the FP4 K page size)

FP4_GROUP = {"mxfp4": 32, "nvfp4": 16}

def decode_e8m0(codes):
    """E8M0 scale codes (uint8) -> float32 2^(e-127)."""
    return torch.exp2(codes.float() - 127.0)


def decode_e4m3(codes):
    """E4M3 scale codes (uint8 bit patterns or float8_e4m3fn) -> float32."""
    if codes.dtype == torch.uint8:
        codes = codes.view(torch.float8_e4m3fn)
    return codes.float()


def decode_fp4_scales(codes, fp4_format):
    return decode_e8m0(codes) if fp4_format == "mxfp4" else decode_e4m3(codes)


def preordered_scale_offsets(num_l, rows, groups, device=None):
    """int64 [num_l, rows, groups]: flat position of scale (l, r, c) in the preordered_mma storage.

    Storage (L, ceil(rows/128), ceil(groups/4), 32, 4, 4) indexed
    [l, r//128, c//4, r%32, (r//32)%4, c%4].
    """
    row_tiles = -(-rows // 128)
    col_tiles = -(-groups // 4)
    l_idx = torch.arange(num_l, device=device).view(-1, 1, 1)
    r = torch.arange(rows, device=device).view(1, -1, 1)
    c = torch.arange(groups, device=device).view(1, 1, -1)
    return (
        ((l_idx * row_tiles + r // 128) * col_tiles + c // 4) * 512
        + (r % 32) * 16
        + ((r // 32) % 4) * 4
        + c % 4
    )


def preorder_scales(logical):
    """[L, rows, groups] scale codes -> the preordered_mma storage (zero padded), same dtype."""
    num_l, rows, groups = logical.shape
    storage = torch.zeros(
        num_l, -(-rows // 128), -(-groups // 4), 32, 4, 4, dtype=logical.dtype, device=logical.device
    )
    offsets = preordered_scale_offsets(num_l, rows, groups, logical.device)
    storage.view(-1)[offsets.reshape(-1)] = logical.reshape(-1)
    return storage


def unpreorder_scales(storage, num_l, rows, groups):
    """The preordered_mma storage -> logical [L, rows, groups] scale codes."""
    offsets = preordered_scale_offsets(num_l, rows, groups, storage.device)
    return storage.reshape(-1)[offsets.reshape(-1)].view(num_l, rows, groups)


def logical_q_scales(q_scale, total_q, hq, groups, scale_layout):
    """Q scale codes as [total_q, Hq, groups] for either layout."""
    if scale_layout == "public":
        return q_scale
    return unpreorder_scales(q_scale, hq, total_q, groups).permute(1, 0, 2)


def logical_k_scales(k_scale, total_pages, hkv, groups, scale_layout):
    """K scale codes as [total_pages, Hkv, 128, groups] for either layout."""
    if scale_layout == "public":
        return k_scale
    return unpreorder_scales(k_scale, total_pages * hkv, SCORE_BLOCK, groups).view(
        total_pages, hkv, SCORE_BLOCK, groups
    )


def dequantize_fp4(packed, scale_codes, fp4_format):
    """Packed E2M1 [..., D/2] with logical scale codes [..., D/group] -> float32 [..., D]."""
    values = unpack_e2m1(packed)
    scales = decode_fp4_scales(scale_codes, fp4_format)
    return values * scales.repeat_interleave(FP4_GROUP[fp4_format], dim=-1)


def request_qo_offsets(cu_seqlens_q, cu_seqlens_k, qo_offset=None):
    """Per-request causal offset (query i sits at key position i + offset): default L_k - L_q."""
    lq = (cu_seqlens_q[1:] - cu_seqlens_q[:-1]).long()
    lk = (cu_seqlens_k[1:] - cu_seqlens_k[:-1]).long()
    return lk - lq if qo_offset is None else qo_offset.long()


def block_max_scores(q, k, visible, num_blocks, block=SCORE_BLOCK):
    """Block max of raw q·k for one request.

    q [Lq, Hq, D], k [Lk, Hkv, D] float32; visible bool [Lq, Lk].
    Returns float32 [Hq, num_blocks, Lq], -inf where a block has no visible token.
    """
    lq, hq, _ = q.shape
    lk, hkv, _ = k.shape
    g = hq // hkv
    s = torch.einsum("qhd,khd->hqk", q.float(), k.float().repeat_interleave(g, dim=1))
    s = s.masked_fill(~visible.unsqueeze(0), -math.inf)
    out = torch.full((hq, num_blocks, lq), -math.inf, dtype=torch.float32, device=q.device)
    for j in range(min(num_blocks, -(-lk // block))):
        out[:, j, :] = s[:, :, j * block : (j + 1) * block].amax(dim=-1)
    return out


def paged_keys(k_pages, page_ids, length):
    """One request's keys [length, Hkv, ...] from pages [P, Hkv, page_size, ...] and a bool [length]
    telling which came from an in-range page id (the others hold arbitrary data and must be masked)."""
    page_size = k_pages.shape[2]
    missing = -(-length // page_size) - page_ids.shape[0]
    if missing > 0:  # a page table shorter than the request: the missing pages are invalid
        page_ids = torch.cat([page_ids, page_ids.new_full((missing,), -1)])
    valid = (page_ids >= 0) & (page_ids < k_pages.shape[0])
    pages = k_pages[page_ids.long().clamp(0, k_pages.shape[0] - 1)]  # [n, Hkv, page_size, ...]
    keys = pages.transpose(1, 2).flatten(0, 1)[:length]
    tok_valid = valid.repeat_interleave(page_size)[:length]
    return keys, tok_valid


def fp4_indexer_block_scores_reference(
    q_fp4, k_fp4, q_scale, k_scale, cu_seqlens_q, cu_seqlens_k, cu_page_offsets, *,
    max_seqlen_q, max_seqlen_k, kv_indices, fp4_format, causal=False, qo_offset=None,
    scale_layout="preordered_mma",
):
    """FP32 reference of `fp4_indexer_block_scores` (arguments already validated)."""
    total_q, hq, half_d = q_fp4.shape
    total_pages, hkv = k_fp4.shape[0], k_fp4.shape[1]
    groups = 2 * half_d // FP4_GROUP[fp4_format]
    qs = logical_q_scales(q_scale, total_q, hq, groups, scale_layout)
    ks = logical_k_scales(k_scale, total_pages, hkv, groups, scale_layout)
    q = dequantize_fp4(q_fp4, qs, fp4_format)
    k = dequantize_fp4(k_fp4, ks, fp4_format)  # [P, Hkv, 128, D]
    num_blocks = -(-max_seqlen_k // SCORE_BLOCK)
    out = torch.full((hq, num_blocks, total_q), -math.inf, dtype=torch.float32, device=q.device)
    cu_q = cu_seqlens_q.tolist()
    cu_k = cu_seqlens_k.tolist()
    cu_p = cu_page_offsets.tolist()
    offsets = request_qo_offsets(cu_seqlens_q, cu_seqlens_k, qo_offset).tolist()
    for b in range(len(cu_q) - 1):
        lq, lk = cu_q[b + 1] - cu_q[b], cu_k[b + 1] - cu_k[b]
        if lq == 0 or lk == 0:
            continue
        npages = -(-lk // SCORE_BLOCK)
        keys, tok_valid = paged_keys(k, kv_indices[cu_p[b] : cu_p[b] + npages], lk)
        visible = tok_valid.unsqueeze(0).expand(lq, lk)
        if causal:
            visible = visible & causal_visible(lq, lk, q.device, kv_len=offsets[b] + lq)
        out[:, :, cu_q[b] : cu_q[b + 1]] = block_max_scores(q[cu_q[b] : cu_q[b + 1]], keys, visible, num_blocks)
    return out


def request_keys(k, b, cu_k, cu_p, kv_indices, page_size):
    """Request b's keys [Lk, Hkv, D] and their readable mask from a dense or paged (page_size > 0) cache."""
    lk = cu_k[b + 1] - cu_k[b]
    if page_size <= 0:
        return k[cu_k[b] : cu_k[b + 1]], torch.ones(lk, dtype=torch.bool, device=k.device)
    npages = -(-lk // page_size)
    return paged_keys(k, kv_indices[cu_p[b] : cu_p[b] + npages], lk)


def proxy_fmha_reference(q, k, v, cu_seqlens_q, cu_seqlens_k, cu_page_offsets, kv_indices, qo_offset, *,
                         page_size, causal, num_tiles, sm_scale, q_scale=1.0, k_scale=1.0, v_scale=1.0):
    """FP32 reference of the proxy FMHA: (out [total_q, Hq, D], max_score [Hq, num_tiles, total_q]).

    k, v dense `[total_k, Hkv, D]` (page_size <= 0) or paged `[P, Hkv, page_size, D]`; FP8 operands
    are dequantized with the scalar scales. max_score is the raw dequantized q·k max per 128 keys.
    """
    from .attention import masked_attention

    total_q, hq, d = q.shape
    qf = q.float() * q_scale
    kf = k.float() * k_scale
    vf = v.float() * v_scale
    out = torch.zeros(total_q, hq, d, dtype=torch.float32, device=q.device)
    max_score = torch.full((hq, num_tiles, total_q), -math.inf, dtype=torch.float32, device=q.device)
    cu_q, cu_k = cu_seqlens_q.tolist(), cu_seqlens_k.tolist()
    cu_p = cu_page_offsets.tolist() if cu_page_offsets is not None else None
    offsets = qo_offset.tolist()
    for b in range(len(cu_q) - 1):
        lq, lk = cu_q[b + 1] - cu_q[b], cu_k[b + 1] - cu_k[b]
        if lq == 0 or lk == 0:
            continue
        keys, ok = request_keys(kf, b, cu_k, cu_p, kv_indices, page_size)
        values, _ = request_keys(vf, b, cu_k, cu_p, kv_indices, page_size)
        visible = ok.unsqueeze(0).expand(lq, lk)
        if causal:
            visible = visible & causal_visible(lq, lk, q.device, kv_len=offsets[b] + lq)
        rows = slice(cu_q[b], cu_q[b + 1])
        hkv = k.shape[1]
        o, _, _ = masked_attention(qf[rows], keys, values, visible.unsqueeze(0).expand(hkv, lq, lk), sm_scale)
        out[rows] = o
        max_score[:, :, rows] = block_max_scores(qf[rows], keys, visible, num_tiles)
    return out, max_score


def decode_block_scores_reference(q, k_cache, req_to_token, seq_lens, slot_ids, block_size, max_blocks, k_scale=1.0):
    """Decode block scores over the token-slot cache: float32 [Hq, B, max_blocks].

    q [B, Hq, D]; k_cache [max_slots, Hkv, D]; a request sees its first seq_len positions;
    positions whose slot is out of range (or whose request row is) are skipped; -inf where none.
    """
    batch, hq, _ = q.shape
    out = torch.full((hq, batch, max_blocks), -math.inf, dtype=torch.float32, device=q.device)
    for b in range(batch):
        req = int(slot_ids[b])
        if not 0 <= req < req_to_token.shape[0]:
            continue
        kv_len = min(max(int(seq_lens[b]), 0), req_to_token.shape[1])
        keys, valid = gather_slot_tokens(k_cache, req_to_token[req], kv_len)
        visible = valid.unsqueeze(0)
        out[:, b, :] = block_max_scores(q[b : b + 1].float(), keys.float() * k_scale, visible, max_blocks,
                                        block_size)[:, :, 0]
    return out
