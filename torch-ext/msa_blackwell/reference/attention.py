"""The one exact-attention reference every sparse path (prefill, decode, helpers) reduces to."""
import math

import torch


def default_scale(head_dim, softmax_scale=None):
    return head_dim ** -0.5 if softmax_scale is None else float(softmax_scale)


def causal_visible(q_len, k_len, device=None, key_start=0, kv_len=None):
    """Bottom-right causal mask [q_len, k_len]: query i sees keys t <= i + (kv_len - q_len).

    `kv_len` (default `k_len`) is the request's causal length; keys at or beyond it are hidden.
    """
    kv_len = k_len if kv_len is None else kv_len
    qi = torch.arange(q_len, device=device).unsqueeze(1)
    t = torch.arange(k_len, device=device).unsqueeze(0) + key_start
    return (t <= qi + (kv_len - q_len)) & (t < kv_len)


def block_selection_visible(sel, k_len, blk_kv):
    """Tokens covered by a block selection.

    sel: int [Hkv, q_len, topK] batch-local block ids (-1 and out-of-range ids skipped,
    duplicates count once). Returns bool [Hkv, q_len, k_len].
    """
    nb = (k_len + blk_kv - 1) // blk_kv
    hkv, q_len, _ = sel.shape
    sel = sel.long()
    valid = (sel >= 0) & (sel < nb)
    blocks = torch.zeros(hkv, q_len, nb + 1, dtype=torch.bool, device=sel.device)
    blocks.scatter_(2, torch.where(valid, sel, nb), True)
    token_block = torch.arange(k_len, device=sel.device) // blk_kv
    return blocks[:, :, :nb][:, :, token_block]


def masked_attention(q, k, v, visible, softmax_scale=None, sink=None, lse_temperature_scale=1.0):
    """Exact softmax attention in float32 over the visible keys.

    q [Tq, Hq, D]; k, v [Tk, Hkv, D] (already dequantized); visible bool [Hkv, Tq, Tk]
    (each query head of a group uses its group's row). sink [Hq, D] or None adds one
    logit scale*q.sink with a zero value. Returns (out [Tq, Hq, D], lse [Tq, Hq],
    tlse [Tq, Hq]) in float32; a row with nothing visible gives out 0 and lse -inf
    (a sink alone still gives out 0, lse = its logit).
    """
    tq, hq, d = q.shape
    hkv = k.shape[1]
    g = hq // hkv
    scale = default_scale(d, softmax_scale)
    qf = q.float().view(tq, hkv, g, d)
    s = torch.einsum("qhgd,khd->hgqk", qf, k.float()) * scale  # [Hkv, G, Tq, Tk]
    s = s.masked_fill(~visible.unsqueeze(1), -math.inf)
    if sink is not None:
        sink_logit = torch.einsum("qhgd,hgd->hgq", qf, sink.float().view(hkv, g, d)) * scale
        s = torch.cat([s, sink_logit.unsqueeze(-1)], dim=-1)
    lse = torch.logsumexp(s, dim=-1)  # [Hkv, G, Tq]
    p = torch.exp(s - torch.where(torch.isinf(lse), 0.0, lse).unsqueeze(-1))
    if sink is not None:
        p = p[..., :-1]
    out = torch.einsum("hgqk,khd->qhgd", p, v.float()).reshape(tq, hq, d)
    to_rows = lambda x: x.permute(2, 0, 1).reshape(tq, hq)  # noqa: E731
    lse_rows = to_rows(lse)
    if lse_temperature_scale == 1.0:
        return out, lse_rows, lse_rows
    return out, lse_rows, to_rows(torch.logsumexp(s / lse_temperature_scale, dim=-1))
