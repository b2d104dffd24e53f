"""Roofline baselines and timing helpers shared by the benchmark and sweep scripts (GPU only).

Every ratio a benchmark writes compares a kernel with a baseline measured in the same process:

- `copy_bandwidth()`: bytes/s of a 1 GiB device-to-device copy, read + write bytes counted;
- `bf16_matmul_rate()`: FLOP/s of an 8192^3 BF16 matmul (cuBLAS through torch).

Each is measured once per process and device, then cached, so a script that needs it in several
places (or imports another script that does) pays for it once.

Timing: `time_us` is the median of triton's `do_bench` (CUDA events, L2 flushed before every
call); `graph_time_us` replays a CUDA graph of several calls, one per input set, so short kernels
carry no launch overhead and consecutive calls read different memory (`rotation_count` says how
many input sets it takes to rotate past the L2).
"""
import functools

import torch
import triton.testing

COPY_BYTES = 1 << 30  # far larger than any L2: the copy streams from DRAM
MATMUL_N = 8192
MIN_ROTATE_BYTES = 256 << 20


def time_us(fn, warmup=25, rep=200):
    """Median time of `fn()` in microseconds."""
    return triton.testing.do_bench(fn, warmup=warmup, rep=rep, return_mode="median") * 1e3


def graph_time_us(calls, warmup=10, rep=100):
    """Per-call time of `calls` (zero-argument callables) captured back to back in one CUDA graph."""
    return time_us(capture_graph(calls).replay, warmup=warmup, rep=rep) / len(calls)


def capture_graph(calls):
    """A CUDA graph of `calls` back to back."""
    # Compile and warm outside the capture, on a side stream as graph capture expects.
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for call in calls:
            call()
    torch.cuda.current_stream().wait_stream(stream)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for call in calls:
            call()
    return graph


def rotate_bytes():
    """Bytes a rotation of input sets should cover: twice the L2, and at least 256 MiB."""
    l2 = torch.cuda.get_device_properties(torch.cuda.current_device()).L2_cache_size
    return max(MIN_ROTATE_BYTES, 2 * l2)


def rotation_count(bytes_per_set, lo=1, hi=None):
    """How many input sets of `bytes_per_set` to rotate through, clamped to [lo, hi]."""
    n = max(lo, -(-rotate_bytes() // max(1, bytes_per_set)))
    return n if hi is None else min(hi, n)


def _copy_us():
    src = torch.empty(COPY_BYTES, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    return time_us(lambda: dst.copy_(src))


def _matmul_us():
    a = torch.randn(MATMUL_N, MATMUL_N, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(MATMUL_N, MATMUL_N, device="cuda", dtype=torch.bfloat16)
    c = torch.empty_like(a)
    return time_us(lambda: torch.matmul(a, b, out=c))


@functools.cache
def _copy_bandwidth(device):
    with torch.cuda.device(device):
        us = _copy_us()
        torch.cuda.empty_cache()  # hand the 2 GiB back before the benchmark allocates its inputs
    return 2 * COPY_BYTES / (us * 1e-6)


@functools.cache
def _bf16_matmul_rate(device):
    with torch.cuda.device(device):
        us = _matmul_us()
        torch.cuda.empty_cache()
    return 2 * MATMUL_N ** 3 / (us * 1e-6)


def copy_bandwidth():
    """Device-to-device copy bandwidth of the current device, bytes/s (cached per process)."""
    return _copy_bandwidth(torch.cuda.current_device())


def bf16_matmul_rate():
    """BF16 matmul rate of the current device, FLOP/s (cached per process)."""
    return _bf16_matmul_rate(torch.cuda.current_device())
