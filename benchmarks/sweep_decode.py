"""Sweep sparse-decode launch configs (splits, BLOCK_N, num_warps, num_stages, register
prefetch, programmatic dependent launch) on the M3 shape.

Run on a GPU from the repo root: `python benchmarks/sweep_decode.py [--g8]` (< 2 minutes).
Each variant is set through MSA_DECODE_CONFIG before `plan`, timed CUDA-graph replayed like
bench_decode.py, and printed as one row per (kv dtype, B, tile config) with the time of each
split count; `auto` is the launcher's own choice. A summary gives the best variant per
(kv dtype, B), its fraction of copy bandwidth, and the FP8/BF16 speedup of the best variants.
"""
import argparse
import os
import sys
import time

import roofline
import torch

sys.path.insert(0, "benchmarks")
sys.path.insert(0, "tests")
import bench_decode as bench  # noqa: E402

decode = bench.decode

# MSA_DECODE_CONFIG entries per KV dtype ({} = the launcher's default). "stages=2,waves=2" is
# the policy before the one-wave Hopper rule.
TILE_CONFIGS = {
    "bf16": ({}, dict(stages=2, waves=2)),
    "fp8": ({}, dict(stages=2), dict(stages=4), dict(waves=1), dict(block_n=64, stages=4)),
}
SPLITS = {1: (4, 8, 16, 32), 4: (2, 4, 8, 16), 16: (1, 2, 4, 8), 32: (1, 2, 4), 64: (1, 2, 3, 4)}
BATCHES = (1, 4, 16, 32, 64)
CTX = 32768


def time_variant(batch, hq, hkv, pool, override, gen):
    if override:
        os.environ[decode.CONFIG_ENV] = ",".join(f"{k}={v}" for k, v in override.items())
    else:
        os.environ.pop(decode.CONFIG_ENV, None)
    q = torch.randn(batch, hq, bench.D, device="cuda", generator=gen, dtype=torch.bfloat16)
    out = torch.empty_like(q)
    lse = torch.empty(batch, hq, dtype=torch.float32, device="cuda")
    wrappers = bench.plan_runs(batch, 1, CTX, hq, hkv, pool[0].shape[0], gen)  # plan reads the override
    os.environ.pop(decode.CONFIG_ENV, None)
    time_us = bench.time_runs(wrappers, q, pool, out, lse, warmup=5, rep=15)
    moved = bench.bytes_moved(batch, hq, hkv, pool[0].element_size())
    return time_us, moved / (time_us * 1e-6), wrappers[0].splits[pool[0].element_size() == 1], \
        wrappers[0].configs[pool[0].element_size() == 1]


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--g8", action="store_true", help="also sweep Hq 8 / Hkv 1")
    ap.add_argument("--kv", default="bf16,fp8", help="KV dtypes to sweep (comma-separated: bf16, fp8)")
    ap.add_argument("--batches", default=",".join(map(str, BATCHES)), help="batch sizes (comma-separated)")
    args = ap.parse_args()
    t0 = time.time()
    copy_bw = roofline.copy_bandwidth()
    card = torch.cuda.get_device_name()
    print(f"copy bandwidth {copy_bw / 1e9:.1f} GB/s on {card}; CUDA-graph replay, ctx {CTX}, topK {bench.TOPK}")
    shapes = [(64, 4)] + ([(8, 1)] if args.g8 else [])
    best = {}
    for hq, hkv in shapes:
        for kv_dtype in (torch.bfloat16, torch.float8_e4m3fn):
            kv = "fp8" if kv_dtype == torch.float8_e4m3fn else "bf16"
            if kv not in args.kv.split(","):
                continue
            pool = bench.make_pool(hkv, kv_dtype)
            print(f"\n### Hq {hq} / Hkv {hkv}, {kv} KV: time us (fraction of copy bw) per split count")
            for batch in map(int, args.batches.split(",")):
                splits = SPLITS[batch]
                print("\n| B | config | auto | " + " | ".join(f"s={s}" for s in splits) + " |")
                print("|---|---|---|" + "---|" * len(splits))
                for tile in TILE_CONFIGS[kv]:
                    base = dict(tile)
                    cells = []
                    for s in (None,) + splits:
                        override = dict(base, **({} if s is None else {"splits": s}))
                        gen = torch.Generator(device="cuda").manual_seed(batch)
                        try:
                            t_us, bw, used, cfg = time_variant(batch, hq, hkv, pool, override, gen)
                        except Exception as e:  # a config that fails to compile/launch is reported, not fatal
                            cells.append("err:" + type(e).__name__)
                            continue
                        label = (f"bn{cfg.block_n} w{cfg.num_warps} st{cfg.num_stages} "
                                 f"pdl{int(cfg.pdl)} s={used}")
                        cells.append(f"{t_us:.1f} ({bw / copy_bw:.2f})" + (f" s{used}" if s is None else ""))
                        key = (hq, hkv, kv, batch)
                        if key not in best or t_us < best[key][0]:
                            best[key] = (t_us, bw / copy_bw, label)
                    name = ",".join(f"{k}={v}" for k, v in base.items()) or "default"
                    print(f"| {batch} | {name} | " + " | ".join(cells) + " |", flush=True)
            del pool
            torch.cuda.empty_cache()
    print("\n### Best per (shape, kv, B)\n\n| Hq/Hkv | kv | B | best us | frac copy bw | config | fp8 speedup |")
    print("|---|---|---|---|---|---|---|")
    for (hq, hkv, kv, batch), (t_us, frac, label) in sorted(best.items()):
        speed = ""
        if kv == "fp8" and (hq, hkv, "bf16", batch) in best:
            speed = f"{best[(hq, hkv, 'bf16', batch)][0] / t_us:.2f}x"
        print(f"| {hq}/{hkv} | {kv} | {batch} | {t_us:.1f} | {frac:.2f} | {label} | {speed} |")
    print(f"\nsweep took {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
