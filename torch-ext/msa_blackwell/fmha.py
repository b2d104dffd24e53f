"""`fmha_sm12x_plan` / `fmha_sm12x`: dense (or block-sparse) paged FMHA with the proxy max_score output.

Argument semantics (where upstream is silent):
- Segment lens are per-request query / key lengths: a list of ints or a 1-D int tensor `[B]`.
- `page_size=-1` means dense K/V `[total_k, Hkv, D]` (requests concatenated); `page_size > 0`
  means paged K/V `[num_pages, Hkv, page_size, D]` where request b's logical page j is the
  physical page `kv_indices[cu_page_offsets[b] + j]`, `cu_page_offsets` = prefix sums of
  `ceil(kv_len / page_size)` (the same convention as `fp4_indexer_block_scores`). Out-of-range
  page ids are skipped (their keys are invisible).
- `qo_offset` (int, list or int tensor `[B]`): query i of request b sits at key position
  `i + qo_offset[b]`; default `kv_len - qo_len` (bottom-right). `q_offset_override` replaces it
  for one call.
- `fmha_sm12x` returns `(out, max_score)`: `out [total_q, Hq, D]` (q.dtype, BF16 for FP8 inputs)
  or None when `output_o=False`; `max_score [Hq, ceil(max_kv_len/128), total_q]` fp32 (raw
  q·k max per 128-key tile, `-inf` where none is visible) or None unless both the plan and the
  call ask for it (or a `max_score` buffer is passed).
- FP8-E4M3 Q/K/V take FP32 scalar `q_scale`, `k_scale`, `v_scale` (float or 1-element tensor;
  read on the host once per call) so that max_score is the dequantized dot product.
"""
from dataclasses import dataclass
from typing import Optional

import torch
from torch.library import triton_op, wrap_triton

from ._backend import add_op_namespace_prefix, cuda_properties, use_triton
from ._checks import FP8_DTYPES, HALF_DTYPES, check_float, check_int, check_same_device, check_shape, check_tensor
from .indexer import dot_dtype_for
from .reference.attention import default_scale
from .reference.indexer import SCORE_BLOCK, proxy_fmha_reference
from .triton_kernels import indexer as kernels


@dataclass(frozen=True)
class FmhaSm12xPlan:
    cu_seqlens_q: torch.Tensor  # int32 [B+1]
    cu_seqlens_k: torch.Tensor  # int32 [B+1]
    cu_page_offsets: Optional[torch.Tensor]  # int32 [B+1], paged only
    qo_offset: torch.Tensor  # int32 [B]
    default_qo_offset: bool
    max_seqlen_q: int
    max_seqlen_k: int
    total_q: int
    total_k: int
    num_qo_heads: int
    num_kv_heads: int
    page_size: int  # -1 = dense
    causal: bool
    output_maxscore: bool
    num_k2q_rows: int  # sum over requests of ceil(kv_len / 128): the k2q CSR row count

    @property
    def batch(self):
        return self.cu_seqlens_q.shape[0] - 1

    @property
    def num_kv_tiles(self):
        return -(-self.max_seqlen_k // SCORE_BLOCK)


def _host_lens(name, lens):
    if isinstance(lens, torch.Tensor):
        if lens.dim() != 1 or lens.dtype.is_floating_point or lens.dtype == torch.bool:
            raise ValueError(f"{name} must be a 1-D integer tensor, got {lens.dtype} {list(lens.shape)}")
        lens = lens.tolist()
    if not isinstance(lens, (list, tuple)):
        raise TypeError(f"{name} must be a list of ints or a 1-D integer tensor, got {type(lens).__name__}")
    for x in lens:
        check_int(name + " entries", int(x) if not isinstance(x, int) else x, lo=0)
    return [int(x) for x in lens]


def _cumsum(lens, device):
    out = [0]
    for x in lens:
        out.append(out[-1] + x)
    return torch.tensor(out, dtype=torch.int32, device=device)


def _offset_tensor(name, value, batch, device):
    if isinstance(value, int) and not isinstance(value, bool):
        return torch.full((batch,), value, dtype=torch.int32, device=device)
    if isinstance(value, (list, tuple)):
        value = torch.tensor(value, dtype=torch.int32)
    check_tensor(name, value, ndim=1)
    if value.dtype.is_floating_point or value.dtype == torch.bool:
        raise TypeError(f"{name} must hold integers, got {value.dtype}")
    check_shape(name, value, (batch,))
    return value.to(device=device, dtype=torch.int32)


def fmha_sm12x_plan(qo_segment_lens, kv_segment_lens, num_qo_heads, num_kv_heads=-1, qo_offset=None,
                    page_size=-1, output_maxscore=False, causal=True, *, device=None):
    """Host-side metadata for `fmha_sm12x` (see the module docstring). `device` defaults to the
    device of a tensor argument, else CUDA when available."""
    if device is None:
        device = next((t.device for t in (qo_segment_lens, kv_segment_lens, qo_offset) if isinstance(t, torch.Tensor)),
                      None)
        if device is None:
            device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    q_lens = _host_lens("qo_segment_lens", qo_segment_lens)
    k_lens = _host_lens("kv_segment_lens", kv_segment_lens)
    if len(q_lens) != len(k_lens):
        raise ValueError(f"qo_segment_lens has {len(q_lens)} requests but kv_segment_lens has {len(k_lens)}")
    check_int("num_qo_heads", num_qo_heads, lo=1)
    check_int("num_kv_heads", num_kv_heads, lo=-1)
    if num_kv_heads in (-1, 0):
        num_kv_heads = num_qo_heads
    if num_qo_heads % num_kv_heads:
        raise ValueError(f"num_qo_heads ({num_qo_heads}) must be a multiple of num_kv_heads ({num_kv_heads})")
    check_int("page_size", page_size, lo=-1)
    if page_size == 0:
        raise ValueError("page_size must be -1 (dense K/V) or positive")
    batch = len(q_lens)
    default_offset = qo_offset is None
    if default_offset:
        qo_offset = [k - q for q, k in zip(q_lens, k_lens)]
    offsets = _offset_tensor("qo_offset", qo_offset, batch, device)
    pages = None
    if page_size > 0:
        pages = _cumsum([-(-k // page_size) for k in k_lens], device)
    return FmhaSm12xPlan(
        cu_seqlens_q=_cumsum(q_lens, device), cu_seqlens_k=_cumsum(k_lens, device), cu_page_offsets=pages,
        qo_offset=offsets, default_qo_offset=default_offset, max_seqlen_q=max(q_lens, default=0),
        max_seqlen_k=max(k_lens, default=0), total_q=sum(q_lens), total_k=sum(k_lens),
        num_qo_heads=num_qo_heads, num_kv_heads=num_kv_heads, page_size=page_size, causal=bool(causal),
        output_maxscore=bool(output_maxscore), num_k2q_rows=sum(-(-k // SCORE_BLOCK) for k in k_lens),
    )


@triton_op(add_op_namespace_prefix("fmha_sm12x_proxy"), mutates_args=("out", "max_score"))
def _proxy_fmha_op(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor, max_score: torch.Tensor,
    cu_seqlens_q: torch.Tensor, cu_seqlens_k: torch.Tensor, cu_page_offsets: torch.Tensor,
    kv_indices: torch.Tensor, qo_offset: torch.Tensor, max_seqlen_q: int, page_size: int, causal: bool,
    output_o: bool, output_maxscore: bool, sm_scale: float, qk_scale: float, v_scale: float,
) -> None:
    # FP8 Q and K scores only: fp16 dot operands. Every E4M3 value is exact in fp16, and e4m3 -> fp16
    # is one instruction per pair where e4m3 -> bf16 takes several. (With the output the fp16 tiles
    # spill on SM12x at D=64, so that variant stays bf16.)
    fp16_dot = q.dtype == torch.float16 or (q.dtype in FP8_DTYPES and not output_o)
    half = torch.float16 if fp16_dot else torch.bfloat16
    if (not output_o and k.dtype in FP8_DTYPES and q.is_cuda and cuda_properties(q.device.index)[0] == 9
            and kernels.TUNING.get("proxy_widen_fp8", True)):
        q, k, kv_indices = _widened_scores_operands(q, k, kv_indices, page_size, half)
    kernels.launch_proxy_fmha(
        wrap_triton, q, k, v, out, max_score, cu_seqlens_q, cu_seqlens_k, cu_page_offsets, kv_indices, qo_offset,
        max_seqlen_q, page_size, causal, output_o, output_maxscore, sm_scale, qk_scale, v_scale,
        dot_dtype_for(q, half),
    )


def _widened_scores_operands(q, k, kv_indices, page_size, half):
    """Hopper, FP8 K scores only: Q and K widened to `half` once, K as the pages kv_indices lists
    (a large pool is not copied), with kv_indices renumbered to them. wgmma reads K from shared
    memory, so a tile widened in the kernel makes a shared-memory round trip in every query tile
    that reads it (H200: 2.1x slower); a Q widened in the kernel becomes a register operand, which
    is as slow. SM12x's mma.sync widens in registers and keeps the FP8 tiles. Exact: every E4M3
    value is a `half` value."""
    if q.dtype in FP8_DTYPES:
        q = q.to(half)
    if page_size == 0:
        return q, k.to(half), kv_indices
    if not k[0].is_contiguous():  # pages the widening kernel cannot stream: widen in the kernel
        return q, k, kv_indices
    wide = torch.empty((kv_indices.shape[0],) + tuple(k.shape[1:]), dtype=half, device=k.device)
    if wide.numel():
        kernels.launch_widen_pages(wrap_triton, k, kv_indices, wide)
    readable = (kv_indices >= 0) & (kv_indices < k.shape[0])
    renumbered = torch.where(readable, torch.arange(kv_indices.shape[0], device=k.device, dtype=torch.int32), -1)
    return q, wide, renumbered.to(torch.int32)


def _scalar(name, value):
    if value is None:
        return 1.0
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be a scalar or 1-element tensor, got shape {list(value.shape)}")
        return float(value.reshape(-1)[0].item())
    return check_float(name, value)


def _check_operands(q, k, v, plan):
    check_tensor("q", q, dtypes=HALF_DTYPES + FP8_DTYPES, ndim=3)
    kv_ndim = 4 if plan.page_size > 0 else 3
    check_tensor("k", k, dtypes=(q.dtype,) if q.dtype in FP8_DTYPES else (q.dtype,) + FP8_DTYPES, ndim=kv_ndim)
    check_tensor("v", v, dtypes=(k.dtype,), ndim=kv_ndim)
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.stride(-1) != 1:
            raise ValueError(f"{name} must have a contiguous last dim")
    d = q.shape[2]
    if d not in kernels.HEAD_DIMS:
        raise ValueError(f"q head dim must be one of {kernels.HEAD_DIMS}, got {d}")
    check_shape("q", q, (plan.total_q, plan.num_qo_heads, d))
    if plan.page_size > 0:
        check_shape("k", k, (None, plan.num_kv_heads, plan.page_size, d))
    else:
        check_shape("k", k, (plan.total_k, plan.num_kv_heads, d))
    check_shape("v", v, tuple(k.shape))


def fmha_sm12x(q, k, v, plan, kv_indices=None, out=None, max_score=None, output_o=True, output_maxscore=True,
               sm_scale=None, q_offset_override=None, kv_block_indexes=None, *, q_scale=None, k_scale=None,
               v_scale=None):
    """Dense paged FMHA with the proxy max_score (see the module docstring); with
    `kv_block_indexes [total_q, Hkv, topK]` the attention output is block-sparse instead
    (this package's `build_k2q_csr` + `sparse_atten_func`, bottom-right causal)."""
    if not isinstance(plan, FmhaSm12xPlan):
        raise TypeError(f"plan must come from fmha_sm12x_plan, got {type(plan).__name__}")
    _check_operands(q, k, v, plan)
    device = q.device
    if plan.cu_seqlens_q.device != device:
        raise ValueError(f"plan was made for {plan.cu_seqlens_q.device} but q is on {device}")
    if plan.page_size > 0:
        check_tensor("kv_indices", kv_indices, dtypes=(torch.int32,), ndim=1)
    elif kv_indices is not None:
        raise ValueError("kv_indices is only used with a paged plan (page_size > 0)")
    qo_offset = plan.qo_offset
    if q_offset_override is not None:
        qo_offset = _offset_tensor("q_offset_override", q_offset_override, plan.batch, device)
    want_ms = output_maxscore and (plan.output_maxscore or max_score is not None)
    if not output_o and not want_ms:
        raise ValueError("nothing to compute: output_o=False and no max_score requested")
    hq, d = q.shape[1], q.shape[2]
    out_dtype = torch.bfloat16 if q.dtype in FP8_DTYPES else q.dtype
    if output_o and kv_block_indexes is None:
        if out is None:
            out = torch.empty(q.shape, dtype=out_dtype, device=device)
        check_tensor("out", out, dtypes=(out_dtype,))
        check_shape("out", out, tuple(q.shape))
        if out.stride(-1) != 1:
            raise ValueError("out must have a contiguous last dim")
    if want_ms:
        ms_shape = (hq, plan.num_kv_tiles, plan.total_q)
        if max_score is None:
            max_score = torch.empty(ms_shape, dtype=torch.float32, device=device)
        check_tensor("max_score", max_score, dtypes=(torch.float32,), contiguous=True)
        check_shape("max_score", max_score, ms_shape)
    check_same_device(q=q, k=k, v=v, kv_indices=kv_indices, out=out, max_score=max_score)
    scale = default_scale(d, check_float("sm_scale", sm_scale, allow_none=True))
    fp8 = k.dtype in FP8_DTYPES
    qs = _scalar("q_scale", q_scale) if q.dtype in FP8_DTYPES else 1.0
    ks, vs = (_scalar("k_scale", k_scale), _scalar("v_scale", v_scale)) if fp8 else (1.0, 1.0)

    sparse_out = None
    if kv_block_indexes is not None and output_o:
        sparse_out = _sparse_attention(q, k, v, plan, kv_indices, kv_block_indexes, scale, out, q_offset_override)
    dense_o = output_o and sparse_out is None
    if plan.total_q == 0 or plan.batch == 0 or not (dense_o or want_ms):
        if want_ms:
            max_score.fill_(float("-inf"))
        if dense_o:
            out.zero_()
        return (sparse_out if sparse_out is not None else (out if dense_o else None)), (max_score if want_ms else None)

    if not use_triton(q):
        ref_o, ref_ms = proxy_fmha_reference(
            q, k, v, plan.cu_seqlens_q, plan.cu_seqlens_k, plan.cu_page_offsets, kv_indices, qo_offset,
            page_size=plan.page_size, causal=plan.causal, num_tiles=plan.num_kv_tiles, sm_scale=scale,
            q_scale=qs, k_scale=ks, v_scale=vs)
        if dense_o:
            out.copy_(ref_o)
        if want_ms:
            max_score.copy_(ref_ms)
    else:
        dummy_i32 = plan.cu_seqlens_q
        _proxy_fmha_op(
            q, k, v, out if dense_o else q.new_empty((1, 1, d), dtype=out_dtype),
            max_score if want_ms else q.new_empty((1, 1, 1), dtype=torch.float32),
            plan.cu_seqlens_q, plan.cu_seqlens_k,
            plan.cu_page_offsets if plan.page_size > 0 else dummy_i32,
            kv_indices if plan.page_size > 0 else dummy_i32, qo_offset, plan.max_seqlen_q, max(plan.page_size, 0),
            plan.causal, dense_o, want_ms, scale, qs * ks, vs,
        )
    o = sparse_out if sparse_out is not None else (out if dense_o else None)
    return o, (max_score if want_ms else None)


def _page_table(plan, kv_indices):
    """[B, max_pages] page table gathered from the flat kv_indices (metadata only, no cache copy)."""
    pages = plan.cu_page_offsets
    counts = pages[1:] - pages[:-1]
    max_pages = -(-plan.max_seqlen_k // plan.page_size)
    j = torch.arange(max_pages, device=pages.device, dtype=torch.int32)
    idx = (pages[:-1, None] + j[None, :]).long().clamp_(0, max(kv_indices.shape[0] - 1, 0))
    table = kv_indices[idx] if kv_indices.numel() else torch.zeros_like(idx, dtype=torch.int32)
    return torch.where(j[None, :] < counts[:, None], table, torch.zeros_like(table)).to(torch.int32)


def _sparse_attention(q, k, v, plan, kv_indices, kv_block_indexes, scale, out, q_offset_override):
    """Block-sparse main pass: q2k -> k2q CSR -> sparse_atten_func (bottom-right causal only)."""
    from .csr import build_k2q_csr
    from .prefill import sparse_atten_func

    # checked here, by the caller's name (build_k2q_csr would call it q2k_indices)
    check_tensor("kv_block_indexes", kv_block_indexes, dtypes=(torch.int32,), ndim=3, device=q.device)
    check_shape("kv_block_indexes", kv_block_indexes, (plan.total_q, plan.num_kv_heads, None))
    if q_offset_override is not None or not plan.default_qo_offset:
        raise ValueError("kv_block_indexes (sparse pass) supports only the default bottom-right qo_offset")
    top_k = kv_block_indexes.shape[2]
    q2k = kv_block_indexes.permute(1, 0, 2).contiguous()
    row_ptr, q_indices = build_k2q_csr(
        q2k, plan.cu_seqlens_q, plan.cu_seqlens_k, SCORE_BLOCK, total_k=plan.total_k,
        max_seqlen_k=plan.max_seqlen_k, max_seqlen_q=plan.max_seqlen_q,
        total_rows=plan.num_k2q_rows,
        qhead_per_kv=plan.num_qo_heads // plan.num_kv_heads,
    )
    kwargs = dict(cu_seqlens_q=plan.cu_seqlens_q, cu_seqlens_k=plan.cu_seqlens_k, max_seqlen_q=plan.max_seqlen_q,
                  max_seqlen_k=plan.max_seqlen_k, blk_kv=SCORE_BLOCK, causal=plan.causal, softmax_scale=scale,
                  out=out)
    if plan.page_size > 0:
        kwargs["page_table"] = _page_table(plan, kv_indices)
    return sparse_atten_func(q, k, v, row_ptr, q_indices, top_k, **kwargs)
