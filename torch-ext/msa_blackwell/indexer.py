"""`fp4_indexer_block_scores`: block-max raw q·k of MXFP4/NVFP4 index operands over a paged K cache."""
from typing import Optional

import torch
from torch.library import triton_op, wrap_triton

from ._backend import add_op_namespace_prefix, use_triton
from ._checks import check_fp4_scales, check_int, check_int32_metadata, check_same_device, check_tensor
from .reference.indexer import FP4_GROUP, SCORE_BLOCK, fp4_indexer_block_scores_reference
from .triton_kernels import indexer as kernels

FP4_FORMATS = tuple(FP4_GROUP)
SCALE_LAYOUTS = ("public", "preordered_mma")


def dot_dtype_for(tensor, half=torch.bfloat16):
    """Operand dtype of tl.dot: the interpreter computes half-precision dots wrongly, so it gets fp32."""
    import triton.language as tl

    if not tensor.is_cuda:
        return tl.float32
    return tl.float16 if half == torch.float16 else tl.bfloat16


@triton_op(add_op_namespace_prefix("fp4_indexer_block_scores"), mutates_args=())
def _fp4_block_scores_op(
    q_fp4: torch.Tensor, k_fp4: torch.Tensor, q_scale: torch.Tensor, k_scale: torch.Tensor,
    cu_seqlens_q: torch.Tensor, cu_seqlens_k: torch.Tensor, cu_page_offsets: torch.Tensor,
    kv_indices: torch.Tensor, qo_offset: Optional[torch.Tensor], max_seqlen_q: int, num_blocks: int,
    group: int, mxfp4: bool, preordered: bool, causal: bool,
) -> torch.Tensor:
    """Dequantize Q and K once (each key is decoded once, not once per query tile), then score
    with the block-max kernel of the proxy FMHA: every product e2m1 * scale is exact in BF16."""
    total_q, hq, half_d = q_fp4.shape
    out = torch.empty((hq, num_blocks, total_q), dtype=torch.float32, device=q_fp4.device)
    if total_q == 0 or num_blocks == 0 or cu_seqlens_q.shape[0] < 2:
        return out.fill_(float("-inf"))
    dot = dot_dtype_for(q_fp4)
    work_dtype = torch.bfloat16 if q_fp4.is_cuda else torch.float32
    q = torch.empty((total_q, hq, 2 * half_d), dtype=work_dtype, device=q_fp4.device)
    k = torch.empty(k_fp4.shape[:3] + (2 * half_d,), dtype=work_dtype, device=q_fp4.device)
    kernels.launch_fp4_dequant(wrap_triton, q_fp4, q_scale, q, hq, triton_cdiv(total_q, SCORE_BLOCK), group, mxfp4,
                               preordered, True)
    if k.numel():
        kernels.launch_fp4_dequant(wrap_triton, k_fp4, k_scale, k, hq, 1, group, mxfp4, preordered, False)
    if causal and qo_offset is None:
        q_lens = cu_seqlens_q[1:] - cu_seqlens_q[:-1]
        qo_offset = (cu_seqlens_k[1:] - cu_seqlens_k[:-1] - q_lens).to(torch.int32)
    kernels.launch_proxy_fmha(
        wrap_triton, q, k, k, q[:1], out, cu_seqlens_q, cu_seqlens_k, cu_page_offsets, kv_indices,
        qo_offset if causal else cu_seqlens_q, max_seqlen_q, SCORE_BLOCK, causal, False, True, 1.0, 1.0, 1.0, dot,
    )
    return out


def triton_cdiv(a, b):
    return -(-a // b)


def fp4_indexer_block_scores(
    q_fp4, k_fp4, q_scale, k_scale, cu_seqlens_q, cu_seqlens_k, cu_page_offsets, *,
    max_seqlen_q, max_seqlen_k, kv_indices, fp4_format, causal=False, qo_offset=None,
    scale_layout="preordered_mma",
):
    """Block scores `[Hq, ceil(max_seqlen_k/128), total_q]` fp32 of FP4 index operands.

    q_fp4 `[total_q, Hq, D/2]` and k_fp4 `[total_pages, Hkv, 128, D/2]` are packed E2M1 (uint8);
    request b's logical page j is physical page `kv_indices[cu_page_offsets[b] + j]`.
    `score[h, j, t]` = max over the visible tokens of block j of dot(deq(q[t, h]), deq(k[token, h // G]))
    (raw dot, no softmax or global scale); `-inf` where none is visible, where the block lies past
    the request's keys, or where its page id is out of range. Scales (uint8 codes; NVFP4 also accepts
    float8_e4m3fn) use `scale_layout` "public" (`[total_q, Hq, D/g]`, `[total_pages, Hkv, 128, D/g]`)
    or "preordered_mma" (`(L, ceil(rows/128), ceil((D/g)/4), 32, 4, 4)`, Q: L=Hq, rows=total_q;
    K: L=total_pages*Hkv, rows=128). Causal alignment is bottom-right unless `qo_offset [B]` int32
    gives each request's offset (query i sees keys t <= i + qo_offset[b]).
    """
    if fp4_format not in FP4_FORMATS:
        raise ValueError(f"fp4_format must be one of {FP4_FORMATS}, got {fp4_format!r}")
    if scale_layout not in SCALE_LAYOUTS:
        raise ValueError(f"scale_layout must be one of {SCALE_LAYOUTS}, got {scale_layout!r}")
    if qo_offset is not None and not causal:
        raise ValueError("qo_offset is only meaningful with causal=True")
    check_tensor("q_fp4", q_fp4, dtypes=(torch.uint8,), ndim=3, contiguous=True)
    check_tensor("k_fp4", k_fp4, dtypes=(torch.uint8,), ndim=4, contiguous=True)
    total_q, hq, half_d = q_fp4.shape
    total_pages, hkv, page, k_half_d = k_fp4.shape
    if page != SCORE_BLOCK:
        raise ValueError(f"k_fp4 must have {SCORE_BLOCK} slots per page (dim 2), got {page}")
    if k_half_d != half_d:
        raise ValueError(f"k_fp4 packed head dim {k_half_d} != q_fp4 packed head dim {half_d}")
    if hkv == 0 or hq % hkv != 0:
        raise ValueError(f"q_fp4 heads ({hq}) must be a multiple of k_fp4 heads ({hkv})")
    group = FP4_GROUP[fp4_format]
    if 2 * half_d not in kernels.HEAD_DIMS:
        raise ValueError(f"head dim {2 * half_d} must be one of {kernels.HEAD_DIMS}")
    groups = 2 * half_d // group
    q_scale = check_fp4_scales("q_scale", q_scale, fp4_format, scale_layout, (total_q, hq, groups), hq, total_q)
    k_scale = check_fp4_scales("k_scale", k_scale, fp4_format, scale_layout, (total_pages, hkv, SCORE_BLOCK, groups),
                               total_pages * hkv, SCORE_BLOCK)
    for name, t in (("cu_seqlens_q", cu_seqlens_q), ("cu_seqlens_k", cu_seqlens_k),
                    ("cu_page_offsets", cu_page_offsets), ("kv_indices", kv_indices)):
        check_int32_metadata(name, t)
    batch = cu_seqlens_q.shape[0] - 1
    if cu_seqlens_k.shape[0] != batch + 1 or cu_page_offsets.shape[0] != batch + 1:
        raise ValueError("cu_seqlens_q, cu_seqlens_k and cu_page_offsets must all have B+1 entries")
    if qo_offset is not None:
        check_int32_metadata("qo_offset", qo_offset)
        if qo_offset.shape[0] != batch:
            raise ValueError(f"qo_offset must have shape [{batch}], got {list(qo_offset.shape)}")
    check_int("max_seqlen_q", max_seqlen_q, lo=0)
    check_int("max_seqlen_k", max_seqlen_k, lo=0)
    check_same_device(q_fp4=q_fp4, k_fp4=k_fp4, q_scale=q_scale, k_scale=k_scale, cu_seqlens_q=cu_seqlens_q,
                      cu_seqlens_k=cu_seqlens_k, cu_page_offsets=cu_page_offsets, kv_indices=kv_indices,
                      qo_offset=qo_offset)
    num_blocks = -(-max_seqlen_k // SCORE_BLOCK)
    if not use_triton(q_fp4):
        return fp4_indexer_block_scores_reference(
            q_fp4, k_fp4, q_scale, k_scale, cu_seqlens_q, cu_seqlens_k, cu_page_offsets,
            max_seqlen_q=max_seqlen_q, max_seqlen_k=max_seqlen_k, kv_indices=kv_indices, fp4_format=fp4_format,
            causal=causal, qo_offset=qo_offset, scale_layout=scale_layout,
        )
    return _fp4_block_scores_op(
        q_fp4, k_fp4, q_scale, k_scale, cu_seqlens_q, cu_seqlens_k, cu_page_offsets, kv_indices, qo_offset,
        max_seqlen_q, num_blocks, group, fp4_format == "mxfp4", scale_layout == "preordered_mma", causal,
    )
