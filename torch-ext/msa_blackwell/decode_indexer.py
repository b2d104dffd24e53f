"""FlashRT decode indexer: `flash_decode_with_topk_idx` and its reference `naive_flash_decode_with_topk_idx`.

Semantics chosen where upstream is silent:
- `q [B, H_idx, D]` are the index query heads (one decode token per request); `k_cache/v_cache
  [max_slots, Hkv_idx, D]` the index K/V in the token-slot layout (`req_to_token`, `slot_ids`,
  `seq_lens`); `H_idx % Hkv_idx == 0`. Request b sees positions `[0, seq_lens[b])`.
- Block score = max over the block's tokens of the raw `q·k` (times `k_scale` for FP8 caches);
  `score_type` "max" is the only one.
- Selection per index head: blocks `[0, init_blocks)` and the last `local_blocks` of the
  request are always kept, the rest of `topk` go to the best scores. Result `[H_idx, B, topk]`
  int32: descending score with the forced blocks first (ascending id), `-1` right padding.
- `o` (unless `disable_index_value`): each index head's attention (softmax scale `sm_scale`,
  optional `sink [H_idx, D]`) over the tokens of its own selected blocks, or over every visible
  token with `use_dense_main_attn=True`; `[B, H_idx, D]` (BF16 for FP8 inputs).
- `max_seqlen` bounds `seq_lens` and sets the score width `ceil(max_seqlen / block_size)`.
- `page_size` only tells that slots of a page are contiguous; `req_to_token` is read per token
  either way. `use_tma` is accepted and ignored.
"""
import math

import torch
from torch.library import triton_op, wrap_triton

from ._backend import add_op_namespace_prefix, cuda_properties, use_triton
from ._checks import (
    FP8_DTYPES,
    HALF_DTYPES,
    check_float,
    check_int,
    check_power_of_two,
    check_same_device,
    check_shape,
    check_tensor,
    check_token_slot_metadata,
)
from .decode import SUPPORTED_HEAD_DIMS as VALUE_HEAD_DIMS
from .decode import check_kv_dtype
from .flashrt import KERNEL_MIN_BLOCK as VALUE_MIN_BLOCK
from .indexer import dot_dtype_for
from .reference.decode import token_slot_decode_reference
from .reference.indexer import decode_block_scores_reference
from .reference.topk import native_topk_from_scores as native_topk_reference
from .topk import MAX_TOPK
from .triton_kernels import indexer as kernels

SCORER_MIN_BLOCK = 16  # the block scorer's tile walk: powers of two >= 16

def _num_sms(device):
    if device.type != "cuda":
        return 1
    return cuda_properties(device.index)[1]


@triton_op(add_op_namespace_prefix("decode_index_block_scores"), mutates_args=())
def _decode_block_scores_op(
    q: torch.Tensor, k_cache: torch.Tensor, req_to_token: torch.Tensor, slot_ids: torch.Tensor,
    seq_lens: torch.Tensor, block_size: int, max_blocks: int, k_scale: float, init_blocks: int = 0,
    local_blocks: int = 0,
) -> torch.Tensor:
    """Block scores [H, B, max_blocks]; the forced blocks (first init_blocks, last local_blocks) are +inf."""
    out = torch.empty((q.shape[1], q.shape[0], max_blocks), dtype=torch.float32, device=q.device)
    if q.shape[0] == 0 or max_blocks == 0:
        return out
    # FP8 keys are exact in fp16 (hardware e4m3x2 -> f16x2 converts); Q is clamped to fp16 range in-kernel
    half = torch.float16 if q.dtype == torch.float16 or k_cache.dtype in FP8_DTYPES else torch.bfloat16
    kernels.launch_decode_block_scores(wrap_triton, q, k_cache, req_to_token, slot_ids, seq_lens, out, block_size,
                                       k_scale, init_blocks, local_blocks, dot_dtype_for(q, half),
                                       _num_sms(q.device))
    return out


def _check_args(q, sink, k_cache, v_cache, req_to_token, seq_lens, max_seqlen, slot_ids, block_size, topk,
                init_blocks, local_blocks, sm_scale, score_type, disable_index_value, page_size, kernel_rules):
    """`kernel_rules`: also the Triton path's limits, on every device (CPU and GPU accept the same inputs)."""
    check_tensor("q", q, dtypes=HALF_DTYPES, ndim=3)
    batch, hq, d = q.shape
    if q.stride(2) != 1:
        raise ValueError("q must have a contiguous last dim")
    if d not in (16, 32, 64, 128, 256):
        raise ValueError(f"q head dim must be a power of two in 16..256, got {d}")
    check_tensor("k_cache", k_cache, dtypes=(q.dtype,) + FP8_DTYPES, ndim=3)
    check_shape("k_cache", k_cache, (None, None, d))
    if k_cache.stride(2) != 1:
        raise ValueError("k_cache must have a contiguous last dim")
    if k_cache.shape[1] == 0 or hq % k_cache.shape[1]:
        raise ValueError(f"q heads ({hq}) must be a multiple of k_cache heads ({k_cache.shape[1]})")
    if not disable_index_value:
        check_tensor("v_cache", v_cache, dtypes=(k_cache.dtype,), ndim=3)
        check_shape("v_cache", v_cache, tuple(k_cache.shape))
    if sink is not None:
        check_tensor("sink", sink, dtypes=(torch.bfloat16, torch.float16, torch.float32), ndim=2)
        check_shape("sink", sink, (hq, d))
    check_token_slot_metadata(req_to_token, seq_lens, slot_ids, batch)
    check_int("max_seqlen", max_seqlen, lo=0)
    check_int("block_size", block_size, lo=1)
    check_int("topk", topk, lo=1)
    check_int("init_blocks", init_blocks, lo=0)
    check_int("local_blocks", local_blocks, lo=0)
    check_int("page_size", page_size, lo=1)
    if init_blocks + local_blocks > topk:
        raise ValueError(f"init_blocks + local_blocks ({init_blocks + local_blocks}) must be <= topk ({topk})")
    if score_type != "max":
        raise ValueError(f"score_type must be 'max', got {score_type!r}")
    check_float("sm_scale", sm_scale, allow_none=True)
    check_same_device(q=q, sink=sink, k_cache=k_cache, v_cache=None if disable_index_value else v_cache,
                      req_to_token=req_to_token, seq_lens=seq_lens, slot_ids=slot_ids)
    if not kernel_rules:
        return
    check_int("topk", topk, hi=MAX_TOPK)  # the top-k kernel's limit
    check_power_of_two("block_size", block_size, SCORER_MIN_BLOCK)
    kernels.check_strides_aligned(q=q, k_cache=k_cache)
    if disable_index_value:
        return
    # the index value runs the token-slot decode kernel
    if block_size < VALUE_MIN_BLOCK:
        raise ValueError(f"block_size must be a power of two >= {VALUE_MIN_BLOCK} for the index value "
                         f"(or pass disable_index_value=True), got {block_size}")
    if d not in VALUE_HEAD_DIMS:
        raise ValueError(f"q head dim must be one of {VALUE_HEAD_DIMS} for the index value (or pass "
                         f"disable_index_value=True), got {d}")
    check_kv_dtype("k_cache", k_cache, q)
    check_kv_dtype("v_cache", v_cache, q)


def _scale_value(name, value):
    if value is None:
        return 1.0
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be a scalar or 1-element tensor")
        return float(value.reshape(-1)[0].item())
    return check_float(name, value)


def force_blocks(scores, seq_lens, block_size, init_blocks, local_blocks):
    """+inf for the always-kept blocks: the first init_blocks and the last local_blocks of each request."""
    max_blocks = scores.shape[2]
    nb = torch.div(seq_lens.to(scores.device).long().clamp(min=0) + block_size - 1, block_size,
                   rounding_mode="floor").view(1, -1, 1)
    ids = torch.arange(max_blocks, device=scores.device).view(1, 1, -1)
    forced = ((ids < init_blocks) | (ids >= nb - local_blocks)) & (ids < nb)
    return torch.where(forced, torch.full_like(scores, math.inf), scores)


def _index_value(attend, q, sink, k_cache, v_cache, req_to_token, seq_lens, slot_ids, block_size, topk_idx, scale,
                 k_scale, v_scale):
    """Attention of each index head over its own selection: heads of one K head are spread over
    zero-stride views of that head so each gets its own row of topk_idx (no cache copy)."""
    hkv = k_cache.shape[1]
    group = q.shape[1] // hkv
    if topk_idx is None or group == 1:
        return attend(q, sink, k_cache, v_cache, req_to_token, seq_lens, slot_ids, block_size, topk_idx, scale,
                      k_scale, v_scale)
    outs = []
    for g in range(hkv):
        heads = slice(g * group, (g + 1) * group)
        outs.append(attend(
            q[:, heads], None if sink is None else sink[heads],
            k_cache[:, g : g + 1].expand(-1, group, -1), v_cache[:, g : g + 1].expand(-1, group, -1),
            req_to_token, seq_lens, slot_ids, block_size, topk_idx[heads], scale, k_scale, v_scale))
    return torch.cat(outs, dim=1)


def _fast_attend(q, sink, k_cache, v_cache, req_to_token, seq_lens, slot_ids, block_size, topk_idx, scale, k_scale,
                 v_scale):
    from .flashrt import token_slot_decode

    return token_slot_decode(q, sink, k_cache, v_cache, req_to_token, seq_lens, slot_ids, block_size, topk_idx,
                             scale, k_scale=k_scale, v_scale=v_scale)


def _reference_attend(q, sink, k_cache, v_cache, req_to_token, seq_lens, slot_ids, block_size, topk_idx, scale,
                      k_scale, v_scale):
    out, _ = token_slot_decode_reference(q, sink, k_cache, v_cache, req_to_token, seq_lens, slot_ids, block_size,
                                         topk_idx, scale, k_scale=k_scale, v_scale=v_scale)
    return out.to(torch.bfloat16 if q.dtype in FP8_DTYPES else q.dtype)


def _scale_tensor(name, value, device):
    if value is None or isinstance(value, torch.Tensor):
        return value
    return torch.tensor([check_float(name, value)], dtype=torch.float32, device=device)


def _decode_indexer(fast, kernel_rules, q, sink, k_cache, v_cache, req_to_token, seq_lens, max_seqlen, slot_ids,
                    block_size, topk, init_blocks, local_blocks, sm_scale, score_type, disable_index_value,
                    use_dense_main_attn, page_size, k_scale, v_scale):
    _check_args(q, sink, k_cache, v_cache, req_to_token, seq_lens, max_seqlen, slot_ids, block_size, topk,
                init_blocks, local_blocks, sm_scale, score_type, disable_index_value, page_size, kernel_rules or fast)
    fp8 = k_cache.dtype in FP8_DTYPES
    ks = _scale_value("k_scale", k_scale) if fp8 else 1.0
    max_blocks = -(-max_seqlen // block_size)
    if fast:
        scores = _decode_block_scores_op(q, k_cache, req_to_token, slot_ids, seq_lens, block_size, max_blocks, ks,
                                         init_blocks, local_blocks)
        from .topk import native_topk_from_scores
    else:
        scores = decode_block_scores_reference(q, k_cache, req_to_token, seq_lens, slot_ids, block_size, max_blocks,
                                               ks)
        scores = force_blocks(scores, seq_lens, block_size, init_blocks, local_blocks)
        native_topk_from_scores = native_topk_reference
    topk_idx = native_topk_from_scores(scores, seq_lens, block_size, topk)
    o = None
    if not disable_index_value:
        scale = q.shape[2] ** -0.5 if sm_scale is None else float(sm_scale)
        attend = _fast_attend if fast else _reference_attend
        o = _index_value(attend, q, sink, k_cache, v_cache, req_to_token, seq_lens, slot_ids, block_size,
                         None if use_dense_main_attn else topk_idx, scale,
                         _scale_tensor("k_scale", k_scale, q.device) if fp8 else None,
                         _scale_tensor("v_scale", v_scale, q.device) if fp8 else None)
    return o, topk_idx, None


def flash_decode_with_topk_idx(q, sink, k_cache, v_cache, req_to_token, seq_lens, max_seqlen, slot_ids, block_size,
                               topk, init_blocks, local_blocks, sm_scale=None, use_tma=True, score_type="max",
                               disable_index_value=False, use_dense_main_attn=False, page_size=1, *, k_scale=None,
                               v_scale=None):
    """Decode indexer (see the module docstring): returns `(o or None, topk_idx [H_idx, B, topk] int32, None)`.
    `k_scale`/`v_scale` (extension) dequantize FP8 index caches.

    The kernels' limits hold on every device: topk <= 64, block_size a power of two >= 16, and with
    the index value (disable_index_value=False) block_size >= 64 and a head dim of 64 or 128."""
    del use_tma
    fast = use_triton(q) if isinstance(q, torch.Tensor) else False
    return _decode_indexer(fast, True, q, sink, k_cache, v_cache, req_to_token, seq_lens, max_seqlen, slot_ids,
                           block_size, topk, init_blocks, local_blocks, sm_scale, score_type, disable_index_value,
                           use_dense_main_attn, page_size, k_scale, v_scale)


def naive_flash_decode_with_topk_idx(q, sink, k_cache, v_cache, req_to_token, seq_lens, max_seqlen, slot_ids,
                                     block_size, topk, init_blocks, local_blocks, sm_scale=None, use_tma=True,
                                     score_type="max", disable_index_value=False, use_dense_main_attn=False,
                                     page_size=1, *, k_scale=None, v_scale=None):
    """PyTorch reference of `flash_decode_with_topk_idx` (same signature and layouts, without the
    kernels' limits on topk, block_size and head dim)."""
    del use_tma
    return _decode_indexer(False, False, q, sink, k_cache, v_cache, req_to_token, seq_lens, max_seqlen, slot_ids,
                           block_size, topk, init_blocks, local_blocks, sm_scale, score_type, disable_index_value,
                           use_dense_main_attn, page_size, k_scale, v_scale)
