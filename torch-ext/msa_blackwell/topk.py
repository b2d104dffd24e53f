"""Block top-k selection: `sparse_topk_select` (upstream csrc name) and `native_topk_from_scores`
(FlashRT/SGLang name). CUDA tensors run the native kernels (csrc/topk_select.cu); CPU tensors,
or a source tree without the compiled extension, run the PyTorch reference.
"""
from typing import Optional, Union

import torch

from . import _backend
from ._backend import add_op_namespace_prefix, use_native
from ._checks import check_int, check_same_device, check_shape, check_tensor
from .reference import topk as reference

MAX_TOPK = 64
_INDEX_DTYPES = (torch.int32, torch.int64)

__all__ = ["MAX_TOPK", "native_topk_from_scores", "sparse_topk_select"]


def _check_output(output, shape, like):
    check_tensor("output", output, dtypes=(torch.int32,), contiguous=True)
    check_shape("output", output, shape)
    check_same_device(max_score=like, output=output)
    return output


def sparse_topk_select(
    max_score: torch.Tensor,
    topk: int,
    num_valid_pages: Union[int, torch.Tensor, None] = None,
    output: Optional[torch.Tensor] = None,
    force_begin_blocks: int = 0,
    force_end_blocks: int = 0,
) -> torch.Tensor:
    """Per (head, token) the `topk` best blocks of `max_score [H, K, T]` fp32.

    Returns `[T, H, topk]` int32: block ids ascending, `-1` at the tail. Ids `>= num_valid_pages`
    (an int or a `[T]` int tensor, clipped to `[0, K]`) are excluded. Blocks `[0, force_begin_blocks)`
    and `[nvp - force_end_blocks, nvp)` (clipped to the valid range) are always kept; the remaining
    slots take the highest finite scores (ties to the lower id; NaN and -inf never selected).
    `output` is an optional preallocated `[T, H, topk]` int32 result.
    """
    check_tensor("max_score", max_score, dtypes=(torch.float32,), ndim=3)
    check_int("topk", topk, lo=1, hi=MAX_TOPK)
    check_int("force_begin_blocks", force_begin_blocks, lo=0)
    check_int("force_end_blocks", force_end_blocks, lo=0)
    if force_begin_blocks + force_end_blocks > topk:
        raise ValueError(
            f"force_begin_blocks + force_end_blocks must be <= topk ({topk}), "
            f"got {force_begin_blocks} + {force_end_blocks}"
        )
    heads, blocks, tokens = max_score.shape
    nvp_tensor = None
    nvp_int = blocks
    if isinstance(num_valid_pages, torch.Tensor):
        check_tensor("num_valid_pages", num_valid_pages, dtypes=_INDEX_DTYPES, ndim=1)
        check_shape("num_valid_pages", num_valid_pages, [tokens])
        check_same_device(max_score=max_score, num_valid_pages=num_valid_pages)
        nvp_tensor = num_valid_pages
    elif num_valid_pages is not None:
        nvp_int = check_int("num_valid_pages", num_valid_pages, lo=0)
    if output is not None:
        _check_output(output, [tokens, heads, topk], max_score)
    else:
        output = torch.empty((tokens, heads, topk), dtype=torch.int32, device=max_score.device)
    if tokens == 0 or heads == 0:
        return output
    if use_native(max_score):
        if nvp_tensor is not None:
            nvp_tensor = nvp_tensor.to(torch.int32).contiguous()
        _backend.ops.sparse_topk_select(
            max_score.contiguous(), nvp_tensor, min(nvp_int, blocks), force_begin_blocks, force_end_blocks, output
        )
        return output
    ref = reference.sparse_topk_select(
        max_score, topk, nvp_tensor if nvp_tensor is not None else nvp_int, force_begin_blocks, force_end_blocks
    )
    output.copy_(ref)
    return output


def native_topk_from_scores(score: torch.Tensor, seq_lens: torch.Tensor, block_size: int, topk: int) -> torch.Tensor:
    """`score [heads, batch, max_blocks]` fp32 -> `[heads, batch, topk]` int32 block ids.

    Best first (descending score, ties to the lower block id), `-1` padded. Blocks
    `>= ceil(seq_lens[b] / block_size)` and NaN / -inf scores are never selected.
    """
    check_tensor("score", score, dtypes=(torch.float32,), ndim=3)
    heads, batch, _ = score.shape
    check_tensor("seq_lens", seq_lens, dtypes=_INDEX_DTYPES, ndim=1)
    check_shape("seq_lens", seq_lens, [batch])
    check_same_device(score=score, seq_lens=seq_lens)
    check_int("block_size", block_size, lo=1)
    check_int("topk", topk, lo=1, hi=MAX_TOPK)
    if heads == 0 or batch == 0:
        return torch.empty((heads, batch, topk), dtype=torch.int32, device=score.device)
    if use_native(score):
        out = torch.empty((heads, batch, topk), dtype=torch.int32, device=score.device)
        _backend.ops.native_topk_from_scores(score.contiguous(), seq_lens.contiguous(), block_size, out)
        return out
    return reference.native_topk_from_scores(score, seq_lens, block_size, topk)


if _backend.NATIVE_OPS:

    @torch.library.register_fake(add_op_namespace_prefix("sparse_topk_select"))
    def _sparse_topk_select_fake(max_score, num_valid_pages, default_num_valid_pages, force_begin, force_end, out):
        return None

    @torch.library.register_fake(add_op_namespace_prefix("native_topk_from_scores"))
    def _native_topk_from_scores_fake(score, seq_lens, block_size, out):
        return None
