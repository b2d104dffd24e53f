"""Sparse prefill launch-config sweep (GPU, < 150 s): `python benchmarks/sweep_prefill.py`.

Times (BLOCK_N, num_warps, num_stages) variants of the prefill kernel on three
representative production cases plus the q=k=16K and q=k=128K single requests (M3 shape,
BF16 and FP8 K/V) and prints one markdown table of useful TFLOP/s. The kernel processes one
query token per program, so "tokens per program" is not a variant yet. Variants are forced by
replacing the module's deterministic `prefill_config` heuristic for the duration of a run;
configs that spill on SM12x still run here (the table says which ones the gate allows).
"""
import contextlib
import functools
import importlib
import json
import sys
import time

import torch

sys.path.insert(0, "tests")
sys.path.insert(0, "benchmarks")
import bench_prefill as bench  # noqa: E402
from _pkg import msa  # noqa: E402

kernels = importlib.import_module(msa.__name__ + ".triton_kernels.prefill")

# (BLOCK_N, num_warps, num_stages); the first is what the heuristic picks for G=16 BF16/FP8.
VARIANTS = [(64, 8, 2), (64, 8, 1), (64, 4, 2), (32, 8, 1), (32, 4, 2), (128, 8, 1), (128, 4, 1)]
CASE_IDS = ["prefill_c17ccf7fbbb5d1ee5648", "prefill_f97f037f8487ee6aa442", "prefill_247ae467810aea26ebbf"]
TIME_CAP_S = 140


def cases():
    data = json.loads(bench.WORKLOAD.read_text())["cases"]
    by_id = {c["case_id"]: c for c in data}
    out = [(cid, by_id[cid]["query_lens"], by_id[cid]["prefix_lens"]) for cid in CASE_IDS if cid in by_id]
    out.append(("q=k=16K", [16384], [0]))
    out.append(("q=k=128K", [131072], [0]))
    return out


@contextlib.contextmanager
def forced(variant):
    original = kernels.prefill_config
    kernels.prefill_config = lambda *config_args: variant
    try:
        yield
    finally:
        kernels.prefill_config = original


def run_variant(variant, call, ref):
    """(ms, output close to the default config's) for one launch config."""
    with forced(variant):
        out = call()
        ms = bench.time_ms(call, reps=3)
    close = (out.float() - ref.float()).abs().max().item() <= 2e-2
    return ms, close


def main():
    t0 = time.time()
    print("card:", torch.cuda.get_device_name())
    header = "| case | kv dtype | " + " | ".join(f"N{n} w{w} s{s}" for n, w, s in VARIANTS) + " |"
    print(header)
    print("|" + "---|" * (2 + len(VARIANTS)))
    for name, qlens, plens in cases():
        for dtype in (torch.bfloat16, torch.float8_e4m3fn):
            if time.time() - t0 > TIME_CAP_S:
                print("time cap reached; remaining rows skipped")
                return
            q, k, v, rp, qi, args, flops = bench.make_inputs(qlens, plens, dtype)
            call = functools.partial(bench.prefill.sparse_atten_func, q, k, v, rp, qi, bench.TOPK, **args)
            ref = call()
            cells = []
            for variant in VARIANTS:
                try:
                    ms, close = run_variant(variant, call, ref)
                    cells.append(f"{flops / ms / 1e9:.1f}" + ("" if close else "!"))
                except Exception as exc:  # a variant that does not compile/launch on this card
                    cells.append("err:" + type(exc).__name__)
            print(f"| {name} | {str(dtype).replace('torch.', '')} | " + " | ".join(cells) + " |", flush=True)
            del q, k, v, rp, qi, ref
            torch.cuda.empty_cache()
    print(f"useful TFLOP/s; '!' = output differs from the default config's by > 2e-2; {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
