"""Index-branch tuning sweep (GPU, < 2 min on an H200): times launcher variants set through
`triton_kernels.indexer.TUNING` and prints one compact table per kernel.

python benchmarks/sweep_indexer.py [--decode-only]
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
    # Triton's Hopper pipeliner gives an FP8 K tile (widened after staging) one shared-memory buffer
    # at 3 stages and two at 5, where a 16-bit tile gets two at 3 and three at 5.
    variants = [
        {},
        {"decode_warps_stages": (4, 4)},
        {"decode_warps_stages": (4, 5)},
        {"decode_warps_stages": (4, 7)},
        {"decode_block_n": 128, "decode_warps_stages": (4, 5)},
        {"decode_block_n": 32, "decode_warps_stages": (4, 5)},
        {"decode_warps_stages": (4, 5), "decode_waves": 4},
        {"decode_warps_stages": (4, 5), "decode_max_blocks_per_prog": 64},
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
    plan = bench.fmha.fmha_sm12x_plan([lq], [lk], hq, 1, page_size=bench.PF_PAGE, output_maxscore=True,
                                      device="cuda")
    runs = {"mxfp4": run}
    for dtype in (torch.bfloat16, torch.float16, torch.float8_e4m3fn):
        qh = torch.randn(lq, hq, d, device="cuda", dtype=torch.bfloat16).to(dtype)
        kh = torch.randn(geo["pages"], 1, bench.PF_PAGE, d, device="cuda", dtype=torch.bfloat16).to(dtype)
        runs[str(dtype).replace("torch.", "")] = (
            lambda qh=qh, kh=kh: bench.fmha.fmha_sm12x(qh, kh, kh, plan, geo["kv_indices"], output_o=False))
    print(f"\n## Prefill scorer q{lq} k{lk} Hq{hq} D{d} causal: mxfp4 (dequant Q+K alone: {us_deq:.0f} us), "
          "and fmha_sm12x scores only on bf16 / fp16 / fp8 Q+K")
    print("| proxy_ms (M, BLOCK_N, warps, stages) | " + " | ".join(f"{n} us (of bf16 mm)" for n in runs) + " |")
    print("|---" * (1 + len(runs)) + "|")
    for cfg in [None, (128, 128, 4, 2), (256, 128, 8, 2), (128, 64, 4, 3), (64, 128, 4, 3)]:
        kern.TUNING.clear()
        if cfg:
            kern.TUNING["proxy_ms"] = cfg
        cells = []
        for fn in runs.values():
            try:
                us = roofline.time_us(fn, warmup=3, rep=20)
            except Exception as e:  # a variant that does not compile / fit on this card
                cells.append(f"failed: {type(e).__name__}")
                continue
            cells.append(f"{us:.0f} ({flops / (us * 1e-6) / mm_rate:.2f})")
        print(f"| {cfg or 'default'} | " + " | ".join(cells) + " |", flush=True)
    kern.TUNING.clear()
    k8 = torch.randn(geo["pages"], 1, bench.PF_PAGE, d, device="cuda", dtype=torch.bfloat16).to(torch.float8_e4m3fn)
    wide = torch.empty(k8.shape, dtype=torch.float16, device="cuda")
    us = roofline.time_us(lambda: kern.launch_widen_pages(lambda f: f, k8, geo["kv_indices"], wide), warmup=3, rep=20)
    print(f"- FP8 K pages widened to fp16 alone: {us:.1f} us")
    kern.TUNING["proxy_widen_fp8"] = False
    us = roofline.time_us(runs["float8_e4m3fn"], warmup=3, rep=20)
    print(f"- fp8, default config, K widened in every tile (no up-front widening): {us:.0f} us "
          f"({flops / (us * 1e-6) / mm_rate:.2f})")
    kern.TUNING.clear()


def main():
    copy_bw = roofline.copy_bandwidth()
    mm_rate = roofline.bf16_matmul_rate()
    print(f"card: {bench.CARD}; copy {copy_bw / 1e9:.0f} GB/s; bf16 matmul {mm_rate / 1e12:.0f} TFLOP/s")
    if "--decode-only" not in sys.argv[1:]:
        sweep_prefill(mm_rate)
    sweep_decode(copy_bw)
    print(f"\nsweep time {time.time() - T0:.0f} s")


if __name__ == "__main__":
    main()
