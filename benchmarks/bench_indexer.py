"""Index-branch benchmarks (GPU): decode indexer vs copy bandwidth, prefill scorers vs the bf16 matmul rate.

python benchmarks/bench_indexer.py  ->  benchmarks/results/indexer.json + a markdown table.
"""
import importlib
import json
import sys
from pathlib import Path

import roofline
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from _pkg import msa  # noqa: E402

di = importlib.import_module(msa.__name__ + ".decode_indexer")
indexer = importlib.import_module(msa.__name__ + ".indexer")
fmha = importlib.import_module(msa.__name__ + ".fmha")
ref = importlib.import_module(msa.__name__ + ".reference.indexer")

CARD = torch.cuda.get_device_name()
# Decode indexer: 4 index heads sharing one index-K head; the prefill scorer's production hot shape.
DEC_HQ, DEC_D, DEC_BLOCK, DEC_TOPK = 4, 128, 128, 16
PF_LQ, PF_LK, PF_HQ, PF_D, PF_PAGE = 16384, 84480, 4, 128, 128
records = []


def decode_k_bytes(batch, ctx, dtype):
    return batch * ctx * DEC_D * dtype.itemsize


def decode_calls(batch, ctx, dtype, n, scores_only=False):
    """`n` decode-indexer calls, each on its own index-K cache (rotated past L2 when replayed)."""
    calls = []
    for _ in range(n):
        k = torch.randn(batch * ctx, 1, DEC_D, device="cuda", dtype=torch.bfloat16).to(dtype)
        q = torch.randn(batch, DEC_HQ, DEC_D, device="cuda", dtype=torch.bfloat16)
        r2t = torch.arange(batch * ctx, device="cuda", dtype=torch.int32).view(batch, ctx)
        seq = torch.full((batch,), ctx, device="cuda", dtype=torch.int32)
        slots = torch.arange(batch, device="cuda", dtype=torch.int64)
        if scores_only:
            calls.append(lambda q=q, k=k, r2t=r2t, seq=seq, slots=slots: di._decode_block_scores_op(
                q, k, r2t, slots, seq, DEC_BLOCK, ctx // DEC_BLOCK, 1.0, 1, 2))
        else:
            calls.append(lambda q=q, k=k, r2t=r2t, seq=seq, slots=slots: di.flash_decode_with_topk_idx(
                q, None, k, None, r2t, seq, ctx, slots, DEC_BLOCK, DEC_TOPK, 1, 2, disable_index_value=True))
    return calls


def decode_time_us(batch, ctx, dtype, scores_only=False):
    """Graph-replayed time of one decode-indexer call, rotating over up to 8 index-K caches."""
    n = roofline.rotation_count(decode_k_bytes(batch, ctx, dtype), hi=8)
    return roofline.graph_time_us(decode_calls(batch, ctx, dtype, n, scores_only))


def prefill_geometry():
    """Causal single request at the prefill scorer's hot shape: cu_seqlens, a shuffled page table, FLOPs."""
    pages = PF_LK // PF_PAGE
    return dict(
        cu_q=torch.tensor([0, PF_LQ], dtype=torch.int32, device="cuda"),
        cu_k=torch.tensor([0, PF_LK], dtype=torch.int32, device="cuda"),
        cu_p=torch.tensor([0, pages], dtype=torch.int32, device="cuda"),
        kv_indices=torch.randperm(pages, device="cuda").to(torch.int32), pages=pages,
        flops=2 * PF_D * PF_HQ * sum(PF_LK - PF_LQ + i + 1 for i in range(PF_LQ)),
        shape=f"q{PF_LQ} k{PF_LK} Hq{PF_HQ} Hkv1 D{PF_D} causal")


def fp4_operands(geo, fmt):
    """Random packed FP4 Q/K with constant unit scales (128x4 swizzled layout) for `fmt`."""
    groups = PF_D // ref.FP4_GROUP[fmt]
    code = 127 if fmt == "mxfp4" else 0x38  # 1.0 as E8M0 / E4M3
    q = torch.randint(0, 256, (PF_LQ, PF_HQ, PF_D // 2), dtype=torch.uint8, device="cuda")
    k = torch.randint(0, 256, (geo["pages"], 1, PF_PAGE, PF_D // 2), dtype=torch.uint8, device="cuda")
    qs = torch.full((PF_HQ, -(-PF_LQ // 128), -(-groups // 4), 32, 4, 4), code, dtype=torch.uint8, device="cuda")
    ks = torch.full((geo["pages"], 1, -(-groups // 4), 32, 4, 4), code, dtype=torch.uint8, device="cuda")
    return q, k, qs, ks


def fp4_scores_call(geo, fmt, q, k, qs, ks):
    return lambda: indexer.fp4_indexer_block_scores(
        q, k, qs, ks, geo["cu_q"], geo["cu_k"], geo["cu_p"], max_seqlen_q=PF_LQ, max_seqlen_k=PF_LK,
        kv_indices=geo["kv_indices"], fp4_format=fmt, causal=True)


def record(name, shape, dtype, time_us, metric, value, baseline):
    records.append(dict(name=name, shape=shape, dtype=dtype, card=CARD, time_us=round(time_us, 2), metric=metric,
                        value=value, baseline=baseline, ratio=round(value / baseline, 4) if baseline else None))


def bench_decode(copy_bw):
    for ctx in (32 << 10, 128 << 10, 1 << 20):
        for batch in (1, 16, 64):
            if ctx * batch > (16 << 20):  # 1M x 64 needs 32 GiB of index K
                continue
            per_dtype = {}
            for dtype in (torch.bfloat16, torch.float8_e4m3fn):
                t_us = decode_time_us(batch, ctx, dtype)
                per_dtype[dtype] = t_us
                bw = decode_k_bytes(batch, ctx, dtype) / (t_us * 1e-6)
                record("decode_indexer(scores+topk)", f"B{batch} ctx{ctx} Hidx{DEC_HQ} Hk1 D{DEC_D}",
                       str(dtype).replace("torch.", ""), t_us, "index-K bytes/s", bw, copy_bw)
            speedup = per_dtype[torch.bfloat16] / per_dtype[torch.float8_e4m3fn]
            record("decode_indexer fp8 speedup", f"B{batch} ctx{ctx}", "fp8 vs bf16", per_dtype[torch.float8_e4m3fn],
                   "speedup", speedup, 1.7)


def bench_prefill(mm_rate):
    geo = prefill_geometry()
    flops, shape = geo["flops"], geo["shape"]
    for fmt in ("mxfp4", "nvfp4"):
        t_us = roofline.time_us(fp4_scores_call(geo, fmt, *fp4_operands(geo, fmt)), warmup=3, rep=30)
        record("fp4_indexer_block_scores", shape, fmt, t_us, "TFLOP/s", flops / (t_us * 1e-6) / 1e12, mm_rate / 1e12)
    plan = fmha.fmha_sm12x_plan([PF_LQ], [PF_LK], PF_HQ, 1, page_size=PF_PAGE, output_maxscore=True, device="cuda")
    for dtype in (torch.bfloat16, torch.float8_e4m3fn):
        q = torch.randn(PF_LQ, PF_HQ, PF_D, device="cuda", dtype=torch.bfloat16).to(dtype)
        k = torch.randn(geo["pages"], 1, PF_PAGE, PF_D, device="cuda", dtype=torch.bfloat16).to(dtype)
        run = lambda q=q, k=k: fmha.fmha_sm12x(q, k, k, plan, geo["kv_indices"], output_o=False)  # noqa: E731
        t_us = roofline.time_us(run, warmup=3, rep=30)
        record("fmha_sm12x proxy max_score", shape, str(dtype).replace("torch.", ""), t_us, "TFLOP/s",
               flops / (t_us * 1e-6) / 1e12, mm_rate / 1e12)


def main():
    copy_bw = roofline.copy_bandwidth()
    mm_rate = roofline.bf16_matmul_rate()
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
