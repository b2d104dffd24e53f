"""NVFP4 quantize / dequantize of a 256 MiB BF16 tensor vs device copy bandwidth.

Run from the repo root on a GPU: `python benchmarks/bench_nvfp4.py`.
Writes benchmarks/results/nvfp4.json and prints a markdown table.

Metric: effective bandwidth in GB/s; baseline: the device-to-device copy bandwidth measured in
the same process (benchmarks/roofline.py); ratio = value / baseline. Bytes counted as input +
output + scales (the brief's convention). Quantize must read the input twice (the global amax has to be known before
any block scale), so it also gets a "two-pass" record that counts that second read; with
the brief's byte count its ceiling is (in + out + scales) / (2*in + out + scales) = 0.56.

Timing: each public call is replayed from a CUDA graph (roofline.graph_time_us), so the number is
the GPU time of its kernels (amax zero-fill + amax + quantize; dequantize) without the Python
dispatch in front of them; a 256 MiB tensor is 5x the largest L2, so every replay streams DRAM.
"""
import importlib
import json
import os
import sys

import roofline
import torch

sys.path.insert(0, "tests")
from _pkg import msa  # noqa: E402

nvfp4 = importlib.import_module(msa.__name__ + ".nvfp4")

SHAPES = [(1 << 20, 128), (1 << 15, 4096)]  # 256 MiB of BF16 each: a K cache and a weight-like matrix
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "nvfp4.json")


def measure(shape, card, copy_gbs):
    x = torch.randn(shape, device="cuda", dtype=torch.bfloat16)
    q = nvfp4.quantize_bf16_to_nvfp4_128x4(x)
    in_bytes = x.numel() * 2
    packed_bytes = q.data.numel() + q.scale_128x4.numel()
    quant_us = roofline.graph_time_us([lambda: nvfp4.quantize_bf16_to_nvfp4_128x4(x)])
    dequant_us = roofline.graph_time_us([lambda: nvfp4.dequantize_nvfp4_128x4_to_bf16(q)])
    records = []
    for name, us, nbytes in (
        ("quantize", quant_us, in_bytes + packed_bytes),
        ("quantize_two_pass_traffic", quant_us, 2 * in_bytes + packed_bytes),
        ("dequantize", dequant_us, packed_bytes + in_bytes),
    ):
        gbs = nbytes / (us * 1e-6) / 1e9
        records.append(dict(name=name, shape=list(shape), dtype="bfloat16", card=card, time_us=us,
                            metric="GB/s", value=gbs, baseline=copy_gbs, ratio=gbs / copy_gbs))
    return records


def main():
    card = torch.cuda.get_device_name()
    copy_gbs = roofline.copy_bandwidth() / 1e9
    records = [dict(name="copy", shape=[roofline.COPY_BYTES], dtype="uint8", card=card, time_us=None,
                    metric="GB/s", value=copy_gbs, baseline=copy_gbs, ratio=1.0)]
    for shape in SHAPES:
        records += measure(shape, card, copy_gbs)
        torch.cuda.empty_cache()

    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as f:
        json.dump(records, f, indent=2)
    print(f"card: {card}\n")
    print("| name | shape | time (us) | GB/s | copy GB/s | ratio |")
    print("|---|---|---|---|---|---|")
    for r in records:
        t = "-" if r["time_us"] is None else f"{r['time_us']:.1f}"
        print(f"| {r['name']} | {r['shape']} | {t} | {r['value']:.0f} | {r['baseline']:.0f} | {r['ratio']:.2f} |")


if __name__ == "__main__":
    main()
