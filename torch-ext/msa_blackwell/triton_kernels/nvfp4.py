"""NVFP4 128x4 quantize / dequantize kernels, bit-exact with `reference/nvfp4.py`.

Three memory-bound passes: a finite-amax reduction into a device scalar (no host sync),
a quantize pass (x -> packed E2M1 codes + swizzled E4M3 scales, global scale derived
in-kernel from the amax), and a dequantize pass (codes + scales -> BF16).

Divisions use `tl.math.div_rn` (plain `/` is approximate on the GPU) and E4M3 rounding
and the BF16 output rounding are done with integer arithmetic, because the interpreter's
fp8 and bf16 casts do not round to nearest even; both keep the kernels bit-exact with
torch's float32 reference on the GPU and under the interpreter.
"""
import triton
import triton.language as tl

from .gate import GateCase

GLOBAL_DIVISOR = tl.constexpr(2688.0)  # 448 * 6
TILE_ELEMS = 4096  # elements per program in quantize/dequantize
AMAX_BLOCK = 4096
AMAX_MAX_PROGRAMS = 1024  # bounds the number of same-address atomics
NUM_WARPS = 4


@triton.jit
def _e4m3_rne_bits(s):
    """float32 s in [0, 448] -> E4M3 bit pattern (int32), round to nearest even."""
    bits = s.to(tl.int32, bitcast=True)
    exp = bits >> 23
    # normal E4M3 (s >= 2^-6): round the 23-bit mantissa to 3 bits; carries enter the exponent
    rounded = (bits + 0x7FFFF + ((bits >> 20) & 1)) >> 20
    normal = rounded - (120 << 3)
    # subnormal E4M3: round s * 2^9 to an integer (8 lands on the smallest normal, code 8)
    mant = tl.where(exp > 0, (bits & 0x7FFFFF) | 0x800000, bits & 0x7FFFFF)
    # clamped so the unused lanes of the normal branch never shift by a negative count
    shift = tl.minimum(tl.maximum(141 - tl.maximum(exp, 1), 1), 26)
    q = mant >> shift
    rem = mant & ((1 << shift) - 1)
    half = 1 << (shift - 1)
    sub = q + ((rem > half) | ((rem == half) & ((q & 1) == 1))).to(tl.int32)
    return tl.where(exp >= 121, normal, sub)


@triton.jit
def _with_sign(val, negative):
    """Set the sign bit where `negative` (Triton's `-x` is `0 - x`, which loses -0.0)."""
    bits = val.to(tl.int32, bitcast=True) | (negative.to(tl.int32) << 31)
    return bits.to(tl.float32, bitcast=True)


@triton.jit
def _e4m3_value(code):
    """E4M3 bit pattern (int32, 0..255) -> float32 value (0x7F/0xFF -> NaN)."""
    mag = code & 0x7F
    e = mag >> 3
    m = mag & 7
    normal = (((e + 120) << 23) | (m << 20)).to(tl.float32, bitcast=True)
    val = tl.where(e == 0, m.to(tl.float32) * 0.001953125, normal)
    val = tl.where(mag == 0x7F, float("nan"), val)
    return _with_sign(val, (code & 0x80) != 0)


@triton.jit
def _e2m1_value(nibble):
    """E2M1 code (int32, 0..15) -> float32 value (0x8 -> -0.0)."""
    e = (nibble >> 1) & 3
    m = nibble & 1
    normal = (((e + 126) << 23) | (m << 22)).to(tl.float32, bitcast=True)
    val = tl.where(e == 0, m.to(tl.float32) * 0.5, normal)
    return _with_sign(val, (nibble & 8) != 0)


@triton.jit
def _to_bf16_rne(v):
    """float32 -> bf16 rounding to nearest even (the interpreter's cast truncates)."""
    bits = v.to(tl.int32, bitcast=True)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.to(tl.int16).to(tl.bfloat16, bitcast=True)


@triton.jit
def _swizzle_offset(r, c, tiles_n):
    return ((r // 128) * tiles_n + c // 4) * 512 + (r % 32) * 16 + ((r % 128) // 32) * 4 + c % 4


@triton.jit
def nvfp4_amax_kernel(x_ptr, amax_ptr, n, tiles_per_program, BLOCK: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    offs = tl.arange(0, BLOCK)
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    for t in range(tiles_per_program):
        idx = (pid * tiles_per_program + t) * BLOCK + offs
        ax = tl.abs(tl.load(x_ptr + idx, mask=idx < n, other=0.0).to(tl.float32))
        # NaN fails the comparison, so NaN and Inf both count as 0
        acc = tl.maximum(acc, tl.where(ax < float("inf"), ax, 0.0))
    tl.atomic_max(amax_ptr, tl.max(acc, axis=0))


@triton.jit
def nvfp4_quantize_kernel(
    x_ptr, amax_ptr, global_ptr, data_ptr, scale_ptr,
    rows, padded_rows, D, padded_cols, tiles_n,
    BLOCK_R: tl.constexpr, BLOCK_G: tl.constexpr,
):
    BLOCK_C: tl.constexpr = BLOCK_G * 16
    pid_r = tl.program_id(0)
    pid_c = tl.program_id(1)
    amax = tl.load(amax_ptr)
    g = tl.where(amax > 0, tl.math.div_rn(amax, GLOBAL_DIVISOR), 1.0)
    if (pid_r == 0) & (pid_c == 0):
        tl.store(global_ptr, g)

    r = pid_r.to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    col = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    row_ok = r < rows
    x = tl.load(
        x_ptr + r[:, None] * D + col[None, :],
        mask=row_ok[:, None] & (col < D)[None, :], other=0.0,
    ).to(tl.float32)
    x3 = tl.reshape(x, [BLOCK_R, BLOCK_G, 16])
    ax = tl.abs(x3)
    bamax = tl.max(tl.where(ax == ax, ax, 0.0), axis=2)
    s = tl.minimum(tl.maximum(tl.math.div_rn(bamax, 6.0 * g), 0.0), 448.0)
    scale_bits = _e4m3_rne_bits(s)
    divisor = _e4m3_value(scale_bits) * g
    safe_divisor = tl.where(divisor == 0, 1.0, divisor)
    v = tl.abs(tl.math.div_rn(x3, safe_divisor[:, :, None]))
    # round-to-nearest-even onto 0,.5,1,1.5,2,3,4,6: ties at .75/1.75/3.5 round up, the rest down
    mag = (
        (v > 0.25).to(tl.int32) + (v >= 0.75).to(tl.int32) + (v > 1.25).to(tl.int32)
        + (v >= 1.75).to(tl.int32) + (v > 2.5).to(tl.int32) + (v >= 3.5).to(tl.int32)
        + (v > 5.0).to(tl.int32)
    )
    mag = tl.where(divisor[:, :, None] == 0, 0, mag)
    sign = (x3.to(tl.int32, bitcast=True) < 0) & (x3 == x3)
    codes = mag | (sign.to(tl.int32) << 3)
    lo, hi = tl.split(tl.reshape(codes, [BLOCK_R, BLOCK_C // 2, 2]))
    packed = (lo | (hi << 4)).to(tl.uint8)
    bcol = pid_c * (BLOCK_C // 2) + tl.arange(0, BLOCK_C // 2)
    tl.store(
        data_ptr + r[:, None] * (D // 2) + bcol[None, :], packed,
        mask=row_ok[:, None] & (bcol < D // 2)[None, :],
    )
    # the grid covers the padded scale matrix; padding rows/cols hold all-zero x, so scale 0
    sc = pid_c * BLOCK_G + tl.arange(0, BLOCK_G)
    s_off = _swizzle_offset(r[:, None], sc[None, :], tiles_n)
    tl.store(
        scale_ptr + s_off, scale_bits.to(tl.uint8),
        mask=(r < padded_rows)[:, None] & (sc < padded_cols)[None, :],
    )


@triton.jit
def nvfp4_dequantize_kernel(
    data_ptr, scale_ptr, global_ptr, out_ptr,
    rows, D, tiles_n,
    BLOCK_R: tl.constexpr, BLOCK_G: tl.constexpr, APPLY_GLOBAL: tl.constexpr,
):
    BLOCK_C: tl.constexpr = BLOCK_G * 16
    pid_r = tl.program_id(0)
    pid_c = tl.program_id(1)
    r = pid_r.to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    row_ok = r < rows
    bcol = pid_c * (BLOCK_C // 2) + tl.arange(0, BLOCK_C // 2)
    packed = tl.load(
        data_ptr + r[:, None] * (D // 2) + bcol[None, :],
        mask=row_ok[:, None] & (bcol < D // 2)[None, :], other=0,
    ).to(tl.int32)
    vals = tl.join(_e2m1_value(packed & 15), _e2m1_value(packed >> 4))
    vals = tl.reshape(vals, [BLOCK_R, BLOCK_G, 16])
    sc = pid_c * BLOCK_G + tl.arange(0, BLOCK_G)
    scale_ok = row_ok[:, None] & (sc < D // 16)[None, :]
    scale_bits = tl.load(scale_ptr + _swizzle_offset(r[:, None], sc[None, :], tiles_n), mask=scale_ok, other=0)
    out = vals * _e4m3_value(scale_bits.to(tl.int32))[:, :, None]
    if APPLY_GLOBAL:
        out = out * tl.load(global_ptr)
    col = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    tl.store(
        out_ptr + r[:, None] * D + col[None, :], _to_bf16_rne(tl.reshape(out, [BLOCK_R, BLOCK_C])),
        mask=row_ok[:, None] & (col < D)[None, :],
    )


# ---- launch heuristics (deterministic; every pick is listed in gate_cases) ----

BLOCK_G_CHOICES = (4, 8, 16)


def tile_config(padded_cols):
    """(BLOCK_R, BLOCK_G) for a row of `padded_cols` scale groups: <= 256 columns, 4096 elements."""
    block_g = 16
    for choice in BLOCK_G_CHOICES:
        if choice >= padded_cols:
            block_g = choice
            break
    return TILE_ELEMS // (16 * block_g), block_g


def amax_grid(n):
    tiles = triton.cdiv(n, AMAX_BLOCK)
    tiles_per_program = triton.cdiv(tiles, AMAX_MAX_PROGRAMS)
    return triton.cdiv(tiles, tiles_per_program), tiles_per_program


_PTR_TYPES = {"bf16": "*bf16", "fp16": "*fp16"}


def gate_cases():
    cases = []
    for tname, ptr in _PTR_TYPES.items():
        cases.append(GateCase(
            name=f"nvfp4_amax[{tname}]", fn=nvfp4_amax_kernel,
            signature={"x_ptr": ptr, "amax_ptr": "*fp32", "n": "i64", "tiles_per_program": "i32",
                       "BLOCK": "constexpr"},
            constexprs={"BLOCK": AMAX_BLOCK}, num_warps=NUM_WARPS,
        ))
        for block_g in BLOCK_G_CHOICES:
            block_r = TILE_ELEMS // (16 * block_g)
            cases.append(GateCase(
                name=f"nvfp4_quantize[{tname},G{block_g}]", fn=nvfp4_quantize_kernel,
                signature={"x_ptr": ptr, "amax_ptr": "*fp32", "global_ptr": "*fp32", "data_ptr": "*u8",
                           "scale_ptr": "*u8", "rows": "i32", "padded_rows": "i32", "D": "i32",
                           "padded_cols": "i32", "tiles_n": "i32", "BLOCK_R": "constexpr",
                           "BLOCK_G": "constexpr"},
                constexprs={"BLOCK_R": block_r, "BLOCK_G": block_g}, num_warps=NUM_WARPS,
            ))
    for block_g in BLOCK_G_CHOICES:
        block_r = TILE_ELEMS // (16 * block_g)
        for apply_global in (True, False):
            cases.append(GateCase(
                name=f"nvfp4_dequantize[bf16,G{block_g},global={int(apply_global)}]", fn=nvfp4_dequantize_kernel,
                signature={"data_ptr": "*u8", "scale_ptr": "*u8", "global_ptr": "*fp32", "out_ptr": "*bf16",
                           "rows": "i32", "D": "i32", "tiles_n": "i32", "BLOCK_R": "constexpr",
                           "BLOCK_G": "constexpr", "APPLY_GLOBAL": "constexpr"},
                constexprs={"BLOCK_R": block_r, "BLOCK_G": block_g, "APPLY_GLOBAL": apply_global},
                num_warps=NUM_WARPS,
            ))
    return cases
