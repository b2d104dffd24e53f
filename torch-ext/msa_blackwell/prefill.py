"""Block-sparse prefill: `sparse_atten_func` and `sparse_atten_nvfp4_kv_func` (CONTRACT §3)."""
import torch

from ._backend import use_triton
from ._checks import FP8_DTYPES, HALF_DTYPES, check_float, check_int, check_int32_metadata, \
    check_same_device, check_shape, check_tensor
from .reference.attention import default_scale
from .reference.nvfp4 import dequantize_nvfp4_reference
from .reference.prefill import sparse_prefill_reference

try:
    from .triton_kernels.prefill import sparse_prefill_fwd
except ImportError:  # no Triton: CPU tensors still run the reference
    sparse_prefill_fwd = None

TOPK_LIMIT = 64
HEAD_DIMS = (64, 128)


def _check_row_layout(name, t):
    """Contiguous rows starting on 16-element boundaries: the kernels promise the compiler
    16-byte-aligned rows (vector loads; the SM12x gate compiles them that way)."""
    if t.stride(-1) != 1:
        raise ValueError(f"{name} must have a contiguous last dimension")
    if any(st % 16 for st, n in zip(t.stride()[:-1], t.shape[:-1]) if n > 1):
        raise ValueError(f"{name} strides must be multiples of 16 elements, got {tuple(t.stride())}")


def _check_kv(q, k, v, paged, nvfp4):
    d = q.shape[2]
    if nvfp4:
        check_tensor("q", q, dtypes=HALF_DTYPES)
        for name, t in (("k", k), ("v", v)):
            check_tensor(name, t)
            if t.dtype != torch.uint8:
                raise TypeError(f"{name} must be packed NVFP4 (uint8), got {str(t.dtype).replace('torch.', '')}")
    else:
        allowed = FP8_DTYPES if q.dtype in FP8_DTYPES else (q.dtype,) + FP8_DTYPES
        check_tensor("k", k, dtypes=allowed)
        check_tensor("v", v, dtypes=(k.dtype,))
    kd = d // 2 if nvfp4 else d
    if paged:
        check_tensor("k", k, ndim=4)
        check_shape("k", k, [None, None, None, kd])
    else:
        check_tensor("k", k, ndim=3)
        check_shape("k", k, [None, None, kd])
    check_shape("v", v, list(k.shape))
    _check_row_layout("k", k)
    _check_row_layout("v", v)
    if q.shape[1] % k.shape[1] != 0:
        raise ValueError(f"q heads ({q.shape[1]}) must be a multiple of k heads ({k.shape[1]})")
    return k.shape[1]


def _check_dtype_arg(name, value, allow_none):
    if value is None and allow_none:
        return
    if not isinstance(value, torch.dtype):
        raise TypeError(f"{name} must be a torch.dtype, got {type(value).__name__}")


def _check_scales(d, k, v, k_scale_128x4, v_scale_128x4, k_global_scale, v_global_scale):
    for name, s in (("k_scale_128x4", k_scale_128x4), ("v_scale_128x4", v_scale_128x4)):
        check_tensor(name, s, dtypes=(torch.uint8,))
        if not s.is_contiguous():
            raise ValueError(f"{name} must be contiguous")
    rows = k.numel() // (d // 2)
    need = ((rows + 127) // 128 * 128) * ((d // 16 + 3) // 4 * 4)
    for name, s in (("k_scale_128x4", k_scale_128x4), ("v_scale_128x4", v_scale_128x4)):
        if s.numel() < need:
            raise ValueError(f"{name} must hold {need} swizzled scales for {rows} rows, got {s.numel()}")
    for name, s in (("k_global_scale", k_global_scale), ("v_global_scale", v_global_scale)):
        if s is not None:
            check_tensor(name, s, dtypes=(torch.float32,))
            if s.numel() < 1:
                raise ValueError(f"{name} must have at least one element")


def _check_common(q, k, v, k2q_row_ptr, k2q_q_indices, topK, cu_seqlens_q, cu_seqlens_k,
                  max_seqlen_q, max_seqlen_k, blk_kv, causal, softmax_scale, lse_temperature_scale,
                  return_temperature_lse, partial_dtype, return_softmax_lse, page_table, seqused_k,
                  schedule, usable_SM_count, qk_dtype, pv_dtype, out, nvfp4):
    check_tensor("q", q, dtypes=HALF_DTYPES + FP8_DTYPES, ndim=3)
    _check_row_layout("q", q)
    total_q, hq, d = q.shape
    if d not in HEAD_DIMS:
        raise ValueError(f"q head dim must be one of {HEAD_DIMS}, got {d}")
    paged = page_table is not None
    hkv = _check_kv(q, k, v, paged, nvfp4)
    check_int("topK", topK, lo=1, hi=TOPK_LIMIT)
    check_int("blk_kv", blk_kv, lo=64)
    if blk_kv % 64 != 0:
        raise ValueError(f"blk_kv must be a multiple of 64, got {blk_kv}")
    check_int("max_seqlen_q", max_seqlen_q, lo=0)
    check_int("max_seqlen_k", max_seqlen_k, lo=0)
    check_int("usable_SM_count", usable_SM_count)
    for name, flag in (("causal", causal), ("return_temperature_lse", return_temperature_lse),
                       ("return_softmax_lse", return_softmax_lse)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be a bool, got {type(flag).__name__}")
    if return_temperature_lse and not return_softmax_lse:
        raise ValueError("return_temperature_lse=True requires return_softmax_lse=True")
    check_float("softmax_scale", softmax_scale, allow_none=True)
    if not isinstance(lse_temperature_scale, (int, float)) or isinstance(lse_temperature_scale, bool):
        raise TypeError(f"lse_temperature_scale must be a float, got {type(lse_temperature_scale).__name__}")
    if not lse_temperature_scale > 0:
        raise ValueError(f"lse_temperature_scale must be > 0, got {lse_temperature_scale}")
    _check_dtype_arg("partial_dtype", partial_dtype, False)
    _check_dtype_arg("qk_dtype", qk_dtype, True)
    _check_dtype_arg("pv_dtype", pv_dtype, True)

    check_int32_metadata("cu_seqlens_q", cu_seqlens_q)
    check_int32_metadata("cu_seqlens_k", cu_seqlens_k)
    if cu_seqlens_q.numel() < 1:
        raise ValueError("cu_seqlens_q must have B+1 >= 1 entries")
    check_shape("cu_seqlens_k", cu_seqlens_k, [cu_seqlens_q.numel()])
    batch = cu_seqlens_q.numel() - 1
    check_int32_metadata("k2q_row_ptr", k2q_row_ptr, ndim=2)
    check_int32_metadata("k2q_q_indices", k2q_q_indices, ndim=2)
    check_shape("k2q_row_ptr", k2q_row_ptr, [hkv, None])
    check_shape("k2q_q_indices", k2q_q_indices, [hkv, None])
    if k2q_row_ptr.shape[1] < 1:
        raise ValueError("k2q_row_ptr must have total_rows+1 >= 1 columns")
    if paged:
        check_int32_metadata("page_table", page_table, ndim=2)
        check_shape("page_table", page_table, [batch, None])
    if seqused_k is not None:
        check_int32_metadata("seqused_k", seqused_k)
        check_shape("seqused_k", seqused_k, [batch])
    qsplit = None
    if schedule is not None:
        qsplit = getattr(schedule, "qsplit_indices", None)
        if qsplit is None:
            raise TypeError("schedule must be the object build_k2q_csr(..., return_schedule=True) returns")
        check_int32_metadata("schedule.qsplit_indices", qsplit, ndim=2)
        check_shape("schedule.qsplit_indices", qsplit, list(k2q_q_indices.shape))
    out_dtype = torch.bfloat16 if q.dtype in FP8_DTYPES else q.dtype
    if out is not None:
        check_tensor("out", out, dtypes=(out_dtype,))
        check_shape("out", out, [total_q, hq, d])
        _check_row_layout("out", out)
    check_same_device(q=q, k=k, v=v, k2q_row_ptr=k2q_row_ptr, k2q_q_indices=k2q_q_indices,
                      cu_seqlens_q=cu_seqlens_q, cu_seqlens_k=cu_seqlens_k, page_table=page_table,
                      seqused_k=seqused_k, qsplit_indices=qsplit, out=out)
    if not q.is_cuda:  # cheap on the host; on the GPU this would be a sync
        for name, cu in (("cu_seqlens_q", cu_seqlens_q), ("cu_seqlens_k", cu_seqlens_k)):
            if int(cu[0]) < 0:
                raise ValueError(f"{name}[0] must be >= 0, got {int(cu[0])}")
            drops = torch.nonzero(cu[1:] < cu[:-1])
            if drops.numel():
                i = int(drops[0])
                raise ValueError(f"{name} must be non-decreasing, got {name}[{i + 1}] = {int(cu[i + 1])} < "
                                 f"{name}[{i}] = {int(cu[i])}")
        if int(cu_seqlens_q[-1]) != total_q:
            raise ValueError(f"cu_seqlens_q[-1] ({int(cu_seqlens_q[-1])}) must equal q.shape[0] ({total_q})")
        if not paged and int(cu_seqlens_k[-1]) > k.shape[0]:
            raise ValueError(f"cu_seqlens_k[-1] ({int(cu_seqlens_k[-1])}) must be <= k.shape[0] ({k.shape[0]})")
        if paged and page_table.numel() and (int(page_table.min()) < 0 or int(page_table.max()) >= k.shape[0]):
            raise ValueError(f"page_table entries must be in [0, {k.shape[0]})")
    return qsplit, out_dtype


def _sparse_prefill(q, k, v, k_scale_128x4, v_scale_128x4, k_global_scale, v_global_scale,
                    k2q_row_ptr, k2q_q_indices, topK, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                    max_seqlen_k, blk_kv, causal, softmax_scale, lse_temperature_scale,
                    return_temperature_lse, partial_dtype, return_softmax_lse, page_table,
                    seqused_k, schedule, usable_SM_count, qk_dtype, pv_dtype, out, nvfp4):
    qsplit, out_dtype = _check_common(
        q, k, v, k2q_row_ptr, k2q_q_indices, topK, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
        max_seqlen_k, blk_kv, causal, softmax_scale, lse_temperature_scale, return_temperature_lse,
        partial_dtype, return_softmax_lse, page_table, seqused_k, schedule, usable_SM_count,
        qk_dtype, pv_dtype, out, nvfp4)
    total_q, hq, d = q.shape
    if nvfp4:
        _check_scales(d, k, v, k_scale_128x4, v_scale_128x4, k_global_scale, v_global_scale)
        check_same_device(q=q, k_scale_128x4=k_scale_128x4, v_scale_128x4=v_scale_128x4,
                          k_global_scale=k_global_scale, v_global_scale=v_global_scale)
    scale = default_scale(d, softmax_scale)
    temperature = float(lse_temperature_scale)
    write_tlse = return_temperature_lse and temperature != 1.0
    if out is None:
        out = torch.empty(total_q, hq, d, dtype=out_dtype, device=q.device)
    lse = torch.empty(total_q, hq, dtype=torch.float32, device=q.device)
    tlse = torch.empty(total_q if write_tlse else 1, hq, dtype=torch.float32, device=q.device)

    if sparse_prefill_fwd is not None and use_triton(q):
        ones = torch.ones(1, dtype=torch.float32, device=q.device)
        no_scale = torch.zeros(1, dtype=torch.uint8, device=q.device)
        sparse_prefill_fwd(
            q, k, v,
            k_scale_128x4 if nvfp4 else no_scale, v_scale_128x4 if nvfp4 else no_scale,
            k_global_scale if k_global_scale is not None else ones,
            v_global_scale if v_global_scale is not None else ones,
            k2q_row_ptr, k2q_q_indices, qsplit if qsplit is not None else k2q_q_indices,
            cu_seqlens_q, cu_seqlens_k,
            seqused_k if seqused_k is not None else cu_seqlens_k,
            page_table if page_table is not None else cu_seqlens_k,
            out, lse, tlse, topK, blk_kv, max_seqlen_k, causal, scale, temperature,
            qsplit is not None, seqused_k is not None, page_table is not None, nvfp4, write_tlse,
            partial_dtype == torch.float32,
        )
    else:
        dequant_k = dequant_v = None
        if nvfp4:
            dequant_k = _nvfp4_dequantizer(k_scale_128x4, k_global_scale, d)
            dequant_v = _nvfp4_dequantizer(v_scale_128x4, v_global_scale, d)
        ref_out, ref_lse, ref_tlse = sparse_prefill_reference(
            q, k, v, k2q_row_ptr, k2q_q_indices, topK, cu_seqlens_q=cu_seqlens_q,
            cu_seqlens_k=cu_seqlens_k, blk_kv=blk_kv, causal=causal, softmax_scale=scale,
            lse_temperature_scale=temperature, page_table=page_table, seqused_k=seqused_k,
            dequant_k=dequant_k, dequant_v=dequant_v)
        out.copy_(ref_out)
        lse.copy_(ref_lse)
        if write_tlse:
            tlse.copy_(ref_tlse)

    if not return_softmax_lse:
        return out
    if not return_temperature_lse:
        return out, lse
    return out, lse, (tlse if write_tlse else lse)


def _nvfp4_dequantizer(scale_128x4, global_scale, d):
    def dequant(data):
        rows = data.numel() // (d // 2)
        # element 0, as the kernel reads it (the check accepts larger tensors)
        g = global_scale.reshape(-1)[:1] if global_scale is not None else torch.ones(1, device=data.device)
        return dequantize_nvfp4_reference(data, scale_128x4, g, rows, d // 16)

    return dequant


def sparse_atten_func(
    q, k, v, k2q_row_ptr, k2q_q_indices, topK, *, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
    max_seqlen_k, blk_kv=128, causal=False, softmax_scale=None, lse_temperature_scale=1.0,
    return_temperature_lse=False, partial_dtype=torch.bfloat16, return_softmax_lse=False,
    page_table=None, seqused_k=None, schedule=None, usable_SM_count=-1, qk_dtype=None,
    pv_dtype=None, out=None,
):
    """Block-sparse prefill over the k2q CSR (CONTRACT §3).

    q [total_q, Hq, D]; k, v dense [total_k, Hkv, D] or paged [num_pages, Hkv, page_size, D]
    (with page_table [B, max_pages]). BF16/FP16, BF16/FP16 Q with FP8-E4M3 K/V, or FP8 Q/K/V
    (output BF16). Returns out, (out, lse) or (out, lse, tlse).
    """
    return _sparse_prefill(
        q, k, v, None, None, None, None, k2q_row_ptr, k2q_q_indices, topK, cu_seqlens_q,
        cu_seqlens_k, max_seqlen_q, max_seqlen_k, blk_kv, causal, softmax_scale,
        lse_temperature_scale, return_temperature_lse, partial_dtype, return_softmax_lse,
        page_table, seqused_k, schedule, usable_SM_count, qk_dtype, pv_dtype, out, nvfp4=False)


def sparse_atten_nvfp4_kv_func(
    q, k, v, k_scale_128x4, v_scale_128x4, k_global_scale, v_global_scale, k2q_row_ptr,
    k2q_q_indices, topK, *, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, blk_kv=128,
    causal=False, softmax_scale=None, lse_temperature_scale=1.0, return_temperature_lse=False,
    partial_dtype=torch.bfloat16, return_softmax_lse=False, page_table=None, seqused_k=None,
    schedule=None, usable_SM_count=-1, qk_dtype=None, pv_dtype=None, out=None,
):
    """`sparse_atten_func` with packed NVFP4 K/V (uint8 [..., D/2]) and 128x4 E4M3 scales.

    K/V are dequantized inside the kernel's tile loads. V's global scale multiplies the
    output once; K's global scale is folded into the logit scale (so LSE includes it).
    """
    return _sparse_prefill(
        q, k, v, k_scale_128x4, v_scale_128x4, k_global_scale, v_global_scale, k2q_row_ptr,
        k2q_q_indices, topK, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, blk_kv,
        causal, softmax_scale, lse_temperature_scale, return_temperature_lse, partial_dtype,
        return_softmax_lse, page_table, seqused_k, schedule, usable_SM_count, qk_dtype, pv_dtype,
        out, nvfp4=True)
