"""Index-branch benchmarks (GPU): decode indexer vs copy bandwidth, prefill scorers vs the bf16 matmul rate.

python benchmarks/bench_indexer.py  ->  benchmarks/results/indexer.json + a markdown table.
"""
import importlib
import json
import sys
from pathlib import Path

import torch
import triton

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from _pkg import msa  # noqa: E402

di = importlib.import_module(msa.__name__ + ".decode_indexer")
indexer = importlib.import_module(msa.__name__ + ".indexer")
fmha = importlib.import_module(msa.__name__ + ".fmha")
ref = importlib.import_module(msa.__name__ + ".reference.indexer")

CARD = torch.cuda.get_device_name()
L2_FLUSH_BYTES = 256 << 20
records = []


def copy_bandwidth():
    src = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    ms = triton.testing.do_bench(lambda: dst.copy_(src), warmup=25, rep=200)
    return 2 * src.numel() / (ms * 1e-3)


def bf16_matmul_rate():
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    ms = triton.testing.do_bench(lambda: a @ b, warmup=25, rep=200)
    return 2 * 8192 ** 3 / (ms * 1e-3)


def graph_time_us(make_fn, copies):
    """Median time of one call, CUDA-graph replayed, rotating over `copies` input sets (past L2)."""
    graphs = []
    for fn in make_fn(copies):
        fn()  # compile / warm
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            fn()
        graphs.append(graph)

    def replay_all():
        for graph in graphs:
            graph.replay()

    return triton.testing.do_bench(replay_all, warmup=10, rep=100) * 1e3 / len(graphs)


def record(name, shape, dtype, time_us, metric, value, baseline):
    records.append(dict(name=name, shape=shape, dtype=dtype, card=CARD, time_us=round(time_us, 2), metric=metric,
                        value=value, baseline=baseline, ratio=round(value / baseline, 4) if baseline else None))


def bench_decode(copy_bw):
    hq, d, block, topk = 4, 128, 128, 16
    for ctx in (32 << 10, 128 << 10, 1 << 20):
        for batch in (1, 16, 64):
            if ctx * batch > (16 << 20):  # 1M x 64 needs 32 GiB of index K
                continue
            per_dtype = {}
            for dtype in (torch.bfloat16, torch.float8_e4m3fn):
                k_bytes = batch * ctx * d * (2 if dtype == torch.bfloat16 else 1)
                copies = max(1, min(8, -(-L2_FLUSH_BYTES // k_bytes)))

                def make(n, ctx=ctx, batch=batch, dtype=dtype):
                    fns = []
                    for _ in range(n):
                        k = torch.randn(batch * ctx, 1, d, device="cuda", dtype=torch.bfloat16).to(dtype)
                        q = torch.randn(batch, hq, d, device="cuda", dtype=torch.bfloat16)
                        r2t = torch.arange(batch * ctx, device="cuda", dtype=torch.int32).view(batch, ctx)
                        seq = torch.full((batch,), ctx, device="cuda", dtype=torch.int32)
                        slots = torch.arange(batch, device="cuda", dtype=torch.int64)
                        fns.append(lambda q=q, k=k, r2t=r2t, seq=seq, slots=slots: di.flash_decode_with_topk_idx(
                            q, None, k, None, r2t, seq, ctx, slots, block, topk, 1, 2, disable_index_value=True))
                    return fns

                t_us = graph_time_us(make, copies)
                per_dtype[dtype] = t_us
                bw = k_bytes / (t_us * 1e-6)
                record("decode_indexer(scores+topk)", f"B{batch} ctx{ctx} Hidx{hq} Hk1 D{d}",
                       str(dtype).replace("torch.", ""), t_us, "index-K bytes/s", bw, copy_bw)
            speedup = per_dtype[torch.bfloat16] / per_dtype[torch.float8_e4m3fn]
            record("decode_indexer fp8 speedup", f"B{batch} ctx{ctx}", "fp8 vs bf16", per_dtype[torch.float8_e4m3fn],
                   "speedup", speedup, 1.7)


def bench_prefill(mm_rate):
    lq, lk, hq, d = 16384, 84480, 4, 128
    pairs = sum(lk - lq + i + 1 for i in range(lq))
    flops = 2 * d * hq * pairs
    cu_q = torch.tensor([0, lq], dtype=torch.int32, device="cuda")
    cu_k = torch.tensor([0, lk], dtype=torch.int32, device="cuda")
    pages = lk // 128
    cu_p = torch.tensor([0, pages], dtype=torch.int32, device="cuda")
    kv_indices = torch.randperm(pages, device="cuda").to(torch.int32)
    shape = f"q{lq} k{lk} Hq{hq} Hkv1 D{d} causal"
    for fmt in ("mxfp4", "nvfp4"):
        groups = d // ref.FP4_GROUP[fmt]
        q = torch.randint(0, 256, (lq, hq, d // 2), dtype=torch.uint8, device="cuda")
        k = torch.randint(0, 256, (pages, 1, 128, d // 2), dtype=torch.uint8, device="cuda")
        code = 127 if fmt == "mxfp4" else 0x38
        qs = torch.full((hq, -(-lq // 128), -(-groups // 4), 32, 4, 4), code, dtype=torch.uint8, device="cuda")
        ks = torch.full((pages, 1, -(-groups // 4), 32, 4, 4), code, dtype=torch.uint8, device="cuda")
        run = lambda q=q, k=k, qs=qs, ks=ks, fmt=fmt: indexer.fp4_indexer_block_scores(  # noqa: E731
            q, k, qs, ks, cu_q, cu_k, cu_p, max_seqlen_q=lq, max_seqlen_k=lk, kv_indices=kv_indices,
            fp4_format=fmt, causal=True)
        ms = triton.testing.do_bench(run, warmup=3, rep=30)
        record("fp4_indexer_block_scores", shape, fmt, ms * 1e3, "TFLOP/s", flops / (ms * 1e-3) / 1e12, mm_rate / 1e12)
    plan = fmha.fmha_sm12x_plan([lq], [lk], hq, 1, page_size=128, output_maxscore=True, device="cuda")
    for dtype in (torch.bfloat16, torch.float8_e4m3fn):
        q = torch.randn(lq, hq, d, device="cuda", dtype=torch.bfloat16).to(dtype)
        k = torch.randn(pages, 1, 128, d, device="cuda", dtype=torch.bfloat16).to(dtype)
        run = lambda q=q, k=k: fmha.fmha_sm12x(q, k, k, plan, kv_indices, output_o=False)  # noqa: E731
        ms = triton.testing.do_bench(run, warmup=3, rep=30)
        record("fmha_sm12x proxy max_score", shape, str(dtype).replace("torch.", ""), ms * 1e3, "TFLOP/s",
               flops / (ms * 1e-3) / 1e12, mm_rate / 1e12)


def main():
    copy_bw = copy_bandwidth()
    mm_rate = bf16_matmul_rate()
    bench_decode(copy_bw)
    bench_prefill(mm_rate)
    out = ROOT / "benchmarks" / "results" / "indexer.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(records, indent=1))
    print(f"card: {CARD}; copy {copy_bw / 1e9:.0f} GB/s; bf16 matmul {mm_rate / 1e12:.0f} TFLOP/s")
    print("| name | shape | dtype | time_us | metric | value | baseline | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for r in records:
        fmt = lambda x: f"{x:.4g}" if isinstance(x, float) else str(x)  # noqa: E731
        print("| " + " | ".join(fmt(r[c]) for c in ("name", "shape", "dtype", "time_us", "metric", "value",
                                                      "baseline", "ratio")) + " |")


if __name__ == "__main__":
    main()
