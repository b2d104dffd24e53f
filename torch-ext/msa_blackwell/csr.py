"""q2k -> k2q CSR builder (contract §2.2, §3): `build_k2q_csr`, `SparseK2qCsrBuilderSm100`.

CUDA tensors run the native builder (csrc/k2q_csr.cu): no host sync, so it can be captured in
a CUDA graph (the row count comes from `total_rows` or `total_k`, both host ints). CPU
tensors, or a source tree without the compiled extension, run the PyTorch reference.
"""
from typing import Optional

import torch

from . import _backend
from ._backend import add_op_namespace_prefix, use_native
from ._checks import check_int, check_same_device, check_tensor
from .reference import csr as reference

MAX_CSR_TOPK = 64
MAX_TOTAL_Q = (1 << 24) - 1  # qsplit packs the query index in 24 bits
_INDEX_DTYPES = (torch.int32, torch.int64)

__all__ = [
    "K2qSchedule",
    "SparseK2qCsrBuilderSm100",
    "SparseK2qCsrBuilderSm12x",
    "build_k2q_csr",
    "default_total_rows",
]

default_total_rows = reference.default_total_rows


class K2qSchedule:
    """Split metadata from `build_k2q_csr(..., return_schedule=True)`; `sparse_atten_func(schedule=)` takes it.

    Fields (int32 tensors on the CSR's device unless noted):
      qsplit_indices [Hkv, total_q*topK]: aligned with k2q_q_indices; `q_local | (slot << 24)` where a
          query's slots over its edges are exactly 0..split_counts-1 in ascending block order; -1 past the end.
      split_counts [total_q, Hkv]: number of distinct valid blocks each query selected per KV head.
      row_request [total_rows]: request b of each CSR row (-1 for padding rows past sum(nb)).
      row_block [total_rows]: batch-local block j of each CSR row (-1 for padding rows).
      total_rows, kv_block_size, topk, num_kv_heads, qhead_per_kv: host ints describing the CSR.
    With no queries the row maps are all -1 (nothing was launched).
    """

    __slots__ = (
        "qsplit_indices",
        "split_counts",
        "row_request",
        "row_block",
        "total_rows",
        "kv_block_size",
        "topk",
        "num_kv_heads",
        "qhead_per_kv",
    )

    def __init__(self, qsplit_indices, split_counts, row_request, row_block, kv_block_size, qhead_per_kv):
        self.qsplit_indices = qsplit_indices
        self.split_counts = split_counts
        self.row_request = row_request
        self.row_block = row_block
        self.total_rows = row_request.numel()
        self.kv_block_size = kv_block_size
        self.topk = qsplit_indices.shape[1] // max(split_counts.shape[0], 1)
        self.num_kv_heads = qsplit_indices.shape[0]
        self.qhead_per_kv = qhead_per_kv

    def __repr__(self):
        return (
            f"K2qSchedule(total_rows={self.total_rows}, num_kv_heads={self.num_kv_heads}, topk={self.topk}, "
            f"kv_block_size={self.kv_block_size}, qhead_per_kv={self.qhead_per_kv})"
        )


def _check_cu_seqlens(name, t, like):
    check_tensor(name, t, dtypes=_INDEX_DTYPES, ndim=1)
    if t.numel() < 1:
        raise ValueError(f"{name} must have at least one entry (B+1), got shape {list(t.shape)}")
    check_same_device(q2k_indices=like, **{name: t})


def _as_int32_ids(ids):
    # Keep int32 views as they are (the kernel takes strides); int64 ids beyond int32 stay out of range.
    if ids.dtype == torch.int32:
        return ids
    return ids.clamp(-1, (1 << 31) - 1).to(torch.int32)


def build_k2q_csr(
    q2k_indices: torch.Tensor,
    cu_seqlens_q: torch.Tensor,
    cu_seqlens_k: torch.Tensor,
    kv_block_size: int,
    *,
    total_k: Optional[int] = None,
    max_seqlen_k: Optional[int] = None,
    max_seqlen_q: Optional[int] = None,
    total_rows: Optional[int] = None,
    qhead_per_kv: int = 1,
    return_schedule: bool = False,
):
    """Transpose per-query block selections into one CSR per KV head (contract §2.2).

    q2k_indices [Hkv, total_q, topK] int32 (batch-local block ids, -1 / out-of-range skipped,
    duplicates counted once). Returns `(k2q_row_ptr [Hkv, total_rows+1], k2q_q_indices
    [Hkv, total_q*topK])`, plus a `K2qSchedule` with `return_schedule=True`. `total_k` is
    required; `total_rows` defaults to `total_k // kv_block_size` when divisible, else
    `ceil((total_k + B*(kv_block_size-1)) / kv_block_size)` (rows past it are dropped).
    The divisible default (the contract's) is exact only when every request's key count is a
    multiple of kv_block_size: a ragged batch whose total happens to divide undercounts (key
    counts 100 and 28 with blocks of 64 give 2 rows where 3 are needed) and its last rows'
    edges are dropped. Pass `total_rows = sum(ceil(L_k / kv_block_size))` for ragged batches.
    `max_seqlen_k`, `max_seqlen_q` and `qhead_per_kv` are accepted as hints.
    """
    check_tensor("q2k_indices", q2k_indices, dtypes=_INDEX_DTYPES, ndim=3)
    _check_cu_seqlens("cu_seqlens_q", cu_seqlens_q, q2k_indices)
    _check_cu_seqlens("cu_seqlens_k", cu_seqlens_k, q2k_indices)
    if cu_seqlens_q.numel() != cu_seqlens_k.numel():
        raise ValueError(
            f"cu_seqlens_q and cu_seqlens_k must have the same length (B+1), got "
            f"{cu_seqlens_q.numel()} and {cu_seqlens_k.numel()}"
        )
    check_int("kv_block_size", kv_block_size, lo=1, hi=(1 << 31) - 1)
    if total_k is None:
        raise ValueError("total_k is required (the total number of keys, cu_seqlens_k[-1])")
    check_int("total_k", total_k, lo=0)
    for name, hint in (("max_seqlen_k", max_seqlen_k), ("max_seqlen_q", max_seqlen_q)):
        if hint is not None:
            check_int(name, hint, lo=0)
    check_int("qhead_per_kv", qhead_per_kv, lo=1)
    heads, total_q, topk = q2k_indices.shape
    if topk > MAX_CSR_TOPK:
        raise ValueError(f"q2k_indices topK must be <= {MAX_CSR_TOPK}, got {topk}")
    if total_q > MAX_TOTAL_Q:
        raise ValueError(f"q2k_indices total_q must be < 2^24, got {total_q}")
    batch = cu_seqlens_q.numel() - 1
    if total_rows is None:
        total_rows = default_total_rows(total_k, kv_block_size, batch)
    else:
        check_int("total_rows", total_rows, lo=0, hi=(1 << 31) - 2)
    dev = q2k_indices.device

    if heads == 0 or total_q == 0 or topk == 0 or total_rows == 0:
        # Nothing to transpose: fixed-shape zeros / -1, no launch.
        row_ptr = torch.zeros((heads, total_rows + 1), dtype=torch.int32, device=dev)
        q_indices = torch.full((heads, total_q * topk), -1, dtype=torch.int32, device=dev)
        qsplit = torch.full_like(q_indices, -1)
        split_counts = torch.zeros((total_q, heads), dtype=torch.int32, device=dev)
        row_request = torch.full((total_rows,), -1, dtype=torch.int32, device=dev)
        row_block = torch.full_like(row_request, -1)
    elif use_native(q2k_indices):
        row_ptr = torch.empty((heads, total_rows + 1), dtype=torch.int32, device=dev)
        q_indices = torch.empty((heads, total_q * topk), dtype=torch.int32, device=dev)
        qsplit = torch.empty_like(q_indices)
        split_counts = torch.empty((total_q, heads), dtype=torch.int32, device=dev)
        row_request = torch.empty((total_rows,), dtype=torch.int32, device=dev)
        row_block = torch.empty_like(row_request)
        _backend.ops.build_k2q_csr(
            _as_int32_ids(q2k_indices),
            cu_seqlens_q.to(torch.int32).contiguous(),
            cu_seqlens_k.to(torch.int32).contiguous(),
            kv_block_size,
            row_ptr,
            q_indices,
            qsplit,
            split_counts,
            row_request,
            row_block,
        )
    else:
        row_ptr, q_indices, qsplit, split_counts, row_request, row_block = reference.build_k2q_csr(
            q2k_indices, cu_seqlens_q, cu_seqlens_k, kv_block_size, total_rows
        )
    if not return_schedule:
        return row_ptr, q_indices
    schedule = K2qSchedule(qsplit, split_counts, row_request, row_block, kv_block_size, qhead_per_kv)
    return row_ptr, q_indices, schedule


class SparseK2qCsrBuilderSm100:
    """Callable CSR builder (upstream name); `builder(...)` equals `build_k2q_csr(...)`."""

    def __call__(
        self,
        q2k_indices,
        cu_seqlens_q,
        cu_seqlens_k,
        *,
        total_k=None,
        blk_kv=128,
        max_seqlen_k=None,
        max_seqlen_q=None,
        total_rows=None,
        qhead_per_kv=1,
        return_schedule=False,
    ):
        check_int("blk_kv", blk_kv, lo=1, hi=(1 << 31) - 1)  # by this name, not build_k2q_csr's kv_block_size
        return build_k2q_csr(
            q2k_indices,
            cu_seqlens_q,
            cu_seqlens_k,
            blk_kv,
            total_k=total_k,
            max_seqlen_k=max_seqlen_k,
            max_seqlen_q=max_seqlen_q,
            total_rows=total_rows,
            qhead_per_kv=qhead_per_kv,
            return_schedule=return_schedule,
        )


SparseK2qCsrBuilderSm12x = SparseK2qCsrBuilderSm100


if _backend.NATIVE_OPS:

    @torch.library.register_fake(add_op_namespace_prefix("build_k2q_csr"))
    def _build_k2q_csr_fake(
        q2k, cu_q, cu_k, kv_block_size, row_ptr, q_indices, qsplit, split_counts, row_request, row_block
    ):
        return None
