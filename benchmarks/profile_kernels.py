"""Where a graph-replayed call's time goes (GPU): per-kernel durations from the CUDA profiler
next to the per-call time of the same CUDA graph, for the decode and decode-indexer cases whose
bandwidth is dominated by a fixed cost.

python benchmarks/profile_kernels.py

For each case: the per-call time (graph replay, as the benchmarks time it), then each kernel's
mean duration per call. Time per call not covered by kernels is launch gaps and dependency waits.
"""
import functools
import sys
from collections import defaultdict

import bench_decode
import bench_indexer
import roofline
import torch
from torch.profiler import ProfilerActivity, profile

REPLAYS = 20


def kernel_times(graph, calls_per_replay):
    """{kernel name: mean us per call} over REPLAYS replays (the L2 is not flushed in between)."""
    for _ in range(3):
        graph.replay()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(REPLAYS):
            graph.replay()
        torch.cuda.synchronize()
    total = defaultdict(float)
    for e in prof.events():
        if e.device_type == torch.autograd.DeviceType.CUDA:
            total[e.name] += e.device_time_total if hasattr(e, "device_time_total") else e.cuda_time_total
    calls = REPLAYS * calls_per_replay
    return {name: us / calls for name, us in total.items()}


def report(label, calls):
    per_call = roofline.graph_time_us(calls)
    graph = roofline.capture_graph(calls)
    times = kernel_times(graph, len(calls))
    busy = sum(times.values())
    print(f"\n### {label}: {per_call:.2f} us per call (graph replay, L2 flushed per replay); "
          f"kernels {busy:.2f} us per call (profiled back to back)")
    for name, us in sorted(times.items(), key=lambda kv: -kv[1]):
        print(f"- {us:7.2f} us  {name[:100]}")
    sys.stdout.flush()


def decode_cases():
    d = bench_decode
    for kv_dtype, batches in ((torch.bfloat16, (1, 4, 16, 64)), (torch.float8_e4m3fn, (16, 64))):
        pool = d.make_pool(4, kv_dtype)
        k, v = pool
        for batch in batches:
            gen = torch.Generator(device="cuda").manual_seed(batch)
            q = torch.randn(batch, 64, d.D, device="cuda", generator=gen, dtype=torch.bfloat16)
            out = torch.empty_like(q)
            lse = torch.empty(batch, 64, dtype=torch.float32, device="cuda")
            wrappers = d.plan_runs(batch, 1, 32768, 64, 4, k.shape[0], gen)
            calls = [functools.partial(w.run, q, k, v, out=out, lse=lse) for w in wrappers]
            w = wrappers[0]
            report(f"decode B={batch} ctx 32K {str(kv_dtype)[6:]} KV, splits {w.splits[kv_dtype != torch.bfloat16]}",
                   calls)
        del pool, k, v
        torch.cuda.empty_cache()


def indexer_cases():
    b = bench_indexer
    for batch, ctx in ((1, 128 << 10), (16, 32 << 10)):
        for dtype in (torch.bfloat16, torch.float8_e4m3fn):
            n = roofline.rotation_count(b.decode_k_bytes(batch, ctx, dtype), hi=8)
            report(f"decode indexer B={batch} ctx {ctx >> 10}K {str(dtype)[6:]}", b.decode_calls(batch, ctx, dtype, n))


def main():
    print(f"card: {torch.cuda.get_device_name()}")
    decode_cases()
    indexer_cases()


if __name__ == "__main__":
    main()
