"""The MSA pipeline end to end with msa_blackwell, checked against a dense FP32 reference.

Prefill: proxy pass (`fmha_sm12x`, output_o=False) -> `sparse_topk_select` (own block forced)
-> `fmha_sm12x(kv_block_indexes=...)` (= `build_k2q_csr` + `sparse_atten_func`).
Decode: `flash_decode_with_topk_idx` (index heads, one per KV head) -> `sparse_decode_atten_func`.
Each result is compared with `masked_attention` restricted to the same selection.

Run: python examples/msa_pipeline.py [cuda|cpu]
"""
import importlib
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _pkg import msa  # noqa: E402


def _mod(name):
    return importlib.import_module(msa.__name__ + "." + name)


def _prefill(device, dtype, gen):
    fmha, topk, attention = _mod("fmha"), _mod("topk"), _mod("reference.attention")
    hq, hkv, d, blk, top_k = 8, 2, 64, 128, 3
    q_lens, k_lens = [100, 300], [600, 300]
    plan = fmha.fmha_sm12x_plan(q_lens, k_lens, hq, hkv, page_size=blk, output_maxscore=True, device=device)
    num_pages = int(plan.cu_page_offsets[-1])
    kv_indices = torch.randperm(num_pages + 2, generator=gen)[:num_pages].to(torch.int32).to(device)
    q = torch.randn(plan.total_q, hq, d, generator=gen).to(device, dtype)
    k = torch.randn(num_pages + 2, hkv, blk, d, generator=gen).to(device, dtype)
    v = torch.randn(num_pages + 2, hkv, blk, d, generator=gen).to(device, dtype)
    # index branch: one index head per KV head
    index_plan = fmha.fmha_sm12x_plan(q_lens, k_lens, hkv, hkv, page_size=blk, output_maxscore=True, device=device)
    q_idx = torch.randn(plan.total_q, hkv, d, generator=gen).to(device, dtype)
    k_idx = torch.randn(num_pages + 2, hkv, blk, d, generator=gen).to(device, dtype)
    _, max_score = fmha.fmha_sm12x(q_idx, k_idx, k_idx, index_plan, kv_indices, output_o=False)
    own_block = torch.cat([torch.arange(kl - ql, kl) // blk for ql, kl in zip(q_lens, k_lens)]).to(device)
    selection = topk.sparse_topk_select(max_score, top_k, num_valid_pages=(own_block + 1).to(torch.int32),
                                        force_end_blocks=1)  # [total_q, Hkv, topK]
    out, _ = fmha.fmha_sm12x(q, k, v, plan, kv_indices, kv_block_indexes=selection, output_maxscore=False)
    err = 0.0
    cu_q, cu_p = plan.cu_seqlens_q.tolist(), plan.cu_page_offsets.tolist()
    for b, (ql, kl) in enumerate(zip(q_lens, k_lens)):
        pages = kv_indices[cu_p[b] : cu_p[b + 1]].long()
        kb = k[pages].transpose(1, 2).reshape(-1, hkv, d)[:kl]
        vb = v[pages].transpose(1, 2).reshape(-1, hkv, d)[:kl]
        rows = slice(cu_q[b], cu_q[b + 1])
        sel = selection[rows].permute(1, 0, 2)
        visible = attention.block_selection_visible(sel, kl, blk) & attention.causal_visible(ql, kl, device)
        want, _, _ = attention.masked_attention(q[rows], kb, vb, visible)
        err = max(err, (out[rows].float() - want).abs().max().item())
    return err


def _decode(device, dtype, gen):
    decode, di, attention = _mod("decode"), _mod("decode_indexer"), _mod("reference.attention")
    batch, hq, hkv, d, blk, top_k = 2, 8, 2, 64, 128, 4
    seq_lens = torch.tensor([1000, 260], dtype=torch.int32)
    pages_per = (seq_lens + blk - 1) // blk
    num_pages = int(pages_per.sum()) + 1
    perm = torch.randperm(num_pages, generator=gen)
    page_table = torch.zeros(batch, int(pages_per.max()), dtype=torch.int32)
    start = 0
    for b in range(batch):
        page_table[b, : pages_per[b]] = perm[start : start + pages_per[b]].to(torch.int32)
        start += int(pages_per[b])
    q = torch.randn(batch, hq, d, generator=gen).to(device, dtype)
    k = torch.randn(num_pages, hkv, blk, d, generator=gen).to(device, dtype)
    v = torch.randn(num_pages, hkv, blk, d, generator=gen).to(device, dtype)
    # index K: one head per request token slot; slot = page * blk + offset (a view of a paged index cache)
    k_idx_pages = torch.randn(num_pages, 1, blk, d, generator=gen).to(device, dtype)
    k_idx = k_idx_pages.view(num_pages * blk, 1, d)
    t = torch.arange(int(seq_lens.max()))
    req_to_token = (page_table[:, (t // blk).clamp(max=page_table.shape[1] - 1)] * blk + t % blk).to(torch.int32)
    q_idx = torch.randn(batch, hkv, d, generator=gen).to(device, dtype)
    _, topk_idx, _ = di.flash_decode_with_topk_idx(
        q_idx, None, k_idx, None, req_to_token.to(device), seq_lens.to(device), int(seq_lens.max()),
        torch.arange(batch, dtype=torch.int64, device=device), blk, top_k, 1, 1, disable_index_value=True)
    out = decode.sparse_decode_atten_func(q, k, v, topk_idx, page_table=page_table.to(device),
                                          seqused_k=seq_lens.to(device), seqlen_q=1,
                                          max_seqlen_k=int(seq_lens.max()))
    err = 0.0
    for b in range(batch):
        kl = int(seq_lens[b])
        pages = page_table[b, : pages_per[b]].long().to(device)
        kb = k[pages].transpose(1, 2).reshape(-1, hkv, d)[:kl]
        vb = v[pages].transpose(1, 2).reshape(-1, hkv, d)[:kl]
        visible = attention.block_selection_visible(topk_idx[:, b : b + 1], kl, blk)
        want, _, _ = attention.masked_attention(q[b : b + 1], kb, vb, visible)
        err = max(err, (out[b : b + 1].float() - want).abs().max().item())
    return err


def run_pipeline(device):
    """Max abs errors of the prefill and decode pipelines vs the dense FP32 reference on the same selection."""
    device = torch.device(device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float16
    gen = torch.Generator().manual_seed(0)
    return {"prefill_max_abs": _prefill(device, dtype, gen), "decode_max_abs": _decode(device, dtype, gen)}


if __name__ == "__main__":
    dev = sys.argv[1] if len(sys.argv) > 1 else ("cuda" if torch.cuda.is_available() else "cpu")
    print(run_pipeline(dev))
