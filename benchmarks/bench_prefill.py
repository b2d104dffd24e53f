"""Sparse prefill benchmark (GPU): `python benchmarks/bench_prefill.py` from the repo root.

M3 shape (Hq=64, Hkv=4, D=128, blk_kv=128, topK=16); each query selects its local block plus
random visible blocks (per query, per KV head). Writes benchmarks/results/prefill.json.
Useful FLOPs = 4 * D * Hq * (visible attended keys), per the contract's workload notes.
"""
import functools
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, "tests")
sys.path.insert(0, str(Path(__file__).resolve().parent))
import roofline  # noqa: E402
from _pkg import msa  # noqa: E402

import importlib  # noqa: E402

prefill = importlib.import_module(msa.__name__ + ".prefill")
nvfp4_ref = importlib.import_module(msa.__name__ + ".reference.nvfp4")

HQ, HKV, D, BLK, TOPK = 64, 4, 128, 128, 16
ROOT = Path(__file__).resolve().parents[1]
# A copy of ../shared/workloads/msa_prefill_production_v1.json (MiniMax's published selection).
WORKLOAD = ROOT / "benchmarks" / "workloads" / "msa_prefill_production_v1.json"
RECORDS = []
CARD = torch.cuda.get_device_name()


def record(name, shape, dtype, time_us, metric, value, baseline=None):
    ratio = None if not baseline else value / baseline
    RECORDS.append(dict(name=name, shape=shape, dtype=str(dtype).replace("torch.", ""), card=CARD,
                        time_us=time_us, metric=metric, value=value, baseline=baseline, ratio=ratio))


def time_ms(fn, reps=3):
    """Median of `reps` CUDA-event timings after one warm-up (long kernels: no graph needed)."""
    fn()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def graph_time_ms(fn, reps=5):
    """Median replay time of `fn` captured in a CUDA graph (small cases: no launch overhead)."""
    fn()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return time_ms(graph.replay, reps=reps)


def case_time_ms(fn, total_q):
    return graph_time_ms(fn) if total_q <= 4096 else time_ms(fn, reps=2)


# ----------------------------------------------------------------------------- inputs

def selection(query_lens, prefix_lens, seed=0):
    """q2k [Hkv, total_q, TOPK] on the GPU: local block + random distinct visible blocks."""
    gen = torch.Generator(device="cuda").manual_seed(seed)
    parts = []
    for lq, pre in zip(query_lens, prefix_lens):
        pos = pre + torch.arange(lq, device="cuda")
        local = (pos // BLK).int()
        max_nb = int(local.max().item()) + 1 if lq else 1
        for c0 in range(0, lq, 4096):
            loc = local[c0:c0 + 4096]
            score = torch.rand(HKV, loc.numel(), max_nb, device="cuda", generator=gen)
            blocks = torch.arange(max_nb, device="cuda")
            score = torch.where(blocks[None, None, :] < loc[None, :, None], score, -1.0)
            k = min(TOPK - 1, max_nb)
            val, idx = score.topk(k, dim=-1) if k > 0 else (score[..., :0], score[..., :0].long())
            idx = torch.where(val >= 0, idx, -1).int()
            sel = torch.full((HKV, loc.numel(), TOPK), -1, dtype=torch.int32, device="cuda")
            sel[..., 0] = loc
            sel[..., 1:1 + k] = idx
            parts.append(sel)
    return torch.cat(parts, dim=1)


def build_csr(q2k, cu_q, cu_k):
    """Vectorised q2k -> k2q CSR (CONTRACT §2.2) for the benchmark's inputs."""
    hkv, total_q, topk = q2k.shape
    nb = (cu_k[1:] - cu_k[:-1] + BLK - 1) // BLK
    n_rounds = int(nb.max().item())
    j = torch.arange(n_rounds, device="cuda")
    active = nb[:, None] > j[None, :]
    per_round = active.sum(0)
    row_of = (torch.cumsum(per_round, 0) - per_round)[None, :] + torch.cumsum(active.int(), 0) - active.int()
    total_rows = int(nb.sum().item())
    q_req = torch.searchsorted(cu_q[1:], torch.arange(total_q, device="cuda", dtype=torch.int32), right=True)
    q_local = torch.arange(total_q, device="cuda") - cu_q.long()[q_req]
    row_ptr = torch.zeros(hkv, total_rows + 1, dtype=torch.int32, device="cuda")
    q_idx = torch.full((hkv, total_q * topk), -1, dtype=torch.int32, device="cuda")
    for g in range(hkv):
        sel = q2k[g].long()
        ok = (sel >= 0) & (sel < nb.long()[q_req][:, None])
        rows = row_of[q_req[:, None].expand_as(sel)[ok], sel[ok]]
        ql = q_local[:, None].expand_as(sel)[ok]
        order = torch.argsort(rows * (total_q + 1) + ql)
        q_idx[g, : order.numel()] = ql[order].int()
        row_ptr[g, 1:] = torch.cumsum(torch.bincount(rows, minlength=total_rows), 0).int()
    return row_ptr, q_idx


def visible_keys(q2k, query_lens, prefix_lens):
    """Sum over (query, KV head) of causally visible keys in the selected blocks."""
    pos = torch.cat([p + torch.arange(lq, device="cuda") for lq, p in zip(query_lens, prefix_lens)])
    sel = q2k.long()
    keys = torch.clamp(pos[None, :, None] + 1 - sel * BLK, 0, BLK)
    return int(torch.where(sel >= 0, keys, 0).sum().item())


def make_inputs(query_lens, prefix_lens, dtype=torch.bfloat16, seed=0):
    kv_lens = [q + p for q, p in zip(query_lens, prefix_lens)]
    cu_q = torch.tensor([0] + list(torch.tensor(query_lens).cumsum(0).tolist()), dtype=torch.int32, device="cuda")
    cu_k = torch.tensor([0] + list(torch.tensor(kv_lens).cumsum(0).tolist()), dtype=torch.int32, device="cuda")
    q2k = selection(query_lens, prefix_lens, seed)
    row_ptr, q_idx = build_csr(q2k, cu_q, cu_k)
    total_q, total_k = sum(query_lens), sum(kv_lens)
    q = torch.randn(total_q, HQ, D, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(total_k, HKV, D, device="cuda", dtype=torch.bfloat16)
    v = torch.randn(total_k, HKV, D, device="cuda", dtype=torch.bfloat16)
    if dtype != torch.bfloat16:
        k, v = k.to(dtype), v.to(dtype)
    flops = 4 * D * (HQ // HKV) * visible_keys(q2k, query_lens, prefix_lens)
    args = dict(cu_seqlens_q=cu_q, cu_seqlens_k=cu_k, max_seqlen_q=max(query_lens),
                max_seqlen_k=max(kv_lens), blk_kv=BLK, causal=True)
    return q, k, v, row_ptr, q_idx, args, flops


def sparse_call(q, k, v, row_ptr, q_idx, args):
    return functools.partial(prefill.sparse_atten_func, q, k, v, row_ptr, q_idx, TOPK, **args)


def dense_causal_ms(n, backend):
    q = torch.randn(1, HQ, n, D, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(1, HQ, n, D, device="cuda", dtype=torch.bfloat16)
    v = torch.randn_like(k)
    with torch.nn.attention.sdpa_kernel([backend]):
        ms = time_ms(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True), reps=3)
    return ms, 4 * D * HQ * n * (n + 1) / 2


def extra_memory_ratio(call, q, row_ptr, q_idx):
    """(peak workspace / output bytes, (workspace + CSR) / output bytes), measured.

    The output is preallocated, so everything the call allocates beyond it is workspace.
    """
    out = torch.empty_like(q)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    call(out=out)
    torch.cuda.synchronize()
    work = torch.cuda.max_memory_allocated() - base
    out_bytes = out.numel() * out.element_size()
    csr = row_ptr.numel() * 4 + q_idx.numel() * 4
    return work / out_bytes, (work + csr) / out_bytes


# ----------------------------------------------------------------------------- main

def main():
    t_start = time.time()
    torch.manual_seed(0)
    bw = roofline.copy_bandwidth() / 1e9
    mm = roofline.bf16_matmul_rate() / 1e12
    record("copy_bandwidth", "1GiB d2d", torch.uint8, None, "GB/s", bw)
    record("bf16_matmul", "8192^3", torch.bfloat16, None, "TFLOP/s", mm)

    # Dense reference points.
    flash_ms, flash_flops = dense_causal_ms(16384, torch.nn.attention.SDPBackend.FLASH_ATTENTION)
    flash_tflops = flash_flops / flash_ms / 1e9
    record("sdpa_flash_causal", "q=k=16K Hq=64", torch.bfloat16, flash_ms * 1e3, "TFLOP/s", flash_tflops)

    # q=k=8K vs cuDNN SDPA; q=k=16K useful TFLOP/s.
    for n in (8192, 16384):
        q, k, v, rp, qi, args, flops = make_inputs([n], [0])
        ms = time_ms(sparse_call(q, k, v, rp, qi, args))
        record(f"sparse_q=k={n // 1024}K", f"q=k={n}", torch.bfloat16, ms * 1e3, "useful TFLOP/s",
               flops / ms / 1e9, flash_tflops)
        if n == 8192:
            try:
                cudnn_ms, _ = dense_causal_ms(n, torch.nn.attention.SDPBackend.CUDNN_ATTENTION)
                record("sparse_vs_cudnn_q=k=8K", "q=k=8192", torch.bfloat16, ms * 1e3, "speedup",
                       cudnn_ms / ms, 1.0)
            except RuntimeError as exc:  # cuDNN backend unavailable on this build
                print("cudnn SDPA skipped:", exc)
        work_ratio, total_ratio = extra_memory_ratio(sparse_call(q, k, v, rp, qi, args), q, rp, qi)
        record(f"extra_memory_q=k={n // 1024}K", f"q=k={n}", torch.bfloat16, None,
               "workspace/out bytes", work_ratio, 4.0)
        record(f"extra_memory_with_csr_q=k={n // 1024}K", f"q=k={n}", torch.bfloat16, None,
               "(csr+workspace)/out bytes", total_ratio, 4.0)
        del q, k, v
    torch.cuda.empty_cache()

    # 128K single request vs dense causal flash.
    n = 131072
    q, k, v, rp, qi, args, flops = make_inputs([n], [0])
    ms = time_ms(sparse_call(q, k, v, rp, qi, args), reps=2)
    del q, k, v
    torch.cuda.empty_cache()
    dense_ms, _ = dense_causal_ms(n, torch.nn.attention.SDPBackend.FLASH_ATTENTION)
    record("sparse_vs_flash_q=k=128K", "q=k=131072", torch.bfloat16, ms * 1e3, "speedup", dense_ms / ms, 15.0)
    torch.cuda.empty_cache()

    # Production workload: every case BF16 and FP8 K/V; NVFP4 for the hot cases.
    cases = json.loads(WORKLOAD.read_text())["cases"]
    # Representative cases first (heaviest weight first): the time cap then trims only the
    # least important ones and the weighted aggregate covers as much weight as possible.
    cases.sort(key=lambda c: -c.get("representative_weight", 0) if "representative" in c["tags"] else 1)
    total_weight = sum(c["representative_weight"] for c in cases if "representative" in c["tags"])
    covered_weight = 0
    weighted = {torch.bfloat16: [0.0, 0.0], torch.float8_e4m3fn: [0.0, 0.0]}
    free_bytes = torch.cuda.mem_get_info()[0]
    for case in cases:
        need = sum(case["final_kv_lens"]) * HKV * D * 2 * 2 * 2 + case["total_q"] * HQ * D * 2 * 3
        if need > 0.6 * free_bytes:
            print("skipped (memory):", case["case_id"])
            continue
        for dtype in (torch.bfloat16, torch.float8_e4m3fn):
            q, k, v, rp, qi, args, flops = make_inputs(case["query_lens"], case["prefix_lens"], dtype)
            ms = case_time_ms(sparse_call(q, k, v, rp, qi, args), case["total_q"])
            tflops = flops / ms / 1e9 if flops else 0.0
            record("case:" + case["case_id"], f"B={case['batch_size']} q={case['total_q']} "
                   f"kv={case['max_final_kv']}", dtype, ms * 1e3, "useful TFLOP/s", tflops)
            if "representative" in case["tags"]:
                w = case["representative_weight"]
                covered_weight += w if dtype == torch.bfloat16 else 0
                weighted[dtype][0] += w * flops
                weighted[dtype][1] += w * ms
            if dtype == torch.bfloat16 and "hot" in case["tags"]:
                kq, ks, kg, _ = nvfp4_ref.quantize_nvfp4_reference(k)
                vq, vs, vg, _ = nvfp4_ref.quantize_nvfp4_reference(v)
                call4 = functools.partial(prefill.sparse_atten_nvfp4_kv_func, q, kq, vq, ks, vs, kg, vg, rp, qi,
                                          TOPK, **args)
                ms4 = case_time_ms(call4, case["total_q"])
                del kq, vq, call4
                record("case_nvfp4:" + case["case_id"], f"q={case['total_q']}", "nvfp4", ms4 * 1e3,
                       "useful TFLOP/s", flops / ms4 / 1e9 if flops else 0.0, tflops)
            del q, k, v
        if time.time() - t_start > 170:
            print("time cap reached; remaining cases skipped")
            break
    for dtype, (fl, ms) in weighted.items():
        if ms:
            record("production_weighted", f"representative cases ({covered_weight}/{total_weight} weight)",
                   dtype, None, "useful TFLOP/s", fl / ms / 1e9, flash_tflops)
    bf, f8 = weighted[torch.bfloat16][1], weighted[torch.float8_e4m3fn][1]
    if bf and f8:
        record("fp8_kv_vs_bf16_weighted_time", "representative cases", torch.float8_e4m3fn, None,
               "bf16 time / fp8 time", bf / f8, 1.0)

    out = ROOT / "benchmarks" / "results" / "prefill.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(RECORDS, indent=1))
    print("| name | shape | dtype | time_us | metric | value | baseline | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for r in RECORDS:
        if r["name"].startswith("case"):
            continue
        fmt = lambda x: "" if x is None else (f"{x:.3g}" if isinstance(x, float) else str(x))  # noqa: E731
        print("| " + " | ".join(fmt(r[k]) for k in ("name", "shape", "dtype", "time_us", "metric", "value",
                                                    "baseline", "ratio")) + " |")
    print(f"{len(RECORDS)} records -> {out} ({time.time() - t_start:.0f}s); "
          f"copy {bw:.0f} GB/s, matmul {mm:.0f} TFLOP/s")


if __name__ == "__main__":
    main()
