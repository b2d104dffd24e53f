"""End-to-end MiniMax Sparse Attention with msa_blackwell, every stage checked.

index scores (proxy pass) -> top-k blocks -> k2q CSR -> sparse prefill -> sparse decode,
plus the NVFP4-KV prefill, each compared with the PyTorch reference on the same inputs.
On a GPU the native CUDA ops and Triton kernels run; without one the package runs its
PyTorch reference path, and the demo says so.

Run: bash tools/demo.sh   (or: python examples/msa_demo.py [cuda|cpu])
"""
import importlib
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _pkg import msa  # noqa: E402

ref = importlib.import_module(msa.__name__ + ".reference")

HQ, HKV, D, BLK, TOPK = 8, 2, 64, 64, 4
Q_LENS, K_LENS = [96, 40], [320, 40]  # a prefix-cached chunk and a fresh request


def max_err(got, want):
    return (got.float() - want.float()).abs().max().item()


def dense_kv(gen, device, dtype):
    total_k = sum(K_LENS)
    return tuple(torch.randn(total_k, HKV, D, generator=gen).to(device, dtype) for _ in range(2))


def visible_for(selection_hqk, b, q_len, k_len):
    """[Hkv, q_len, k_len] tokens each query of request b attends (selection + causal)."""
    return ref.attention.block_selection_visible(selection_hqk, k_len, BLK) & ref.attention.causal_visible(
        q_len, k_len, selection_hqk.device)


def prefill_reference(q, k, v, selection, cu_q, cu_k):
    outs = []
    for b, (q_len, k_len) in enumerate(zip(Q_LENS, K_LENS)):
        qs, ks = slice(cu_q[b], cu_q[b + 1]), slice(cu_k[b], cu_k[b + 1])
        vis = visible_for(selection[qs].permute(1, 0, 2), b, q_len, k_len)
        outs.append(ref.attention.masked_attention(q[qs], k[ks], v[ks], vis)[0])
    return torch.cat(outs)


def main(device):
    device = torch.device(device)
    on_gpu = device.type == "cuda"
    print(f"msa_blackwell demo on {torch.cuda.get_device_name() if on_gpu else 'CPU'}: "
          + ("native CUDA ops + Triton kernels" if on_gpu and msa.has_native_ops() else
             "Triton kernels, native ops on the reference path" if on_gpu else
             "no GPU, running the PyTorch reference path"))
    dtype = torch.bfloat16
    tol = 2e-2  # bf16 output rounding; the CPU path is exact up to fp32 summation order
    gen = torch.Generator().manual_seed(0)
    cu_q = [0, Q_LENS[0], sum(Q_LENS)]
    cu_k = [0, K_LENS[0], sum(K_LENS)]
    cu_q_t = torch.tensor(cu_q, dtype=torch.int32, device=device)
    cu_k_t = torch.tensor(cu_k, dtype=torch.int32, device=device)
    total_q = sum(Q_LENS)
    q = torch.randn(total_q, HQ, D, generator=gen).to(device, dtype)
    k, v = dense_kv(gen, device, dtype)
    rows = []

    # 1. index scores: the proxy pass of the upstream pipeline, one index head per KV head.
    q_idx = torch.randn(total_q, HKV, D, generator=gen).to(device, dtype)
    k_idx, _ = dense_kv(gen, device, dtype)
    plan = msa.fmha_sm12x_plan(Q_LENS, K_LENS, HKV, HKV, output_maxscore=True, device=device)
    _, scores = msa.fmha_sm12x(q_idx, k_idx, k_idx, plan, output_o=False)  # [Hkv, K_tiles, total_q]
    want_scores = torch.full_like(scores, float("-inf"))
    for b, (q_len, k_len) in enumerate(zip(Q_LENS, K_LENS)):
        qs, ks = slice(cu_q[b], cu_q[b + 1]), slice(cu_k[b], cu_k[b + 1])
        dots = torch.einsum("qhd,khd->hqk", q_idx[qs].float(), k_idx[ks].float())
        dots = dots.masked_fill(~ref.attention.causal_visible(q_len, k_len, device), float("-inf"))
        for j in range(-(-k_len // 128)):
            want_scores[:, j, qs] = dots[:, :, j * 128:(j + 1) * 128].amax(-1)
    finite = torch.isfinite(want_scores)
    err = max_err(scores[finite], want_scores[finite])
    score_tol = 1e-3 * want_scores[finite].abs().max().item()  # fp32 accumulation order only
    same_inf = torch.equal(torch.isfinite(scores), finite)
    rows.append(("index scores (fmha_sm12x proxy)", err, score_tol, same_inf and err <= score_tol))

    # 2. top-k per (query, KV head), the query's own block always kept. Proxy tiles are 128
    #    tokens, KV blocks BLK=64: score each block by its tile's score.
    block_scores = scores.repeat_interleave(128 // BLK, dim=1)  # [Hkv, blocks, total_q]
    own = torch.cat([torch.arange(kl - ql, kl) // BLK for ql, kl in zip(Q_LENS, K_LENS)]).to(device)
    selection = msa.sparse_topk_select(block_scores, TOPK, num_valid_pages=(own + 1).to(torch.int32),
                                       force_end_blocks=1)  # [total_q, Hkv, TOPK], ascending ids
    want_sel = ref.topk.sparse_topk_select(block_scores.cpu(), TOPK, (own + 1).cpu().to(torch.int32),
                                           force_end_blocks=1)
    ok = torch.equal(selection.cpu(), want_sel)
    rows.append(("top-k (sparse_topk_select)", 0.0 if ok else 1.0, 0.0, ok))

    # 3. k2q CSR with the split schedule.
    q2k = selection.permute(1, 0, 2)
    row_ptr, q_indices, schedule = msa.build_k2q_csr(q2k, cu_q_t, cu_k_t, BLK, total_k=sum(K_LENS),
                                                     return_schedule=True)
    want_ptr, want_idx = ref.csr.build_k2q_csr(q2k.cpu(), cu_q_t.cpu(), cu_k_t.cpu(), BLK,
                                               total_rows=row_ptr.shape[1] - 1)[:2]
    ok = torch.equal(row_ptr.cpu(), want_ptr) and torch.equal(q_indices.cpu(), want_idx)
    rows.append(("k2q CSR (build_k2q_csr)", 0.0 if ok else 1.0, 0.0, ok))

    # 4. sparse prefill over the CSR.
    out, lse = msa.sparse_atten_func(q, k, v, row_ptr, q_indices, TOPK, cu_seqlens_q=cu_q_t, cu_seqlens_k=cu_k_t,
                                     max_seqlen_q=max(Q_LENS), max_seqlen_k=max(K_LENS), blk_kv=BLK, causal=True,
                                     schedule=schedule, return_softmax_lse=True)
    want = prefill_reference(q, k, v, selection, cu_q, cu_k)
    err = max_err(out, want)
    rows.append(("sparse prefill (sparse_atten_func)", err, tol, err <= tol))

    # 5. NVFP4 KV: quantize, then the same prefill dequantizing inside the kernel.
    qk4, qv4 = msa.quantize_kv_bf16_to_nvfp4_128x4(k.to(torch.bfloat16), v.to(torch.bfloat16))
    out4 = msa.sparse_atten_nvfp4_kv_func(
        q, qk4.data, qv4.data, qk4.scale_128x4, qv4.scale_128x4, qk4.global_scale, qv4.global_scale, row_ptr,
        q_indices, TOPK, cu_seqlens_q=cu_q_t, cu_seqlens_k=cu_k_t, max_seqlen_q=max(Q_LENS),
        max_seqlen_k=max(K_LENS), blk_kv=BLK, causal=True)
    kd = msa.dequantize_nvfp4_128x4_to_bf16(qk4).to(dtype)
    vd = msa.dequantize_nvfp4_128x4_to_bf16(qv4).to(dtype)
    err = max_err(out4, prefill_reference(q, kd, vd, selection, cu_q, cu_k))
    rows.append(("NVFP4-KV prefill (sparse_atten_nvfp4_kv_func)", err, 2e-2, err <= 2e-2))

    # 6. decode: one new token per request over a paged cache, own selection per KV head.
    seqused = torch.tensor(K_LENS, dtype=torch.int32, device=device)
    pages = [-(-kl // BLK) for kl in K_LENS]
    perm = torch.randperm(sum(pages), generator=gen).to(torch.int32)
    page_table = torch.zeros(2, max(pages), dtype=torch.int32)
    page_table[0, :pages[0]], page_table[1, :pages[1]] = perm[:pages[0]], perm[pages[0]:]
    k_pages = torch.zeros(sum(pages), HKV, BLK, D, dtype=dtype, device=device)
    v_pages = torch.zeros_like(k_pages)
    for b in range(2):
        for j in range(pages[b]):
            tok = slice(cu_k[b] + j * BLK, min(cu_k[b] + (j + 1) * BLK, cu_k[b + 1]))
            n = tok.stop - tok.start
            k_pages[page_table[b, j], :, :n] = k[tok].transpose(0, 1)
            v_pages[page_table[b, j], :, :n] = v[tok].transpose(0, 1)
    q_dec = torch.randn(2, HQ, D, generator=gen).to(device, dtype)
    dec_sel = torch.stack([selection[cu_q[b + 1] - 1] for b in range(2)], dim=1)  # last prefill token's blocks
    out_dec = msa.sparse_decode_atten_func(q_dec, k_pages, v_pages, dec_sel, page_table=page_table.to(device),
                                           seqused_k=seqused, seqlen_q=1, max_seqlen_k=max(K_LENS), blk_kv=BLK)
    err = 0.0
    for b in range(2):
        ks = slice(cu_k[b], cu_k[b + 1])
        vis = ref.attention.block_selection_visible(dec_sel[:, b:b + 1], K_LENS[b], BLK)
        err = max(err, max_err(out_dec[b:b + 1], ref.attention.masked_attention(q_dec[b:b + 1], k[ks], v[ks], vis)[0]))
    rows.append(("sparse decode (sparse_decode_atten_func)", err, tol, err <= tol))

    print("\n| stage | max abs err | tolerance | verdict |\n|---|---|---|---|")
    for name, e, t, ok in rows:
        print(f"| {name} | {e:.3g} | {t:g} | {'ok' if ok else 'FAIL'} |")
    failed = [r[0] for r in rows if not r[3]]
    print("\nall stages match the reference" if not failed else f"\nFAILED: {failed}")
    return 0 if not failed else 1


if __name__ == "__main__":
    dev = sys.argv[1] if len(sys.argv) > 1 else ("cuda" if torch.cuda.is_available() else "cpu")
    sys.exit(main(dev))
