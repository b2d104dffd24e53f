"""Index-branch tuning sweep (GPU, < 2 min on an H200): times launcher variants set through
`triton_kernels.indexer.TUNING` and prints one compact table per kernel.

python benchmarks/sweep_indexer.py
"""
import importlib
import sys
import time
from pathlib import Path

import roofline
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import bench_indexer as bench  # noqa: E402

msa = bench.msa
kern = importlib.import_module(msa.__name__ + ".triton_kernels.indexer")
T0 = time.time()


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
                t = bench.decode_time_us(batch, ctx, dtype, scores_only=True)
                cells.append(f"{t:.1f}us {bench.decode_k_bytes(batch, ctx, dtype) / (t * 1e-6) / copy_bw:.2f}")
        print(f"| {v or 'default'} | " + " | ".join(cells) + " |", flush=True)
    kern.TUNING.clear()
    print("\n## decode indexer end to end (scores + top-k, default config)")
    for batch, ctx in shapes:
        for dtype in (torch.bfloat16, torch.float8_e4m3fn):
            t = bench.decode_time_us(batch, ctx, dtype)
            frac = bench.decode_k_bytes(batch, ctx, dtype) / (t * 1e-6) / copy_bw
            print(f"- B{batch} ctx{ctx} {dtype}: {t:.1f} us ({frac:.2f} of copy bw)")


def sweep_prefill(mm_rate):
    lq, lk, hq, d = bench.PF_LQ, bench.PF_LK, bench.PF_HQ, bench.PF_D
    geo = bench.prefill_geometry()
    flops = geo["flops"]
    q, k, qs, ks = bench.fp4_operands(geo, "mxfp4")
    run = bench.fp4_scores_call(geo, "mxfp4", q, k, qs, ks)
    deq_q = torch.empty(lq, hq, d, dtype=torch.bfloat16, device="cuda")
    deq_k = torch.empty(geo["pages"], 1, bench.PF_PAGE, d, dtype=torch.bfloat16, device="cuda")
    us_deq = roofline.time_us(lambda: (
        kern.launch_fp4_dequant(lambda f: f, q, qs, deq_q, hq, -(-lq // 128), 32, True, True, True),
        kern.launch_fp4_dequant(lambda f: f, k, ks, deq_k, hq, 1, 32, True, True, False)), warmup=3, rep=20)
    print(f"\n## FP4 prefill scorer q{lq} k{lk} Hq{hq} D{d} causal mxfp4 (dequant Q+K alone: {us_deq:.0f} us)")
    print("| proxy_ms (M, BLOCK_N, warps, stages) | time us | TFLOP/s | of bf16 mm |")
    print("|---|---|---|---|")
    for cfg in [None, (128, 64, 8, 2), (128, 128, 8, 3), (128, 128, 4, 2), (64, 128, 4, 2), (128, 32, 8, 2),
                (256, 64, 8, 2), (256, 128, 8, 2), (128, 128, 8, 1)]:
        kern.TUNING.clear()
        if cfg:
            kern.TUNING["proxy_ms"] = cfg
        try:
            us = roofline.time_us(run, warmup=3, rep=20)
        except Exception as e:  # a variant that does not compile / fit on this card
            print(f"| {cfg or 'default'} | failed: {type(e).__name__} | | |")
            continue
        tf = flops / (us * 1e-6) / 1e12
        print(f"| {cfg or 'default'} | {us:.0f} | {tf:.0f} | {tf * 1e12 / mm_rate:.2f} |", flush=True)
    kern.TUNING.clear()


def main():
    copy_bw = roofline.copy_bandwidth()
    mm_rate = roofline.bf16_matmul_rate()
    print(f"card: {bench.CARD}; copy {copy_bw / 1e9:.0f} GB/s; bf16 matmul {mm_rate / 1e12:.0f} TFLOP/s")
    sweep_prefill(mm_rate)
    sweep_decode(copy_bw)
    print(f"\nsweep time {time.time() - T0:.0f} s")


if __name__ == "__main__":
    main()
