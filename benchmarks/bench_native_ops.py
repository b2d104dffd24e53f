"""Native-op benchmark: sparse_topk_select, native_topk_from_scores, build_k2q_csr (GPU only, not CI).

Run from the repo root: `python benchmarks/bench_native_ops.py`. Writes
benchmarks/results/native_ops.json and prints a markdown table. Each record has name, shape,
dtype, card, time_us, metric/value (achieved GB/s), baseline (what the ratio compares to),
baseline_us, ratio (time / baseline, lower is better) and copy_fraction (GB/s over the
device-to-device copy bandwidth measured in the same process, benchmarks/roofline.py).
"""
import functools
import importlib
import json
import os
import sys

import roofline
import torch

sys.path.insert(0, "tests")
from _pkg import msa  # noqa: E402

topk_mod = importlib.import_module(msa.__name__ + ".topk")
csr_mod = importlib.import_module(msa.__name__ + ".csr")

CARD = torch.cuda.get_device_name()
TOPK = 16
BLK = 128


def graph_time(make_call, inputs):
    """Per-call time of a CUDA graph replaying one call per rotated input."""
    return roofline.graph_time_us([functools.partial(make_call, x) for x in inputs], warmup=25, rep=200)


def record(name, shape, time_us, bytes_moved, copy_bw, baseline, baseline_us):
    gbps = bytes_moved / (time_us * 1e-6) / 1e9
    return dict(
        name=name, shape=shape, dtype="float32/int32", card=CARD, time_us=round(time_us, 2),
        metric="GB/s", value=round(gbps, 1), copy_fraction=round(gbps * 1e9 / copy_bw, 3),
        baseline=baseline, baseline_us=round(baseline_us, 2), ratio=round(time_us / baseline_us, 3),
    )


def bench_sparse_topk(copy_bw):
    out = []
    for h, k, t in ((4, 1024, 16384), (4, 8192, 2048)):
        topk = TOPK
        s = torch.randn(h, k, t, device="cuda")
        res = torch.empty(t, h, topk, dtype=torch.int32, device="cuda")
        tt = roofline.time_us(lambda s=s, res=res: topk_mod.sparse_topk_select(s, TOPK, output=res))
        base = roofline.time_us(lambda s=s: torch.topk(s, TOPK, dim=1).indices.sort(dim=1).values)
        out.append(record("sparse_topk_select", dict(H=h, K=k, T=t, topk=topk), tt, s.numel() * 4 + res.numel() * 4,
                          copy_bw, "torch.topk(dim=1).indices.sort()", base))
    return out


def bench_topk_from_scores(copy_bw):
    """A long single row set, and the decode indexer's shapes (4 index heads, 32K / 128K contexts)."""
    out = []
    topk, bs = 16, 128
    for heads, batch, blocks in ((64, 1, 8192), (4, 16, 256), (4, 1, 1024)):
        n = roofline.rotation_count(heads * batch * blocks * 4, lo=2)
        scores = [torch.randn(heads, batch, blocks, device="cuda") for _ in range(n)]
        lens = torch.full((batch,), blocks * bs, dtype=torch.int32, device="cuda")
        tt = graph_time(lambda x, lens=lens: topk_mod.native_topk_from_scores(x, lens, bs, topk), scores)
        base = graph_time(lambda x: torch.topk(x, topk, dim=-1), scores)
        out.append(record("native_topk_from_scores", dict(heads=heads, batch=batch, blocks=blocks, topk=topk), tt,
                          scores[0].numel() * 4, copy_bw, "torch.topk(dim=-1) [graph]", base))
    return out


def causal_selection(hkv, q_len, k_len, blk, topk):
    """Random causal picks: sink block, local block, the rest uniform over visible blocks."""
    pos = torch.arange(q_len, device="cuda") + (k_len - q_len)
    local = (pos // blk).view(1, q_len, 1)
    q2k = (torch.rand(hkv, q_len, topk, device="cuda") * (local + 1).float()).long()
    q2k[:, :, 0] = 0
    q2k[:, :, 1] = local[..., 0]
    return q2k.to(torch.int32)


def bench_csr(copy_bw):
    out = []
    for q_len, k_len, target_us in ((16384, 131072, 150.0), (131072, 131072, 1000.0)):
        hkv, topk, blk = 4, TOPK, BLK
        q2k = causal_selection(hkv, q_len, k_len, blk, topk)
        cu_q = torch.tensor([0, q_len], dtype=torch.int32, device="cuda")
        cu_k = torch.tensor([0, k_len], dtype=torch.int32, device="cuda")
        rows = k_len // blk
        tt = roofline.time_us(lambda q2k=q2k, cu_q=cu_q, cu_k=cu_k, rows=rows, k_len=k_len: csr_mod.build_k2q_csr(
            q2k, cu_q, cu_k, BLK, total_k=k_len, total_rows=rows, return_schedule=True))
        moved = q2k.numel() * 4 * 3  # read q2k, write k2q_q_indices and qsplit_indices
        out.append(record("build_k2q_csr", dict(T=q_len, K=k_len, Hkv=hkv, topK=topk, blocks=rows), tt, moved,
                          copy_bw, f"target {target_us:.0f} us", target_us))
    return out


def main():
    torch.manual_seed(0)
    copy_bw = roofline.copy_bandwidth()
    records = bench_sparse_topk(copy_bw) + bench_topk_from_scores(copy_bw) + bench_csr(copy_bw)
    os.makedirs("benchmarks/results", exist_ok=True)
    with open("benchmarks/results/native_ops.json", "w") as f:
        json.dump(records, f, indent=1)
    print(f"card: {CARD}, copy bandwidth {copy_bw / 1e9:.0f} GB/s, native ops: {msa.has_native_ops()}\n")
    print("| name | shape | time us | GB/s | copy frac | baseline | baseline us | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for r in records:
        shape = ",".join(f"{k}={v}" for k, v in r["shape"].items())
        print(f"| {r['name']} | {shape} | {r['time_us']} | {r['value']} | {r['copy_fraction']} | {r['baseline']} | "
              f"{r['baseline_us']} | {r['ratio']} |")


if __name__ == "__main__":
    main()
