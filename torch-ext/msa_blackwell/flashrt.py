"""FlashRT / SGLang decode helpers over the token-slot cache layout.

`k_cache/v_cache [max_slots, Hkv, D]`, `req_to_token [max_reqs, max_kv_len]` (position ->
slot), `slot_ids [B]` (row of `req_to_token` per request), `seq_lens [B]`. The same decode
kernel as the paged path reads the cache in place (token-granular gather).
"""
import torch

from ._backend import use_triton
from ._checks import (
    FP8_DTYPES,
    TOKEN_INDEX_DTYPES,
    check_float,
    check_int,
    check_power_of_two,
    check_same_device,
    check_shape,
    check_tensor,
    check_token_slot_metadata,
)
from .decode import (
    check_decode_q,
    check_kv_dtype,
    check_selection,
    head_blocks,
    out_dtype_for,
    plan_launch,
    sparse_decode_fwd,
)
from .reference.attention import default_scale
from .reference.decode import token_slot_decode_reference

# The decode kernel walks a block as whole BLOCK_N (>= 64) tiles.
KERNEL_MIN_BLOCK = 64


def _check_token_slot_args(q, sink, k_cache, v_cache, req_to_token, seq_lens, slot_ids, block_size, topk_idx):
    check_decode_q(q)
    batch, num_heads_q, head_dim = q.shape
    check_tensor("k_cache", k_cache, ndim=3)
    check_tensor("v_cache", v_cache, ndim=3)
    check_kv_dtype("k_cache", k_cache, q)
    check_kv_dtype("v_cache", v_cache, q)
    if v_cache.dtype != k_cache.dtype:
        raise TypeError(f"v_cache must have the dtype of k_cache ({k_cache.dtype}), got {v_cache.dtype}")
    check_shape("k_cache", k_cache, (None, None, head_dim))
    check_shape("v_cache", v_cache, tuple(k_cache.shape))
    num_kv_heads = k_cache.shape[1]
    if num_heads_q % num_kv_heads:
        raise ValueError(f"q heads ({num_heads_q}) must be a multiple of the KV heads ({num_kv_heads})")
    check_token_slot_metadata(req_to_token, seq_lens, slot_ids, batch)
    check_int("block_size", block_size, lo=1)
    if sink is not None:
        check_tensor("sink", sink, dtypes=(torch.bfloat16, torch.float16, torch.float32))
        check_shape("sink", sink, (num_heads_q, head_dim))
    check_same_device(q=q, k_cache=k_cache, v_cache=v_cache, req_to_token=req_to_token, seq_lens=seq_lens,
                      slot_ids=slot_ids, sink=sink, topk_idx=topk_idx)
    check_selection("topk_idx", topk_idx, num_kv_heads, batch, q.device)
    return num_kv_heads


def token_slot_decode(q, sink, k_cache, v_cache, req_to_token, seq_lens, slot_ids, block_size, topk_idx,
                      sm_scale=None, *, k_scale=None, v_scale=None, return_softmax_lse=False):
    """Sparse (or, with `topk_idx=None`, dense) decode of one query per request.

    The kernel's block-size rule is checked on every device, so CPU and GPU accept the same inputs."""
    num_kv_heads = _check_token_slot_args(q, sink, k_cache, v_cache, req_to_token, seq_lens, slot_ids, block_size,
                                          topk_idx)
    check_power_of_two("block_size", block_size, KERNEL_MIN_BLOCK)
    batch, num_heads_q, head_dim = q.shape
    scale = default_scale(head_dim, check_float("sm_scale", sm_scale, allow_none=True))
    odt = out_dtype_for(q.dtype)
    if not use_triton(q):
        out, lse = token_slot_decode_reference(q, sink, k_cache, v_cache, req_to_token, seq_lens, slot_ids,
                                               block_size, topk_idx, scale, k_scale=k_scale, v_scale=v_scale)
        out = out.to(odt)
        return (out, lse) if return_softmax_lse else out
    out = torch.empty(batch, num_heads_q, head_dim, dtype=odt, device=q.device)
    lse = torch.empty(batch, num_heads_q, dtype=torch.float32, device=q.device)
    if batch == 0:
        return (out, lse) if return_softmax_lse else out
    kv_fp8 = k_cache.dtype in FP8_DTYPES
    group = num_heads_q // num_kv_heads
    cfg, num_splits = plan_launch(q.device, group, batch * head_blocks(num_kv_heads, group, kv_fp8), block_size, kv_fp8,
                                  None if topk_idx is None else topk_idx.shape[2], req_to_token.shape[1])
    o_partial = lse_partial = None
    if num_splits > 1:
        o_partial = torch.empty(num_splits, batch, num_heads_q, head_dim, dtype=torch.float32, device=q.device)
        lse_partial = torch.empty(num_splits, batch, num_heads_q, dtype=torch.float32, device=q.device)
    sink32 = None if sink is None else sink.float().contiguous()
    sparse_decode_fwd(q, k_cache, v_cache, topk_idx, seq_lens.to(torch.int32), req_to_token,
                      slot_ids.to(torch.int32), sink32, k_scale, v_scale, out, lse, o_partial, lse_partial,
                      1, block_size, True, scale, num_splits, *cfg)
    return (out, lse) if return_softmax_lse else out


def flash_decode_with_gqa_share_sparse(q, sink, k_cache, v_cache, req_to_token, seq_lens, slot_ids, block_size,
                                       topk_idx, sm_scale=None, use_tma=True):
    """Sparse decode, token-slot layout. q [B, Hq, D]; sink [Hq, D] or None; topk_idx [Hkv, B, topK]
    (-1 padded; any order and duplicates are handled too); block_size a power of two >= 64 on every
    device (the kernel's rule). `use_tma` is accepted and ignored."""
    del use_tma
    return token_slot_decode(q, sink, k_cache, v_cache, req_to_token, seq_lens, slot_ids, block_size, topk_idx,
                             sm_scale)


def naive_flash_decode_with_gqa_share_sparse(q, sink, k_cache, v_cache, req_to_token, seq_lens, slot_ids, block_size,
                                             topk_idx, sm_scale=None, use_tma=True):
    """PyTorch reference of `flash_decode_with_gqa_share_sparse` (same signature and layouts; any
    block_size >= 1, where the kernel takes powers of two >= 64)."""
    del use_tma
    _check_token_slot_args(q, sink, k_cache, v_cache, req_to_token, seq_lens, slot_ids, block_size, topk_idx)
    scale = default_scale(q.shape[2], check_float("sm_scale", sm_scale, allow_none=True))
    out, _ = token_slot_decode_reference(q, sink, k_cache, v_cache, req_to_token, seq_lens, slot_ids, block_size,
                                         topk_idx, scale)
    return out.to(out_dtype_for(q.dtype))


def get_cu_seqblocks(seq_lens, block_size):
    """int32 [B+1]: exclusive cumsum of ceil(seq_len / block_size)."""
    check_tensor("seq_lens", seq_lens, dtypes=TOKEN_INDEX_DTYPES, ndim=1)
    check_int("block_size", block_size, lo=1)
    blocks = torch.div(seq_lens.clamp(min=0) + (block_size - 1), block_size, rounding_mode="floor")
    cu = torch.zeros(seq_lens.shape[0] + 1, dtype=torch.int32, device=seq_lens.device)
    cu[1:] = torch.cumsum(blocks, 0).to(torch.int32)
    return cu


def robust_allocator(size, alignment, stream):
    """Triton scratch allocator (`triton.set_allocator(robust_allocator)`): an aligned uint8 CUDA tensor."""
    del stream  # the caching allocator orders reuse on the current stream
    alignment = max(int(alignment), 1)
    raw = torch.empty(int(size) + alignment, dtype=torch.uint8, device="cuda")
    offset = (-raw.data_ptr()) % alignment
    return raw[offset:offset + int(size)]


__all__ = [
    "flash_decode_with_gqa_share_sparse",
    "get_cu_seqblocks",
    "naive_flash_decode_with_gqa_share_sparse",
    "robust_allocator",
]
