"""Sweep the NVFP4 launch configs (triton_kernels/nvfp4.py QUANTIZE_CONFIGS / DEQUANTIZE_CONFIGS).

Run from the repo root on a GPU: `python benchmarks/sweep_nvfp4.py` (< 60 s on an H200).
Times every gated config on 256 MiB BF16 tensors through the public functions, with the
pick made by MSA_NVFP4_CONFIG, checks each result is bit-identical to the default
config's, and prints one markdown table. ratio = (input + output + scales) / time / copy
bandwidth; quantize's ceiling under that byte count is 0.56 (it reads the input twice).
"""
import importlib
import os
import sys

import roofline
import torch

sys.path.insert(0, "tests")
from _pkg import msa  # noqa: E402

nvfp4 = importlib.import_module(msa.__name__ + ".nvfp4")
kernels = importlib.import_module(msa.__name__ + ".triton_kernels.nvfp4")

SHAPES = [(1 << 20, 128), (1 << 15, 4096)]
ENV = kernels.ENV_OVERRIDE


def bench_us(fn):
    return roofline.graph_time_us([fn], warmup=10, rep=60)


def with_config(text, fn):
    os.environ[ENV] = text
    try:
        return fn()
    finally:
        os.environ.pop(ENV, None)


def sweep_shape(shape, copy):
    x = torch.randn(shape, device="cuda", dtype=torch.bfloat16)
    q0 = nvfp4.quantize_bf16_to_nvfp4_128x4(x)
    out0 = nvfp4.dequantize_nvfp4_128x4_to_bf16(q0)
    nbytes = x.numel() * 2 + q0.data.numel() + q0.scale_128x4.numel()

    def row(op, cfg, us, same):
        gbs = nbytes / (us * 1e-6) / 1e9
        print(f"| {op} | {list(shape)} | {cfg} | {us:.1f} | {gbs:.0f} | {gbs / copy:.2f} | {same} |")

    def quantize():
        return nvfp4.quantize_bf16_to_nvfp4_128x4(x)

    def dequantize():
        return nvfp4.dequantize_nvfp4_128x4_to_bf16(q0)

    for groups, warps in kernels.QUANTIZE_CONFIGS:
        cfg = f"q={groups}x{warps}"
        q = with_config(cfg, quantize)
        same = all(torch.equal(a, b) for a, b in ((q.data, q0.data), (q.scale_128x4, q0.scale_128x4),
                                                  (q.global_scale, q0.global_scale)))
        row("quantize", cfg, with_config(cfg, lambda: bench_us(quantize)), same)
    for words, warps in kernels.DEQUANTIZE_CONFIGS:
        cfg = f"d={words}x{warps}"
        same = torch.equal(with_config(cfg, dequantize).view(torch.int16), out0.view(torch.int16))
        row("dequantize", cfg, with_config(cfg, lambda: bench_us(dequantize)), same)

    # the amax pre-pass alone, to split quantize's time (its bytes: the input only)
    amax = torch.zeros(2, device="cuda", dtype=torch.float32)  # finite amax, NaN/Inf flag
    n_programs, tiles = kernels.amax_grid(x.numel())
    us = bench_us(lambda: kernels.nvfp4_amax_kernel[(n_programs,)](
        x, amax, x.numel(), tiles, BLOCK=kernels.AMAX_BLOCK, num_warps=kernels.NUM_WARPS))
    gbs = x.numel() * 2 / (us * 1e-6) / 1e9
    print(f"| amax pass | {list(shape)} | - | {us:.1f} | {gbs:.0f} | {gbs / copy:.2f} | - |")


def main():
    card = torch.cuda.get_device_name()
    copy = roofline.copy_bandwidth() / 1e9
    print(f"card: {card}, copy {copy:.0f} GB/s\n")
    print("| op | shape | config | time (us) | GB/s | ratio | same bits |")
    print("|---|---|---|---|---|---|---|")
    for shape in SHAPES:
        sweep_shape(shape, copy)
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
