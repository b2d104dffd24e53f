"""Decode references: gather one request's tokens from a cache, then `masked_attention`.

Tokens whose page / slot entry is missing or out of range are treated as invisible
(the kernels skip them the same way instead of reading out of bounds).
"""
import torch

from .attention import block_selection_visible, causal_visible, masked_attention


def gather_paged_tokens(cache, table_row, kv_len, blk_kv):
    """cache [num_pages, Hkv, blk_kv, D], table_row [max_pages] -> (tokens [kv_len, Hkv, D], valid [kv_len])."""
    t = torch.arange(kv_len, device=cache.device)
    page_idx = t // blk_kv
    in_table = page_idx < table_row.numel()
    page = table_row.long().to(cache.device)[page_idx.clamp(max=max(table_row.numel() - 1, 0))] if kv_len else t
    valid = in_table & (page >= 0) & (page < cache.shape[0])
    tokens = cache[torch.where(valid, page, 0), :, t % blk_kv, :]
    return tokens, valid


def gather_slot_tokens(cache, token_row, kv_len):
    """cache [max_slots, Hkv, D], token_row [max_kv_len] (position -> slot) -> (tokens, valid)."""
    t = torch.arange(kv_len, device=cache.device)
    in_row = t < token_row.numel()
    slot = token_row.long().to(cache.device)[t.clamp(max=max(token_row.numel() - 1, 0))] if kv_len else t
    valid = in_row & (slot >= 0) & (slot < cache.shape[0])
    tokens = cache[torch.where(valid, slot, 0)]
    return tokens, valid


def _dequant(x, scale):
    x = x.float()
    return x if scale is None else x * scale.float().reshape(-1)[0]


def _request_attention(q_rows, k_tok, v_tok, valid, sel, kv_len, blk_kv, causal, softmax_scale, sink):
    """q_rows [seqlen_q, Hq, D]; sel [Hkv, seqlen_q, topK] or None (dense)."""
    seqlen_q = q_rows.shape[0]
    hkv = k_tok.shape[1]
    if causal:
        vis = causal_visible(seqlen_q, kv_len, device=q_rows.device)
    else:
        vis = torch.ones(seqlen_q, kv_len, dtype=torch.bool, device=q_rows.device)
    vis = (vis & valid.unsqueeze(0)).unsqueeze(0).expand(hkv, seqlen_q, kv_len)
    if sel is not None:
        vis = vis & block_selection_visible(sel, kv_len, blk_kv)
    out, lse, _ = masked_attention(q_rows, k_tok, v_tok, vis, softmax_scale=softmax_scale, sink=sink)
    return out, lse


def sparse_decode_reference(q, k, v, q2k_indices, page_table, seqused_k, seqlen_q, blk_kv, *, causal=True,
                            softmax_scale=None, k_scale=None, v_scale=None, sink=None):
    """Paged decode. q [B*seqlen_q, Hq, D]; k, v [num_pages, Hkv, blk_kv, D];
    q2k_indices [Hkv, B*seqlen_q, topK] or None. Returns (out fp32, lse fp32)."""
    b_count = seqused_k.numel()
    outs, lses = [], []
    for b in range(b_count):
        kv_len = max(int(seqused_k[b]), 0)
        rows = slice(b * seqlen_q, (b + 1) * seqlen_q)
        k_tok, valid = gather_paged_tokens(k, page_table[b], kv_len, blk_kv)
        v_tok, _ = gather_paged_tokens(v, page_table[b], kv_len, blk_kv)
        sel = None if q2k_indices is None else q2k_indices[:, rows]
        out, lse = _request_attention(q[rows], _dequant(k_tok, k_scale), _dequant(v_tok, v_scale), valid, sel,
                                      kv_len, blk_kv, causal, softmax_scale, sink)
        outs.append(out)
        lses.append(lse)
    return torch.cat(outs), torch.cat(lses)


def token_slot_decode_reference(q, sink, k_cache, v_cache, req_to_token, seq_lens, slot_ids, block_size, topk_idx,
                                sm_scale=None, *, k_scale=None, v_scale=None, causal=True):
    """FlashRT/SGLang layout, one query per request. q [B, Hq, D]; caches [max_slots, Hkv, D];
    topk_idx [Hkv, B, topK] or None (dense). Returns (out fp32 [B, Hq, D], lse fp32 [B, Hq])."""
    outs, lses = [], []
    for b in range(q.shape[0]):
        kv_len = max(int(seq_lens[b]), 0)
        req = int(slot_ids[b])
        if not 0 <= req < req_to_token.shape[0]:
            kv_len, token_row = 0, req_to_token[0, :0]
        else:
            token_row = req_to_token[req]
        k_tok, valid = gather_slot_tokens(k_cache, token_row, kv_len)
        v_tok, _ = gather_slot_tokens(v_cache, token_row, kv_len)
        sel = None if topk_idx is None else topk_idx[:, b:b + 1]
        out, lse = _request_attention(q[b:b + 1], _dequant(k_tok, k_scale), _dequant(v_tok, v_scale), valid, sel,
                                      kv_len, block_size, causal, sm_scale, sink)
        outs.append(out)
        lses.append(lse)
    return torch.cat(outs), torch.cat(lses)
