"""NVFP4 128x4 quantize / dequantize kernels, bit-exact with `reference/nvfp4.py`.

Three memory-bound passes: a finite-amax reduction into a device scalar (no host sync),
a quantize pass (x -> packed E2M1 codes + swizzled E4M3 scales, global scale derived
in-kernel from the amax), and a dequantize pass (codes + scales -> BF16). Quantize and
dequantize walk the tensor as a flat list of 16-element groups (rows x cols, row-major),
so every data access is contiguous and vectorises whatever D is; only the one scale byte
per group is gathered through the 128x4 swizzle.

The passes stay memory-bound only if each element costs a handful of instructions, so the
quantize pass has no division instruction: every float32 quotient of the recipe is computed
exactly (correctly rounded, as torch divides) from the divisor's reciprocal with FMA
residual corrections (`_rcp_rn`, `_quotient`); E2M1 and E4M3 rounding are float adds and
integer ops; the input is read as int32 words (BF16 needs no conversion) by threads that
own whole groups. NaN / Inf inputs and extreme global scales take a sanitizing branch that
is uniform over the launch (flagged by the amax pass). The dequantize pass decodes two
codes per byte into an FP16 pair and converts with the hardware (e4m3 scale decode, BF16
rounding).

The GPU's fused multiply-add, its min/max (which return the non-NaN operand), `rcp.approx`
and its fp8 / bf16 conversions differ from what the interpreter's numpy ops do (the
interpreter's fma rounds twice, its fp8 decode maps 0x7F to 480, its bf16 cast truncates),
so under TRITON_INTERPRET the kernels substitute exact equivalents (`INTERPRETED`): an
exactly rounded FMA, a NaN-ignoring min, a seed reciprocal deliberately 1-2 ulp off,
integer E4M3 decoding and BF16 rounding. The interpreter thus runs the GPU algorithm step
for step, and both are bit-exact with torch's float32 reference.
"""
import dataclasses
import os

import triton
import triton.language as tl

from .gate import GateCase

AMAX_BLOCK = 4096
AMAX_MAX_PROGRAMS = 1024  # bounds the number of same-address atomics
NUM_WARPS = 4


@triton.jit
def _e4m3_rne(s):
    """float32 s in [0, 448] -> (E4M3 bit pattern int32, its float32 value), round to nearest even."""
    bits = s.to(tl.int32, bitcast=True)
    # normal E4M3 (s >= 2^-6): round the 23-bit mantissa to 3 bits; carries enter the exponent
    rounded = (bits + 0x7FFFF + ((bits >> 20) & 1)) >> 20
    # subnormal E4M3: its grid k * 2^-9 is the ulp of 2^14, so one float add rounds s onto it
    # (8 lands on the smallest normal, code 8)
    t = s + 16384.0
    sub = s < 0.015625
    code = tl.where(sub, t.to(tl.int32, bitcast=True) - 0x46800000, rounded - (120 << 3))
    value = tl.where(sub, t - 16384.0, (rounded << 20).to(tl.float32, bitcast=True))
    return code, value


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
def _e2m1_rne_magnitude(v):
    """float32 v >= 0 (may be Inf) -> E2M1 magnitude code 0..7, ties to even, saturating.

    The code as a function of v is min(2v, v + 2, v/2 + 4) on [0, 6]: linear between neighbouring
    E2M1 values, which it maps to consecutive integers, so rounding v to the nearest E2M1 value
    (ties to the even code) is rounding that function to the nearest integer (ties to even). Each
    candidate is rounded by one float add at 2^23 (ulp 1; 2v and v/2 are exact), and rounding
    commutes with min. A NaN v gives 7 on the GPU (min.f32 returns the other operand).
    """
    v = tl.minimum(v, 6.0)
    code = tl.minimum(tl.minimum(v * 2.0 + 8388608.0, v + 8388610.0), v * 0.5 + 8388612.0)
    return code.to(tl.int32, bitcast=True) - 0x4B000000


@triton.jit
def _fma(x, y, z, INTERPRETED: tl.constexpr):
    """x * y + z rounded once to float32 (the interpreter's tl.fma rounds the product first)."""
    if INTERPRETED:
        p = tl.cast(x, tl.float64) * tl.cast(y, tl.float64)  # exact: 24 + 24 bits
        z64 = tl.cast(z, tl.float64)
        s = p + z64
        back = s - p
        err = (p - (s - back)) + (z64 - back)  # s + err == p + z exactly (TwoSum)
        # round to odd in float64, after which the float32 rounding is the only one that counts
        bits = s.to(tl.int64, bitcast=True)
        fix = (err != 0) & ((bits & 1) == 0) & (tl.abs(s) < float("inf"))
        bits = tl.where(fix, tl.where((err > 0) == (s > 0), bits + 1, bits - 1), bits)
        return bits.to(tl.float64, bitcast=True).to(tl.float32)
    else:
        return tl.fma(x, y, z)


@triton.jit
def _unpack_pair(w, FP16: tl.constexpr):
    """int32 word holding two BF16/FP16 values (element 2i in the low half) -> their magnitudes
    as float32 (sign bits stay in the word: 15 and 31)."""
    if FP16:
        lo = (w & 0x7FFF).to(tl.int16).to(tl.float16, bitcast=True).to(tl.float32)
        hi = ((w >> 16) & 0x7FFF).to(tl.int16).to(tl.float16, bitcast=True).to(tl.float32)
    else:
        lo = ((w & 0x7FFF) << 16).to(tl.float32, bitcast=True)
        hi = (w & 0x7FFF0000).to(tl.float32, bitcast=True)
    return lo, hi


@triton.jit
def _sanitize_words(w, rescale, FP16: tl.constexpr):
    """Words of two BF16/FP16 values -> the same with NaN halves replaced by +0 and, for BF16, every
    magnitude multiplied by the power of two `rescale` (FP16 inputs never need one). The product
    is exact unless it underflows below BF16's normal range, where the quotients it feeds are far
    below the first E2M1 step and the block amaxes far below the smallest E4M3 scale."""
    if FP16:
        nan_lo = (w & 0x7FFF) > 0x7C00
        nan_hi = (w & 0x7FFF0000) > 0x7C000000
        mag = w & 0x7FFF7FFF
    else:
        nan_lo = (w & 0x7FFF) > 0x7F80
        nan_hi = (w & 0x7FFF0000) > 0x7F800000
        lo, hi = _unpack_pair(w, FP16)
        lo = (lo * rescale).to(tl.int32, bitcast=True)
        hi = (hi * rescale).to(tl.int32, bitcast=True)
        mag = ((lo >> 16) & 0x7FFF) | (hi & 0x7FFF0000)
    w = (w & -2147450880) | mag  # signs (0x80008000) and magnitudes
    w = tl.where(nan_lo, w & -65536, w)
    return tl.where(nan_hi, w & 0xFFFF, w)


@triton.jit
def _rcp_rn(d, INTERPRETED: tl.constexpr):
    """RN(1/d) for a normal d in [2^-100, 2^100], without a division instruction.

    The seed (rcp.approx on the GPU, within 1 ulp; under the interpreter 1/d moved by -2..+1
    ulp, so the steps below do the same work) after one Newton step is within one ulp, so it
    and its neighbour on the side of 1/d bracket 1/d; their residuals 1 - d*y are exact (one
    FMA each) and the smaller one marks the nearest (1/d is never a midpoint).
    """
    neg_d = 0.0 - d
    if INTERPRETED:
        y = 1.0 / d
        y = (y.to(tl.int32, bitcast=True) + (d.to(tl.int32, bitcast=True) & 3) - 2).to(tl.float32, bitcast=True)
    else:
        y = tl.inline_asm_elementwise("rcp.approx.ftz.f32 $0, $1;", "=r,r", [d], dtype=tl.float32,
                                      is_pure=True, pack=1)
    y = _fma(_fma(neg_d, y, 1.0, INTERPRETED), y, y, INTERPRETED)
    e = _fma(neg_d, y, 1.0, INTERPRETED)
    y_next = (y.to(tl.int32, bitcast=True) + tl.where(e > 0, 1, -1)).to(tl.float32, bitcast=True)
    e_next = _fma(neg_d, y_next, 1.0, INTERPRETED)
    return tl.where(tl.abs(e) <= tl.abs(e_next), y, y_next)


@triton.jit
def _rcp_pair(d, INTERPRETED: tl.constexpr):
    """(y_hi, y_lo): y_hi = RN(1/d) and y_lo = RN((1 - d*y_hi) * y_hi), so y_hi + y_lo is 1/d
    within ~2^-46 relative (1 - d*y_hi is exact)."""
    y_hi = _rcp_rn(d, INTERPRETED)
    return y_hi, _fma(0.0 - d, y_hi, 1.0, INTERPRETED) * y_hi


@triton.jit
def _quotient(a, neg_d, y_hi, y_lo, INTERPRETED: tl.constexpr):
    """float32 a / d rounded to nearest even, given -d, y_hi = RN(1/d) and y_lo ~ 1/d - y_hi.

    q0 = RN(a*y_hi + RN(a*y_lo)) is within ~2^-45 relative of a/d, so it is one of the two floats
    around a/d; then r = a - d*q0 is exact (one FMA) and RN(q0 + r*y_hi) is the correctly
    rounded quotient (Markstein's step; y_hi must be within half an ulp of 1/d). Exact while
    a - d*q0 does not underflow, i.e. ulp(a/d) * ulp(d) >= 2^-149: the kernel keeps element
    divisors in [2^-95, 2^73] where only quotients >= 2^-3 matter (smaller ones code 0), and the
    block-scale divisor 6g in [2^-78, 2^67] where only quotients >= 2^-11 matter (smaller ones
    round to a zero E4M3 scale); below that the result stays a close underestimate.
    """
    q0 = _fma(a, y_hi, a * y_lo, INTERPRETED)
    r = _fma(q0, neg_d, a, INTERPRETED)
    return _fma(r, y_hi, q0, INTERPRETED)


@triton.jit
def _signed_nibbles(a, signs, neg_d, y_hi, y_lo, INTERPRETED: tl.constexpr, HIGH: tl.constexpr):
    q = _quotient(a, neg_d, y_hi, y_lo, INTERPRETED)
    if INTERPRETED:
        q = tl.where(q == q, q, 6.0)  # an Inf element (NaN quotient) saturates, as min.f32 does on the GPU
    mag = _e2m1_rne_magnitude(q)
    if HIGH:
        return mag | ((signs >> 28) & 8)
    else:
        return mag | ((signs >> 12) & 8)


@triton.jit
def _pack_half_group(a_lo, a_hi, signs, neg_d, y_hi, y_lo, INTERPRETED: tl.constexpr):
    """[G, 4] magnitudes of 8 consecutive elements -> [G] int32 of their 8 packed E2M1 codes."""
    lo = _signed_nibbles(a_lo, signs, neg_d[:, None], y_hi[:, None], y_lo[:, None], INTERPRETED, False)
    hi = _signed_nibbles(a_hi, signs, neg_d[:, None], y_hi[:, None], y_lo[:, None], INTERPRETED, True)
    return tl.sum((lo + (hi << 4)) << (tl.arange(0, 4) * 8)[None, :], axis=1)


@triton.jit
def _to_bf16_rne(v):
    """float32 -> bf16 rounding to nearest even (the interpreter's cast truncates)."""
    bits = v.to(tl.int32, bitcast=True)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.to(tl.int16).to(tl.bfloat16, bitcast=True)


@triton.jit
def _swizzle_offset(r, c, tiles_n):
    """Logical scale (row r >= 0, col c >= 0) -> byte offset in the 128x4 layout."""
    return ((r >> 7) * tiles_n + (c >> 2)) * 512 + (r & 31) * 16 + ((r >> 5) & 3) * 4 + (c & 3)


@triton.jit
def _row_col(group, cols, cols_magic, cols_shift):
    """Flat group index (row * cols + col, < 2^31) -> (row, col); the row is group // cols by a
    multiply-high with the launcher's magic number (`division_magic`)."""
    # tl.cast, not .to: a launch specialises an integer argument equal to 1 into a Python int
    # (cols_shift is 1 when cols is 2)
    magic = tl.cast(tl.cast(cols_magic, tl.int32), tl.uint32, bitcast=True)
    r = (tl.umulhi(group.to(tl.uint32, bitcast=True) * 2, magic)
         >> tl.cast(cols_shift, tl.uint32)).to(tl.int32, bitcast=True)
    return r, group - r * cols


@triton.jit
def nvfp4_amax_kernel(x_ptr, amax_ptr, n, tiles_per_program, BLOCK: tl.constexpr):
    """amax_ptr[0] = max |x| over finite elements; amax_ptr[1] = 1.0 if x holds a NaN or an Inf
    (the quantize pass then takes its sanitizing path). Both start at 0."""
    pid = tl.program_id(0).to(tl.int64)
    offs = tl.arange(0, BLOCK)
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    top = tl.zeros([BLOCK], dtype=tl.int32)
    for t in range(tiles_per_program):
        idx = (pid * tiles_per_program + t) * BLOCK + offs
        ax = tl.abs(tl.load(x_ptr + idx, mask=idx < n, other=0.0).to(tl.float32))
        # NaN fails the comparison, so NaN and Inf both count as 0
        acc = tl.maximum(acc, tl.where(ax < float("inf"), ax, 0.0))
        top = tl.maximum(top, ax.to(tl.int32, bitcast=True))
    tl.atomic_max(amax_ptr, tl.max(acc, axis=0))
    if tl.max(top, axis=0) >= 0x7F800000:
        tl.store(amax_ptr + 1, 1.0)


@triton.jit
def nvfp4_quantize_kernel(
    x_ptr, amax_ptr, global_ptr, data_ptr, scale_ptr,
    n_groups, cols, tiles_n, cols_magic, cols_shift,
    GROUPS: tl.constexpr, FP16: tl.constexpr, INTERPRETED: tl.constexpr,
):
    # x and the packed codes are read / written as int32 words (two inputs, eight codes): a
    # thread owns whole 16-element groups (two 16-byte loads of four words each), so the block
    # amax, the scale and every packed word stay in its registers.
    pid = tl.program_id(0)
    amax = tl.load(amax_ptr)
    # amax / 2688 through float64: the product is within 2^-51 of the quotient, and a float32
    # quotient of a float32 by 2^7 * 21 is never within 2^-29 of a float32 rounding boundary,
    # so rounding it to float32 gives the correctly rounded division (no division instruction)
    g = tl.where(amax > 0, (amax.to(tl.float64) * tl.full([], 1.0 / 2688.0, tl.float64)).to(tl.float32), 1.0)
    if pid == 0:
        tl.store(global_ptr, g)
    # The exact divisions below need their divisors within [2^-95, 2^73]; divisors are
    # e4m3 * global with e4m3 in [2^-9, 448], so an extreme global scale rescales the
    # magnitudes and the divisors by a power of two (exact where it matters, same quotients).
    rescale = tl.where(g < 5.421010862427522e-20, 1.8446744073709552e19,
                       tl.where(g > 1.8446744073709552e19, 5.421010862427522e-20, 1.0))
    six_g = (6.0 * g) * rescale
    six_g_hi, six_g_lo = _rcp_pair(six_g, INTERPRETED)

    grp = pid * GROUPS + tl.arange(0, GROUPS)
    grp_ok = grp < n_groups
    word = grp.to(tl.int64)[:, None] * 8 + tl.arange(0, 4)[None, :]
    w0 = tl.load(x_ptr + word, mask=grp_ok[:, None], other=0)
    w1 = tl.load(x_ptr + word + 4, mask=grp_ok[:, None], other=0)
    if (tl.load(amax_ptr + 1) != 0) | (rescale != 1.0):  # uniform, and rare
        w0 = _sanitize_words(w0, rescale, FP16)
        w1 = _sanitize_words(w1, rescale, FP16)
    a0_lo, a0_hi = _unpack_pair(w0, FP16)
    a1_lo, a1_hi = _unpack_pair(w1, FP16)
    # a NaN element counts as 0 in the block amax and encodes as +0
    bamax = tl.max(tl.maximum(tl.maximum(a0_lo, a0_hi), tl.maximum(a1_lo, a1_hi)), axis=1)
    # (bamax * rescale) / (6g * rescale) is bamax / 6g; where the rescaled amax underflowed
    # both quotients are far below the smallest E4M3 scale. An Inf amax gives a NaN quotient,
    # which the min (as min.f32) turns into 448.
    s = _quotient(bamax, 0.0 - six_g, six_g_hi, six_g_lo, INTERPRETED)
    if INTERPRETED:
        s = tl.where(s == s, s, 448.0)
    scale_bits, scale_val = _e4m3_rne(tl.minimum(s, 448.0))
    divisor = scale_val * g
    d = tl.where(divisor == 0, 1.0, divisor * rescale)
    # a zero divisor gives zero codes: y = 0 makes every quotient 0
    y_hi, y_lo = _rcp_pair(d, INTERPRETED)
    y_hi = tl.where(divisor == 0, 0.0, y_hi)
    y_lo = tl.where(divisor == 0, 0.0, y_lo)
    p0 = _pack_half_group(a0_lo, a0_hi, w0, 0.0 - d, y_hi, y_lo, INTERPRETED)
    p1 = _pack_half_group(a1_lo, a1_hi, w1, 0.0 - d, y_hi, y_lo, INTERPRETED)
    out = grp.to(tl.int64)[:, None] * 2 + tl.arange(0, 2)[None, :]
    tl.store(data_ptr + out, tl.join(p0, p1), mask=grp_ok[:, None])

    # padding bytes of the 128x4 layout are zeroed by the launcher
    r, c = _row_col(grp, cols, cols_magic, cols_shift)
    tl.store(scale_ptr + _swizzle_offset(r, c, tiles_n), scale_bits.to(tl.uint8), mask=grp_ok)


@triton.jit
def _e2m1_pair_values(byte):
    """Packed byte (int32 0..255, two E2M1 codes) -> (low, high) code values times 2^-14, float32.

    A code's sign and magnitude bits moved to an FP16's sign and exponent/mantissa top bits give
    the code's value times 2^-14, the subnormal 0.5 included; two multiplies spread both codes of
    the byte into the two halves of one word (the partial products never overlap)."""
    halves = ((byte * 0x00200200) & 0x0E000E00) | ((byte * 0x01001000) & -2147450880)  # 0x80008000
    lo = halves.to(tl.int16).to(tl.float16, bitcast=True).to(tl.float32)
    hi = (halves >> 16).to(tl.int16).to(tl.float16, bitcast=True).to(tl.float32)
    return lo, hi


@triton.jit
def nvfp4_dequantize_kernel(
    data_ptr, scale_ptr, global_ptr, out_ptr,
    n_groups, cols, tiles_n, cols_magic, cols_shift,
    WORDS: tl.constexpr, APPLY_GLOBAL: tl.constexpr, INTERPRETED: tl.constexpr,
):
    # A tile row is one 4-byte word of packed codes (half a group) -> 8 BF16 = one 16-byte
    # store; reading it as 4 bytes keeps the load in the store's layout (one row per thread).
    pid = tl.program_id(0)
    word = pid * WORDS + tl.arange(0, WORDS)
    word_ok = word < n_groups * 2
    packed = tl.load(data_ptr + word.to(tl.int64)[:, None] * 4 + tl.arange(0, 4)[None, :],
                     mask=word_ok[:, None], other=0).to(tl.int32)
    lo, hi = _e2m1_pair_values(packed)
    vals = tl.reshape(tl.join(lo, hi), [WORDS, 8])  # element 2k + j is byte k's nibble j
    r, c = _row_col(word >> 1, cols, cols_magic, cols_shift)
    scale_bits = tl.load(scale_ptr + _swizzle_offset(r, c, tiles_n), mask=word_ok, other=0)
    if INTERPRETED:
        scale = _e4m3_value(scale_bits.to(tl.int32))  # the interpreter decodes 0x7F as 480, not NaN
    else:
        scale = scale_bits.to(tl.float8e4nv, bitcast=True).to(tl.float32)  # cvt e4m3 -> f16, exact
    # (e2m1 * 2^-14) * (scale * 2^14) is the exact e2m1 * scale
    out = vals * (scale * 16384.0)[:, None]
    if APPLY_GLOBAL:
        out = out * tl.load(global_ptr)
    if INTERPRETED:
        out = _to_bf16_rne(out)
    else:
        out = out.to(tl.bfloat16)  # cvt.rn
    tl.store(out_ptr + word.to(tl.int64)[:, None] * 8 + tl.arange(0, 8)[None, :], out, mask=word_ok[:, None])


# ---- launch configs (deterministic; every pick is listed in gate_cases) ----

# (16-element groups per program, num_warps) of the quantize pass and (int32 code words
# per program, num_warps) of the dequantize pass; the first entry is the default.
# `MSA_NVFP4_CONFIG="q=512x8,d=2048x8"` picks others (benchmarks/sweep_nvfp4.py);
# a pick outside these gated lists raises.
QUANTIZE_CONFIGS = ((256, 4), (512, 8), (128, 4))
DEQUANTIZE_CONFIGS = ((2048, 8), (1024, 4), (512, 4))
QUANTIZE_CONFIG = QUANTIZE_CONFIGS[0]
DEQUANTIZE_CONFIG = DEQUANTIZE_CONFIGS[0]
ENV_OVERRIDE = "MSA_NVFP4_CONFIG"


def _parse_override(text):
    picks = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, _, val = item.partition("=")
        tile, _, warps = val.partition("x")
        picks[key.strip()] = (int(tile), int(warps))
    return picks


def launch_configs(override=None):
    """((quantize groups, warps), (dequantize words, warps)) from `override` or the env var."""
    text = override if override is not None else os.environ.get(ENV_OVERRIDE, "")
    try:
        picks = _parse_override(text) if text else {}
    except ValueError:
        picks = {"invalid": None}
    quant = picks.pop("q", QUANTIZE_CONFIG)
    dequant = picks.pop("d", DEQUANTIZE_CONFIG)
    if picks or quant not in QUANTIZE_CONFIGS or dequant not in DEQUANTIZE_CONFIGS:
        raise ValueError(
            f"{ENV_OVERRIDE}={text!r}: expected 'q=GROUPSxWARPS,d=WORDSxWARPS' with q in "
            f"{QUANTIZE_CONFIGS} and d in {DEQUANTIZE_CONFIGS}"
        )
    return quant, dequant


def division_magic(cols):
    """(magic, shift) with grp // cols == umulhi(2 * grp, magic) >> shift for 0 <= grp < 2^31;
    magic is passed as the int32 with the same bits."""
    shift = (cols - 1).bit_length()
    # magic * cols - 2^(31 + shift) lies in [0, cols) and cols <= 2^shift, which keeps the
    # quotient exact for 31-bit dividends (Granlund-Montgomery); magic fits 32 bits.
    magic = -(-(1 << (31 + shift)) // cols)
    return magic - (1 << 32) if magic >= 1 << 31 else magic, shift


def amax_grid(n):
    tiles = triton.cdiv(n, AMAX_BLOCK)
    tiles_per_program = triton.cdiv(tiles, AMAX_MAX_PROGRAMS)
    return triton.cdiv(tiles, tiles_per_program), tiles_per_program


_PTR_TYPES = {"bf16": "*bf16", "fp16": "*fp16"}


def gate_cases():
    # Integer args are specialised at launch when divisible by 16; both variants are gated.
    cases = []
    for aligned in ((), ("n_groups",)):
        tag = ",n16" if aligned else ""
        for tname, ptr in _PTR_TYPES.items():
            if not aligned:
                cases.append(GateCase(
                    name=f"nvfp4_amax[{tname}]", fn=nvfp4_amax_kernel,
                    signature={"x_ptr": ptr, "amax_ptr": "*fp32", "n": "i64", "tiles_per_program": "i32",
                               "BLOCK": "constexpr"},
                    constexprs={"BLOCK": AMAX_BLOCK}, num_warps=NUM_WARPS, aligned_ints=("n",),
                ))
            for groups, warps in QUANTIZE_CONFIGS:
                case = GateCase(
                    name=f"nvfp4_quantize[{tname},G{groups},w{warps}{tag}]", fn=nvfp4_quantize_kernel,
                    signature={"x_ptr": "*i32", "amax_ptr": "*fp32", "global_ptr": "*fp32", "data_ptr": "*i32",
                               "scale_ptr": "*u8", "n_groups": "i32", "cols": "i32", "tiles_n": "i32",
                               "cols_magic": "i32", "cols_shift": "i32", "GROUPS": "constexpr",
                               "FP16": "constexpr", "INTERPRETED": "constexpr"},
                    constexprs={"GROUPS": groups, "FP16": tname == "fp16", "INTERPRETED": False},
                    num_warps=warps, aligned_ints=aligned,
                )
                cases += [case] + ([_ones_variant(case)] if not aligned and (groups, warps) == QUANTIZE_CONFIG else [])
        for words, warps in DEQUANTIZE_CONFIGS:
            for apply_global in (True, False):
                case = GateCase(
                    name=f"nvfp4_dequantize[bf16,W{words},w{warps},global={int(apply_global)}{tag}]",
                    fn=nvfp4_dequantize_kernel,
                    signature={"data_ptr": "*u8", "scale_ptr": "*u8", "global_ptr": "*fp32", "out_ptr": "*bf16",
                               "n_groups": "i32", "cols": "i32", "tiles_n": "i32", "cols_magic": "i32",
                               "cols_shift": "i32", "WORDS": "constexpr", "APPLY_GLOBAL": "constexpr",
                               "INTERPRETED": "constexpr"},
                    constexprs={"WORDS": words, "APPLY_GLOBAL": apply_global, "INTERPRETED": False},
                    num_warps=warps, aligned_ints=aligned,
                )
                cases += [case] + ([_ones_variant(case)] if not aligned and (words, warps) == DEQUANTIZE_CONFIG else [])
    return cases


# A launch also turns an integer argument equal to 1 into a compile-time constant (a D = 32
# tensor has cols_shift 1): the default configs are gated with the small-shape ones as well.
_ONES = {"n_groups": 1, "cols": 1, "tiles_n": 1, "cols_shift": 1}


def _ones_variant(case):
    signature = dict(case.signature, **{k: "constexpr" for k in _ONES})
    return dataclasses.replace(case, name=case.name[:-1] + ",ones]", signature=signature,
                               constexprs=dict(case.constexprs, **_ONES))
