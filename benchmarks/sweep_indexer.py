"""Index-branch tuning sweep (GPU, < 2 min on an H200): times launcher variants set through
`triton_kernels.indexer.TUNING` and prints one compact table per kernel.

python benchmarks/sweep_indexer.py
"""
import importlib
import sys
import time
from pathlib import Path

import torch
import triton

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import bench_indexer as bench  # noqa: E402

msa = bench.msa
kern = importlib.import_module(msa.__name__ + ".triton_kernels.indexer")
di, indexer, ref = bench.di, bench.indexer, bench.ref
T0 = time.time()


def decode_case(batch, ctx, dtype, scores_only, n):
    hq, d, block, topk = 4, 128, 128, 16
    fns = []
    for _ in range(n):
        k = torch.randn(batch * ctx, 1, d, device="cuda", dtype=torch.bfloat16).to(dtype)
        q = torch.randn(batch, hq, d, device="cuda", dtype=torch.bfloat16)
        r2t = torch.arange(batch * ctx, device="cuda", dtype=torch.int32).view(batch, ctx)
        seq = torch.full((batch,), ctx, device="cuda", dtype=torch.int32)
        slots = torch.arange(batch, device="cuda", dtype=torch.int64)
        if scores_only:
            fns.append(lambda q=q, k=k, r2t=r2t, seq=seq, slots=slots: di._decode_block_scores_op(
                q, k, r2t, slots, seq, block, ctx // block, 1.0, 1, 2))
        else:
            fns.append(lambda q=q, k=k, r2t=r2t, seq=seq, slots=slots: di.flash_decode_with_topk_idx(
                q, None, k, None, r2t, seq, ctx, slots, block, topk, 1, 2, disable_index_value=True))
    return fns


def sweep_decode(copy_bw):
    variants = [
        {},
        {"decode_block_n": 128},
        {"decode_block_n": 32},
        {"decode_warps_stages": (4, 2)},
        {"decode_warps_stages": (8, 3)},
        {"decode_block_n": 128, "decode_warps_stages": (8, 3)},
        {"decode_waves": 8},
        {"decode_max_blocks_per_prog": 64},
    ]
    shapes = [(16, 32 << 10), (64, 32 << 10), (1, 128 << 10)]
    print("\n## decode scorer (scores only, CUDA graph) — fraction of copy bandwidth over index-K bytes")
    print("| variant | " + " | ".join(f"B{b} {c >> 10}K {dt}" for b, c in shapes for dt in ("bf16", "fp8")) + " |")
    print("|---" * (1 + 2 * len(shapes)) + "|")
    for v in variants:
        kern.TUNING.clear()
        kern.TUNING.update(v)
        cells = []
        for batch, ctx in shapes:
            for dtype in (torch.bfloat16, torch.float8_e4m3fn):
                k_bytes = batch * ctx * 128 * dtype.itemsize
                copies = max(1, min(8, -(-bench.L2_FLUSH_BYTES // k_bytes)))
                t = bench.graph_time_us(lambda n, b=batch, c=ctx, dt=dtype: decode_case(b, c, dt, True, n), copies)
                cells.append(f"{t:.1f}us {k_bytes / (t * 1e-6) / copy_bw:.2f}")
        print(f"| {v or 'default'} | " + " | ".join(cells) + " |", flush=True)
    kern.TUNING.clear()
    print("\n## decode indexer end to end (scores + top-k, default config)")
    for batch, ctx in shapes:
        for dtype in (torch.bfloat16, torch.float8_e4m3fn):
            k_bytes = batch * ctx * 128 * dtype.itemsize
            copies = max(1, min(8, -(-bench.L2_FLUSH_BYTES // k_bytes)))
            t = bench.graph_time_us(lambda n, b=batch, c=ctx, dt=dtype: decode_case(b, c, dt, False, n), copies)
            print(f"- B{batch} ctx{ctx} {dtype}: {t:.1f} us ({k_bytes / (t * 1e-6) / copy_bw:.2f} of copy bw)")


def sweep_prefill(mm_rate):
    lq, lk, hq, d = 16384, 84480, 4, 128
    flops = 2 * d * hq * sum(lk - lq + i + 1 for i in range(lq))
    pages = lk // 128
    cu_q = torch.tensor([0, lq], dtype=torch.int32, device="cuda")
    cu_k = torch.tensor([0, lk], dtype=torch.int32, device="cuda")
    cu_p = torch.tensor([0, pages], dtype=torch.int32, device="cuda")
    kv_indices = torch.randperm(pages, device="cuda").to(torch.int32)
    groups = d // 32
    q = torch.randint(0, 256, (lq, hq, d // 2), dtype=torch.uint8, device="cuda")
    k = torch.randint(0, 256, (pages, 1, 128, d // 2), dtype=torch.uint8, device="cuda")
    qs = torch.full((hq, -(-lq // 128), 1, 32, 4, 4), 127, dtype=torch.uint8, device="cuda")
    ks = torch.full((pages, 1, -(-groups // 4), 32, 4, 4), 127, dtype=torch.uint8, device="cuda")

    def run():
        return indexer.fp4_indexer_block_scores(q, k, qs, ks, cu_q, cu_k, cu_p, max_seqlen_q=lq, max_seqlen_k=lk,
                                                kv_indices=kv_indices, fp4_format="mxfp4", causal=True)

    deq_q = torch.empty(lq, hq, d, dtype=torch.bfloat16, device="cuda")
    deq_k = torch.empty(pages, 1, 128, d, dtype=torch.bfloat16, device="cuda")
    ms_deq = triton.testing.do_bench(lambda: (
        kern.launch_fp4_dequant(lambda f: f, q, qs, deq_q, hq, -(-lq // 128), 32, True, True, True),
        kern.launch_fp4_dequant(lambda f: f, k, ks, deq_k, hq, 1, 32, True, True, False)), warmup=3, rep=20)
    print(f"\n## FP4 prefill scorer q{lq} k{lk} Hq{hq} D{d} causal mxfp4 (dequant Q+K alone: {ms_deq * 1e3:.0f} us)")
    print("| proxy_ms (M, BLOCK_N, warps, stages) | time us | TFLOP/s | of bf16 mm |")
    print("|---|---|---|---|")
    for cfg in [None, (128, 64, 8, 2), (128, 128, 8, 3), (128, 128, 4, 2), (64, 128, 4, 2), (128, 32, 8, 2),
                (256, 64, 8, 2), (256, 128, 8, 2), (128, 128, 8, 1)]:
        kern.TUNING.clear()
        if cfg:
            kern.TUNING["proxy_ms"] = cfg
        try:
            ms = triton.testing.do_bench(run, warmup=3, rep=20)
        except Exception as e:  # a variant that does not compile / fit on this card
            print(f"| {cfg or 'default'} | failed: {type(e).__name__} | | |")
            continue
        tf = flops / (ms * 1e-3) / 1e12
        print(f"| {cfg or 'default'} | {ms * 1e3:.0f} | {tf:.0f} | {tf * 1e12 / mm_rate:.2f} |", flush=True)
    kern.TUNING.clear()


def main():
    copy_bw = bench.copy_bandwidth()
    mm_rate = bench.bf16_matmul_rate()
    print(f"card: {bench.CARD}; copy {copy_bw / 1e9:.0f} GB/s; bf16 matmul {mm_rate / 1e12:.0f} TFLOP/s")
    sweep_prefill(mm_rate)
    sweep_decode(copy_bw)
    print(f"\nsweep time {time.time() - T0:.0f} s")


if __name__ == "__main__":
    main()
