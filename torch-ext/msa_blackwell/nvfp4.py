"""NVFP4 helpers (contract §2.4, §3): quantize BF16/FP16 to E2M1 + 128x4-swizzled E4M3 scales.

No Transformer Engine: CUDA tensors (or CPU tensors under TRITON_INTERPRET=1) run the
Triton kernels of `triton_kernels/nvfp4.py` with the global scale kept on the device
(no host sync); other CPU tensors run `reference/nvfp4.py`. Both give the same bits.

Rows are all leading dims flattened, so quantizing a whole K cache gives the scale row
the sparse-attention kernels expect (dense `t*Hkv + g`, paged `(p*Hkv + g)*page + slot`).
A negative-signed input (including -0.0) keeps its sign bit even when it rounds to zero;
NaN elements encode as 0x0 and are ignored by the amax; +-Inf saturate to +-6 * scale.
"""
from dataclasses import dataclass
from typing import Tuple

import torch
import triton

from ._backend import add_op_namespace_prefix, triton_interpret, use_triton
from ._checks import HALF_DTYPES, check_int, check_tensor
from .reference import nvfp4 as ref
from .triton_kernels import nvfp4 as kernels

__all__ = [
    "Nvfp4QuantizedTensor",
    "dequantize_nvfp4_128x4_to_bf16",
    "nvfp4_global_scale_from_amax",
    "quantize_bf16_to_nvfp4_128x4",
    "quantize_kv_bf16_to_nvfp4_128x4",
    "swizzle_nvfp4_scale_to_128x4",
    "unswizzle_nvfp4_scale_from_128x4",
]


@dataclass(frozen=True)
class Nvfp4QuantizedTensor:
    """data: uint8 [..., D/2] packed E2M1; scale_128x4: uint8 flat [Rp*Cp] E4M3 bits;
    global_scale: fp32 [1]; logical_scale_shape: (rows, cols) = (numel/D, D/16);
    original_shape: the shape of the quantized tensor."""

    data: torch.Tensor
    scale_128x4: torch.Tensor
    global_scale: torch.Tensor
    logical_scale_shape: Tuple[int, int]
    original_shape: Tuple[int, ...]


def scale_128x4_numel(rows, cols):
    return ref.round_up(rows, 128) * ref.round_up(cols, 4)


@torch.library.triton_op(add_op_namespace_prefix("nvfp4_quantize_128x4"), mutates_args=())
def _quantize_op(x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    rows, d = x.shape
    cols = d // 16
    padded_rows, padded_cols = ref.round_up(rows, 128), ref.round_up(cols, 4)
    data = x.new_empty((rows, d // 2), dtype=torch.uint8)
    # the kernel writes only the logical scales; padding bytes must read 0
    padded = padded_rows != rows or padded_cols != cols
    scale = (x.new_zeros if padded else x.new_empty)((padded_rows * padded_cols,), dtype=torch.uint8)
    global_scale = x.new_ones((1,), dtype=torch.float32)
    if rows == 0:
        return data, scale, global_scale
    amax = x.new_zeros((2,), dtype=torch.float32)  # finite amax, any-NaN/Inf flag
    n_programs, tiles_per_program = kernels.amax_grid(x.numel())
    torch.library.wrap_triton(kernels.nvfp4_amax_kernel)[(n_programs,)](
        x, amax, x.numel(), tiles_per_program, BLOCK=kernels.AMAX_BLOCK, num_warps=kernels.NUM_WARPS,
    )
    (groups, warps), _ = kernels.launch_configs()
    n_groups = rows * cols
    magic, shift = kernels.division_magic(cols)
    # read as int32 words (two inputs each) and written as int32 words (eight codes each)
    torch.library.wrap_triton(kernels.nvfp4_quantize_kernel)[(triton.cdiv(n_groups, groups),)](
        x.view(torch.int32), amax, global_scale, data.view(torch.int32), scale, n_groups, cols,
        padded_cols // 4, magic, shift, GROUPS=groups, FP16=x.dtype == torch.float16,
        INTERPRETED=triton_interpret(), num_warps=warps,
    )
    return data, scale, global_scale


@torch.library.triton_op(add_op_namespace_prefix("nvfp4_dequantize_128x4"), mutates_args=())
def _dequantize_op(
    data: torch.Tensor, scale: torch.Tensor, global_scale: torch.Tensor, apply_global: bool
) -> torch.Tensor:
    rows, half_d = data.shape
    d = half_d * 2
    out = data.new_empty((rows, d), dtype=torch.bfloat16)
    if rows == 0:
        return out
    cols = d // 16
    _, (words, warps) = kernels.launch_configs()
    n_groups = rows * cols
    magic, shift = kernels.division_magic(cols)
    torch.library.wrap_triton(kernels.nvfp4_dequantize_kernel)[(triton.cdiv(2 * n_groups, words),)](
        data, scale, global_scale, out, n_groups, cols, ref.round_up(cols, 4) // 4,
        magic, shift, WORDS=words, APPLY_GLOBAL=apply_global, INTERPRETED=triton_interpret(), num_warps=warps,
    )
    return out


def _check_quantize_input(name, x):
    check_tensor(name, x, dtypes=HALF_DTYPES)
    if x.dim() < 2:
        raise ValueError(f"{name} must have at least 2 dims, got shape {tuple(x.shape)}")
    if x.shape[-1] == 0 or x.shape[-1] % 16 != 0:
        raise ValueError(f"{name}.shape[-1] must be a positive multiple of 16, got {x.shape[-1]}")


def quantize_bf16_to_nvfp4_128x4(x):
    """BF16/FP16 x [..., D] (D % 16 == 0) -> Nvfp4QuantizedTensor (recipe of contract §2.4)."""
    _check_quantize_input("x", x)
    d = x.shape[-1]
    rows, cols = x.numel() // d, d // 16
    if use_triton(x):
        flat = x.contiguous().reshape(rows, d)
        # The kernel reads x as int32 words; only a view can start at an odd element, and under
        # torch.compile `view(torch.int32)` itself rejects that.
        if not torch.compiler.is_compiling() and flat.storage_offset() % 2:
            flat = flat.clone()
        data, scale, global_scale = _quantize_op(flat)
        data = data.reshape(*x.shape[:-1], d // 2)
    else:
        data, scale, global_scale, _ = ref.quantize_nvfp4_reference(x)
    return Nvfp4QuantizedTensor(data, scale, global_scale, (rows, cols), tuple(x.shape))


def quantize_kv_bf16_to_nvfp4_128x4(k, v):
    """Quantize K and V with independent global scales; returns the pair (k_nvfp4, v_nvfp4)."""
    _check_quantize_input("k", k)
    _check_quantize_input("v", v)
    return quantize_bf16_to_nvfp4_128x4(k), quantize_bf16_to_nvfp4_128x4(v)


def _check_quantized(qx):
    if not isinstance(qx, Nvfp4QuantizedTensor):
        raise TypeError(f"qx must be an Nvfp4QuantizedTensor, got {type(qx).__name__}")
    check_tensor("qx.data", qx.data, dtypes=(torch.uint8,))
    check_tensor("qx.scale_128x4", qx.scale_128x4, dtypes=(torch.uint8,))
    check_tensor("qx.global_scale", qx.global_scale, dtypes=(torch.float32,))
    shape = tuple(qx.original_shape)
    if len(shape) < 2 or shape[-1] % 16 != 0 or tuple(qx.data.shape) != shape[:-1] + (shape[-1] // 2,):
        raise ValueError(
            f"qx.data must have shape original_shape[:-1] + (D/2,) with D % 16 == 0; "
            f"got data {tuple(qx.data.shape)} for original_shape {shape}"
        )
    rows, cols = qx.logical_scale_shape
    if rows * shape[-1] != qx.data.numel() * 2 or cols * 16 != shape[-1]:
        raise ValueError(
            f"qx.logical_scale_shape must be (numel/D, D/16) = "
            f"({qx.data.numel() * 2 // max(shape[-1], 1)}, {shape[-1] // 16}), got {(rows, cols)}"
        )
    if qx.scale_128x4.numel() != scale_128x4_numel(rows, cols):
        raise ValueError(
            f"qx.scale_128x4 must have {scale_128x4_numel(rows, cols)} elements (128x4 padding of "
            f"{rows}x{cols}), got {qx.scale_128x4.numel()}"
        )
    if qx.global_scale.numel() != 1:
        raise ValueError(f"qx.global_scale must have 1 element, got {qx.global_scale.numel()}")
    for name, t in (("qx.scale_128x4", qx.scale_128x4), ("qx.global_scale", qx.global_scale)):
        if t.device != qx.data.device:
            raise ValueError(f"{name} is on {t.device} but qx.data is on {qx.data.device}")
    return rows, cols


def dequantize_nvfp4_128x4_to_bf16(qx, *, include_global_scale=True):
    """Nvfp4QuantizedTensor -> BF16 tensor of `qx.original_shape` (value = e2m1 * scale * global)."""
    rows, cols = _check_quantized(qx)
    if use_triton(qx.data):
        data = qx.data.contiguous().reshape(rows, cols * 8)
        out = _dequantize_op(
            data, qx.scale_128x4.contiguous().reshape(-1),
            qx.global_scale.reshape(1), bool(include_global_scale),
        )
        return out.reshape(qx.original_shape)
    out = ref.dequantize_nvfp4_reference(
        qx.data, qx.scale_128x4.reshape(-1), qx.global_scale, rows, cols, include_global_scale=include_global_scale
    )
    return out.to(torch.bfloat16).reshape(qx.original_shape)


def _check_scale_matrix(name, scale, rows, cols):
    check_int("rows", rows, lo=0)
    check_int("cols", cols, lo=0)
    check_tensor(name, scale, dtypes=(torch.uint8, torch.float8_e4m3fn))
    return scale.view(torch.uint8) if scale.dtype != torch.uint8 else scale


def swizzle_nvfp4_scale_to_128x4(scale, *, rows, cols):
    """Logical E4M3 block scales (uint8 or float8_e4m3fn, rows*cols elements, row-major)
    -> flat uint8 [round_up(rows,128) * round_up(cols,4)] in the 128x4 layout, padding 0."""
    scale = _check_scale_matrix("scale", scale, rows, cols)
    if scale.numel() != rows * cols:
        raise ValueError(f"scale must have rows*cols = {rows * cols} elements, got shape {list(scale.shape)}")
    return ref.swizzle_scales_reference(scale.reshape(rows, cols), rows, cols)


def unswizzle_nvfp4_scale_from_128x4(scale_128x4, *, rows, cols):
    """Inverse of `swizzle_nvfp4_scale_to_128x4`: flat 128x4 bytes -> uint8 [rows, cols]."""
    scale_128x4 = _check_scale_matrix("scale_128x4", scale_128x4, rows, cols)
    if scale_128x4.numel() != scale_128x4_numel(rows, cols):
        raise ValueError(
            f"scale_128x4 must have {scale_128x4_numel(rows, cols)} elements for rows={rows}, cols={cols}, "
            f"got {scale_128x4.numel()}"
        )
    return ref.unswizzle_scales_reference(scale_128x4.reshape(-1), rows, cols)


def nvfp4_global_scale_from_amax(amax):
    """amax.float() / 2688 (448 * 6); no zero guard, as the official helper. `amax`: a tensor or a
    Python int/float."""
    if not isinstance(amax, torch.Tensor):
        if isinstance(amax, bool) or not isinstance(amax, (int, float)):
            raise TypeError(f"amax must be a torch.Tensor or a float, got {type(amax).__name__}")
        amax = torch.tensor(float(amax))
    return amax.float() / ref.GLOBAL_DIVISOR
