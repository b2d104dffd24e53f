"""K/V tile loads shared by the prefill kernels: 16-bit, FP8 and in-register NVFP4 dequantisation."""
import triton
import triton.language as tl


@triton.jit
def _pow2(e):
    """2**e for small integer e, exact (built from the float32 exponent bits)."""
    return ((e + 127) << 23).to(tl.float32, bitcast=True)


@triton.jit
def _e2m1_to_f32(nib):
    mag = nib & 7
    e = mag >> 1
    m = (mag & 1).to(tl.float32)
    val = tl.where(e == 0, m * 0.5, (2.0 + m) * _pow2(e - 2))
    return tl.where((nib & 8) != 0, -val, val)


@triton.jit
def _e4m3_to_f32(bits):
    e = (bits >> 3) & 15
    m = (bits & 7).to(tl.float32)
    val = tl.where(e == 0, m * 0.001953125, (8.0 + m) * _pow2(e - 10))
    return tl.where((bits & 128) != 0, -val, val)


@triton.jit
def _dtype_fence(x, FENCE: tl.constexpr):
    """Identity on a 16-bit tile that hides where it came from from the compiler.

    Triton picks the mma operand packing (kWidth) from the narrowest load feeding a dot:
    an FP8/NVFP4 K/V tile would get kWidth=4, which permutes k inside each mma.sync and so
    changes the fp32 summation order. Behind this side-effecting identity every K/V dtype
    reaches the dots as the same 16-bit tile, so all of them run the BF16/FP16 path's
    instructions (FP8 -> BF16 upcast is bit exact). The CPU interpreter has no inline asm.
    """
    if FENCE:
        x = tl.inline_asm_elementwise("mov.b32 $0, $1;", "=r,r", [x], dtype=x.dtype,
                                      is_pure=False, pack=2)
    return x


@triton.jit
def _kv_tile(Ptr, Scale, row_off, scale_row, tmask, scale_tiles_n,
             D: tl.constexpr, NVFP4: tl.constexpr, CDT: tl.constexpr, FENCE: tl.constexpr):
    """[BLOCK_N, D] K or V tile in the compute dtype; masked rows are 0."""
    offs_d = tl.arange(0, D)
    if NVFP4:
        byte = tl.load(Ptr + row_off[:, None] + (offs_d // 2)[None, :], mask=tmask[:, None], other=0)
        nib = (byte.to(tl.int32) >> ((offs_d & 1) * 4)[None, :]) & 15
        c = offs_d // 16
        sc_off = (((scale_row // 128) * scale_tiles_n)[:, None] + (c // 4)[None, :]) * 512 \
            + ((scale_row % 32) * 16 + ((scale_row % 128) // 32) * 4)[:, None] + (c % 4)[None, :]
        sbits = tl.load(Scale + sc_off, mask=tmask[:, None], other=0).to(tl.int32)
        x = _e2m1_to_f32(nib) * _e4m3_to_f32(sbits)
    else:
        x = tl.load(Ptr + row_off[:, None] + offs_d[None, :], mask=tmask[:, None], other=0.0)
    return _dtype_fence(x.to(CDT), FENCE)
