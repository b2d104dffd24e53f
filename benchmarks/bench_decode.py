"""Sparse decode bandwidth on the M3 shape (and G=8), CUDA-graph replayed.

Run on a GPU from the repo root: `python benchmarks/bench_decode.py`. Writes
benchmarks/results/decode.json and prints a markdown table. Achieved bandwidth =
(selected K+V bytes + q/out/index bytes) / time, compared with the device-to-device copy
bandwidth measured in the same process (benchmarks/roofline.py).
"""
import functools
import importlib
import json
import math
import os
import sys

import roofline
import torch

sys.path.insert(0, "tests")
from _pkg import msa  # noqa: E402

decode = importlib.import_module(msa.__name__ + ".decode")

D, BLK, TOPK = 128, 128, 16
POOL_BYTES = 2 << 30  # per K and per V: random pages from a pool far larger than L2
RUNS_PER_GRAPH = 8  # back-to-back runs per replay, each with its own page table and selections


def make_pool(hkv, kv_dtype):
    elem = 1 if kv_dtype == torch.float8_e4m3fn else 2
    num_pages = POOL_BYTES // (hkv * BLK * D * elem)
    k = torch.randn(num_pages, hkv, BLK, D, device="cuda", dtype=torch.bfloat16).to(kv_dtype)
    v = torch.randn(num_pages, hkv, BLK, D, device="cuda", dtype=torch.bfloat16).to(kv_dtype)
    return k, v


def make_run_inputs(batch, seqlen_q, ctx, hkv, num_pages, gen):
    pages_per = math.ceil(ctx / BLK)
    rows = batch * seqlen_q
    page_table = torch.randint(0, num_pages, (batch, pages_per), device="cuda", generator=gen, dtype=torch.int32)
    # Distinct selections per KV head (sorted random sample); the local block always included.
    scores = torch.rand(hkv, rows, pages_per, device="cuda", generator=gen)
    sel = scores.topk(TOPK, dim=-1).indices.int()
    sel[..., 0] = pages_per - 1
    seqused = torch.full((batch,), ctx, dtype=torch.int32, device="cuda")
    return page_table, seqused, sel.contiguous()


def plan_runs(batch, seqlen_q, ctx, hq, hkv, num_pages, gen):
    """RUNS_PER_GRAPH planned wrappers, each with its own page table and selections."""
    wrappers = []
    for _ in range(RUNS_PER_GRAPH):
        page_table, seqused, sel = make_run_inputs(batch, seqlen_q, ctx, hkv, num_pages, gen)
        wrappers.append(decode.SparseDecodePagedAttentionWrapper(blk_kv=BLK).plan(
            page_table=page_table, seqused_k=seqused, seqlen_q=seqlen_q, max_seqlen_k=ctx, q2k_indices=sel,
            num_qo_heads=hq, num_kv_heads=hkv, head_dim=D, enable_cuda_graph=True))
    return wrappers


def time_runs(wrappers, q, pool, out, lse, warmup=10, rep=100):
    """Per-run time (us) of the planned runs replayed back to back in one CUDA graph."""
    k, v = pool
    return roofline.graph_time_us([functools.partial(w.run, q, k, v, out=out, lse=lse) for w in wrappers],
                                  warmup=warmup, rep=rep)


def bytes_moved(rows, hq, hkv, kv_elem):
    """Selected K+V bytes plus q/out/lse/index bytes of one run."""
    kv_bytes = 2 * hkv * rows * TOPK * BLK * D * kv_elem
    io_bytes = 2 * rows * hq * D * 2 + rows * hq * 4 + hkv * rows * TOPK * 4
    return kv_bytes + io_bytes


def bench_one(batch, seqlen_q, ctx, hq, hkv, pool, copy_bw):
    k = pool[0]
    gen = torch.Generator(device="cuda").manual_seed(batch * 131 + seqlen_q * 7 + ctx)
    rows = batch * seqlen_q
    q = torch.randn(rows, hq, D, device="cuda", generator=gen, dtype=torch.bfloat16)
    out = torch.empty_like(q)
    lse = torch.empty(rows, hq, dtype=torch.float32, device="cuda")
    wrappers = plan_runs(batch, seqlen_q, ctx, hq, hkv, k.shape[0], gen)
    time_us = time_runs(wrappers, q, pool, out, lse)
    elem = k.element_size()
    achieved = bytes_moved(rows, hq, hkv, elem) / (time_us * 1e-6)
    w = wrappers[0]
    return dict(
        name="sparse_decode", shape=dict(B=batch, seqlen_q=seqlen_q, ctx=ctx, Hq=hq, Hkv=hkv, D=D, blk_kv=BLK,
                                         topK=TOPK),
        dtype="bf16q/" + ("fp8kv" if elem == 1 else "bf16kv"), card=torch.cuda.get_device_name(),
        time_us=round(time_us, 2), metric="achieved_GBps", value=round(achieved / 1e9, 1),
        baseline=round(copy_bw / 1e9, 1), ratio=round(achieved / copy_bw, 3), num_splits=w.splits[elem == 1],
        workspace_bytes=w.workspace_bytes)


def main():
    torch.manual_seed(0)
    copy_bw = roofline.copy_bandwidth()
    records = []
    for hq, hkv in ((64, 4), (8, 1)):
        for kv_dtype in (torch.bfloat16, torch.float8_e4m3fn):
            pool = make_pool(hkv, kv_dtype)
            for ctx in (32768, 131072):
                for batch in (1, 4, 16, 64, 128):
                    for seqlen_q in (1, 4):
                        records.append(bench_one(batch, seqlen_q, ctx, hq, hkv, pool, copy_bw))
            del pool
            torch.cuda.empty_cache()
    os.makedirs("benchmarks/results", exist_ok=True)
    with open("benchmarks/results/decode.json", "w") as f:
        json.dump(records, f, indent=1)
    print(f"copy bandwidth: {copy_bw / 1e9:.1f} GB/s on {torch.cuda.get_device_name()}")
    print("| Hq/Hkv | kv | ctx | B | sq | splits | workspace B | time us | GB/s | ratio | fp8 speedup |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    by_key = {}
    for r in records:
        s = r["shape"]
        by_key[(s["Hq"], s["ctx"], s["B"], s["seqlen_q"], r["dtype"])] = r
    for r in records:
        s = r["shape"]
        speed = ""
        if r["dtype"].endswith("fp8kv"):
            bf = by_key.get((s["Hq"], s["ctx"], s["B"], s["seqlen_q"], "bf16q/bf16kv"))
            speed = f"{bf['time_us'] / r['time_us']:.2f}x" if bf else ""
        print(f"| {s['Hq']}/{s['Hkv']} | {r['dtype']} | {s['ctx']} | {s['B']} | {s['seqlen_q']} | {r['num_splits']} | "
              f"{r['workspace_bytes']} | {r['time_us']} | {r['value']} | {r['ratio']} | {speed} |")


if __name__ == "__main__":
    main()
