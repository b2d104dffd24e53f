"""Sparse prefill sweep (GPU, < 150 s): `python benchmarks/sweep_prefill.py [--nvfp4]`.

Times the KV-outer kernel's (BLOCK_M, BLOCK_N, num_warps, num_stages) variants and the
query-major kernel on representative production cases plus q=k=16K (M3 shape, BF16 and FP8
K/V) and prints one markdown table of useful TFLOP/s. KV-outer variants are forced by
replacing the module's deterministic `kv_outer_config` for the duration of a run (configs
that would not fit SM12x still run here); the query-major kernel by MSA_PREFILL_KERNEL.
"""
import contextlib
import functools
import importlib
import json
import os
import sys
import time

import torch

sys.path.insert(0, "tests")
sys.path.insert(0, "benchmarks")
import bench_prefill as bench  # noqa: E402
from _pkg import msa  # noqa: E402

kv_outer = importlib.import_module(msa.__name__ + ".triton_kernels.prefill_kv_outer")

# KV-outer (BLOCK_M, BLOCK_N, num_warps, num_stages), the Hopper default first (the SM12x one
# is (32, 128, 8, 2)), then "query_major".
VARIANTS = [(64, 128, 4, 2), (64, 128, 4, 3), (128, 128, 8, 2), (128, 128, 8, 1), (128, 128, 8, 3),
            (128, 64, 8, 2), (64, 64, 4, 2), (32, 128, 8, 2), "query_major"]
CASE_IDS = ["prefill_c17ccf7fbbb5d1ee5648", "prefill_f97f037f8487ee6aa442", "prefill_247ae467810aea26ebbf",
            "prefill_4469427d069d9467c4ec"]
TIME_CAP_S = 170


def cases():
    data = json.loads(bench.WORKLOAD.read_text())["cases"]
    by_id = {c["case_id"]: c for c in data}
    out = [(cid, by_id[cid]["query_lens"], by_id[cid]["prefix_lens"]) for cid in CASE_IDS if cid in by_id]
    out.append(("q=k=16K", [16384], [0]))
    return out


@contextlib.contextmanager
def forced(variant):
    if variant == "query_major":
        os.environ["MSA_PREFILL_KERNEL"] = "query_major"
        try:
            yield
        finally:
            del os.environ["MSA_PREFILL_KERNEL"]
        return
    original = kv_outer.kv_outer_config
    kv_outer.kv_outer_config = lambda *config_args: variant
    try:
        yield
    finally:
        kv_outer.kv_outer_config = original


def label(variant):
    return variant if isinstance(variant, str) else "M{} N{} w{} s{}".format(*variant)


def run_variant(variant, call, ref, total_q):
    """(ms, output close to the default config's) for one launch config."""
    with forced(variant):
        out = call()
        ms = bench.case_time_ms(call, total_q)
    close = (out.float() - ref.float()).abs().max().item() <= 2e-2
    return ms, close


def sweep_nvfp4():
    """NVFP4 K/V against BF16 K/V (default configs) on the same cases, and their largest difference
    from BF16 on the dequantized K/V."""
    print("| case | bf16 TFLOP/s | nvfp4 TFLOP/s | nvfp4 / bf16 time | max abs diff vs dequantized bf16 |")
    print("|---|---|---|---|---|")
    for name, qlens, plens in cases():
        q, k, v, rp, qi, args, flops = bench.make_inputs(qlens, plens, torch.bfloat16)
        kq, ks, kg, (rows, cols) = bench.nvfp4_ref.quantize_nvfp4_reference(k)
        vq, vs, vg, _ = bench.nvfp4_ref.quantize_nvfp4_reference(v)
        kd = bench.nvfp4_ref.dequantize_nvfp4_reference(kq, ks, kg, rows, cols).to(torch.bfloat16)
        vd = bench.nvfp4_ref.dequantize_nvfp4_reference(vq, vs, vg, rows, cols).to(torch.bfloat16)
        call = functools.partial(bench.prefill.sparse_atten_func, q, kd, vd, rp, qi, bench.TOPK, **args)
        call4 = functools.partial(bench.prefill.sparse_atten_nvfp4_kv_func, q, kq, vq, ks, vs, kg, vg, rp, qi,
                                  bench.TOPK, **args)
        diff = (call4().float() - call().float()).abs().max().item()
        ms = bench.case_time_ms(call, q.shape[0])
        ms4 = bench.case_time_ms(call4, q.shape[0])
        print(f"| {name} | {flops / ms / 1e9:.1f} | {flops / ms4 / 1e9:.1f} | {ms4 / ms:.2f} | {diff:.2e} |",
              flush=True)
        del q, k, v, kq, vq, kd, vd
        torch.cuda.empty_cache()


def main():
    t0 = time.time()
    print("card:", torch.cuda.get_device_name())
    if "--nvfp4" in sys.argv[1:]:
        sweep_nvfp4()
        return
    header = "| case | kv dtype | " + " | ".join(label(v) for v in VARIANTS) + " |"
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
                    ms, close = run_variant(variant, call, ref, q.shape[0])
                    cells.append(f"{flops / ms / 1e9:.1f}" + ("" if close else "!"))
                except Exception as exc:  # a variant that does not compile/launch on this card
                    cells.append("err:" + type(exc).__name__)
            print(f"| {name} | {str(dtype).replace('torch.', '')} | " + " | ".join(cells) + " |", flush=True)
            del q, k, v, rp, qi, ref
            torch.cuda.empty_cache()
    print(f"useful TFLOP/s; '!' = output differs from the default config's by > 2e-2; {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
