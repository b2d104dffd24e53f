"""The shared exact-attention reference against PyTorch's own attention."""
import math

import torch
import torch.nn.functional as F
import importlib

from _pkg import msa

ref = importlib.import_module(msa.__name__ + ".reference.attention")


def _sdpa(q, k, v, mask, scale):
    g = q.shape[1] // k.shape[1]
    kk = k.repeat_interleave(g, 1).transpose(0, 1).double()
    vv = v.repeat_interleave(g, 1).transpose(0, 1).double()
    out = F.scaled_dot_product_attention(q.transpose(0, 1).double(), kk, vv, attn_mask=mask, scale=scale)
    return out.transpose(0, 1)


def test_masked_attention_matches_sdpa_causal_gqa():
    torch.manual_seed(0)
    q, k, v = torch.randn(6, 8, 32), torch.randn(9, 2, 32), torch.randn(9, 2, 32)
    vis = ref.causal_visible(6, 9).expand(2, 6, 9)
    out, lse, tlse = ref.masked_attention(q, k, v, vis, softmax_scale=0.3)
    expect = _sdpa(q, k, v, vis[0], 0.3)
    assert torch.allclose(out.double(), expect, atol=1e-5)
    s = torch.einsum("qhd,khd->hqk", q, k.repeat_interleave(4, 1)) * 0.3
    s = s.masked_fill(~vis[0], -math.inf)
    assert torch.allclose(lse, torch.logsumexp(s, -1).T, atol=1e-5)
    assert tlse is lse


def test_empty_rows_are_zero_and_neg_inf():
    q, k, v = torch.randn(3, 4, 16), torch.randn(5, 1, 16), torch.randn(5, 1, 16)
    vis = torch.zeros(1, 3, 5, dtype=torch.bool)
    vis[0, 1, 2] = True
    out, lse, _ = ref.masked_attention(q, k, v, vis)
    assert torch.equal(out[0], torch.zeros(4, 16)) and torch.equal(out[2], torch.zeros(4, 16))
    assert torch.isinf(lse[0]).all() and (lse[0] < 0).all()
    assert torch.allclose(out[1], v[2, 0].expand(4, 16))


def test_sink_is_a_zero_value_logit():
    torch.manual_seed(1)
    q, k, v = torch.randn(2, 4, 16), torch.randn(7, 2, 16), torch.randn(7, 2, 16)
    sink = torch.randn(4, 16)
    vis = torch.ones(2, 2, 7, dtype=torch.bool)
    out, lse, _ = ref.masked_attention(q, k, v, vis, softmax_scale=0.25, sink=sink)
    # Same as appending a key equal to the sink with a zero value vector, per head.
    for h in range(4):
        kh = torch.cat([k[:, h // 2], sink[h : h + 1]])
        vh = torch.cat([v[:, h // 2], torch.zeros(1, 16)])
        p = torch.softmax(q[:, h] @ kh.T * 0.25, -1)
        assert torch.allclose(out[:, h], p @ vh, atol=1e-5)
        assert torch.allclose(lse[:, h], torch.logsumexp(q[:, h] @ kh.T * 0.25, -1), atol=1e-5)


def test_temperature_lse():
    torch.manual_seed(2)
    q, k, v = torch.randn(4, 2, 8), torch.randn(4, 1, 8), torch.randn(4, 1, 8)
    vis = ref.causal_visible(4, 4).unsqueeze(0)
    _, lse, tlse = ref.masked_attention(q, k, v, vis, softmax_scale=0.5, lse_temperature_scale=2.0)
    s = (torch.einsum("qhd,kd->hqk", q, k[:, 0]) * 0.5).masked_fill(~vis[0], -math.inf)
    assert torch.allclose(tlse, torch.logsumexp(s / 2.0, -1).T, atol=1e-5)
    assert torch.allclose(lse, torch.logsumexp(s, -1).T, atol=1e-5)


def test_block_selection_visible_skips_holes_out_of_range_and_dedupes():
    sel = torch.tensor([[[2, -1, 7, 2], [0, 1, -5, 3]]])  # nb = 3 for k_len 9, blk 4 -> ids 0..2
    vis = ref.block_selection_visible(sel, 9, 4)
    assert vis.shape == (1, 2, 9)
    assert vis[0, 0].nonzero().flatten().tolist() == [8]
    assert vis[0, 1].nonzero().flatten().tolist() == list(range(8))


def test_causal_visible_bottom_right():
    vis = ref.causal_visible(2, 5)
    assert vis.tolist() == [[True] * 4 + [False], [True] * 5]
    assert ref.causal_visible(3, 2).tolist() == [[False, False], [True, False], [True, True]]
