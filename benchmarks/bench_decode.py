"""Sparse decode bandwidth on the M3 shape (and G=8), CUDA-graph replayed.

Run on a GPU from the repo root: `python benchmarks/bench_decode.py`. Writes
benchmarks/results/decode.json and prints a markdown table. Achieved bandwidth =
(selected K+V bytes + q/out/index bytes) / time, compared with a device-to-device copy
measured in the same process.
"""
import json
import math
import os
import sys

import torch
import triton.testing

sys.path.insert(0, "tests")
from _pkg import msa  # noqa: E402

import importlib  # noqa: E402

decode = importlib.import_module(msa.__name__ + ".decode")

D, BLK, TOPK = 128, 128, 16
POOL_BYTES = 2 << 30  # per K and per V: random pages from a pool far larger than L2
RUNS_PER_GRAPH = 8  # back-to-back runs per replay, each with its own page table and selections


def copy_bandwidth():
    n = 1 << 28  # 256 MiB
    src = torch.empty(n, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    ms = triton.testing.do_bench(lambda: dst.copy_(src), warmup=10, rep=100, return_mode="median")
    return 2 * n / (ms * 1e-3)


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


def bench_one(batch, seqlen_q, ctx, hq, hkv, pool, copy_bw):
    k, v = pool
    gen = torch.Generator(device="cuda").manual_seed(batch * 131 + seqlen_q * 7 + ctx)
    rows = batch * seqlen_q
    q = torch.randn(rows, hq, D, device="cuda", generator=gen, dtype=torch.bfloat16)
    out = torch.empty_like(q)
    lse = torch.empty(rows, hq, dtype=torch.float32, device="cuda")
    wrappers = []
    for _ in range(RUNS_PER_GRAPH):
        page_table, seqused, sel = make_run_inputs(batch, seqlen_q, ctx, hkv, k.shape[0], gen)
        wrappers.append(decode.SparseDecodePagedAttentionWrapper(blk_kv=BLK).plan(
            page_table=page_table, seqused_k=seqused, seqlen_q=seqlen_q, max_seqlen_k=ctx, q2k_indices=sel,
            num_qo_heads=hq, num_kv_heads=hkv, head_dim=D, enable_cuda_graph=True))
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for w in wrappers:
            w.run(q, k, v, out=out, lse=lse)
    torch.cuda.current_stream().wait_stream(stream)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for w in wrappers:
            w.run(q, k, v, out=out, lse=lse)
    ms = triton.testing.do_bench(graph.replay, warmup=10, rep=100, return_mode="median")
    time_us = ms * 1e3 / RUNS_PER_GRAPH
    elem = k.element_size()
    kv_bytes = 2 * hkv * rows * TOPK * BLK * D * elem
    io_bytes = 2 * rows * hq * D * 2 + rows * hq * 4 + hkv * rows * TOPK * 4
    achieved = (kv_bytes + io_bytes) / (time_us * 1e-6)
    w = wrappers[0]
    return dict(
        name="sparse_decode", shape=dict(B=batch, seqlen_q=seqlen_q, ctx=ctx, Hq=hq, Hkv=hkv, D=D, blk_kv=BLK,
                                         topK=TOPK),
        dtype="bf16q/" + ("fp8kv" if elem == 1 else "bf16kv"), card=torch.cuda.get_device_name(),
        time_us=round(time_us, 2), metric="achieved_GBps", value=round(achieved / 1e9, 1),
        baseline=round(copy_bw / 1e9, 1), ratio=round(achieved / copy_bw, 3), num_splits=w.num_splits,
        workspace_bytes=w.workspace_bytes)


def main():
    torch.manual_seed(0)
    copy_bw = copy_bandwidth()
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
