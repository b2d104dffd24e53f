"""NVFP4 128x4 quantize / dequantize kernels, bit-exact with `reference/nvfp4.py`.

Three memory-bound passes: a finite-amax reduction into a device scalar (no host sync),
a quantize pass (x -> packed E2M1 codes + swizzled E4M3 scales, global scale derived
in-kernel from the amax), and a dequantize pass (codes + scales -> BF16). Quantize and
dequantize walk the tensor as a flat list of 16-element groups (rows x cols, row-major),
so every data access is contiguous and vectorises whatever D is; only the one scale byte
per group is gathered through the 128x4 swizzle.

Divisions use `tl.math.div_rn` (plain `/` is approximate on the GPU) and E4M3 rounding
and the BF16 output rounding are done with integer arithmetic, because the interpreter's
fp8 and bf16 casts do not round to nearest even; both keep the kernels bit-exact with
torch's float32 reference on the GPU and under the interpreter.
"""
import os

import triton
import triton.language as tl

from .gate import GateCase

GLOBAL_DIVISOR = tl.constexpr(2688.0)  # 448 * 6
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
    """E2M1 code (int32, 0..15) -> float32 value (0x8 -> -0.0), integer ops only."""
    mag = nibble & 7
    # mag >= 2 is normal: exponent mag>>1 and mantissa bit mag&1 line up as (mag << 22) + 0.5's bits;
    # mag 0/1 are 0.0 and the subnormal 0.5
    bits = tl.where(mag < 2, mag * 0x3F000000, (mag << 22) + 0x3F000000)
    return (bits | ((nibble & 8) << 28)).to(tl.float32, bitcast=True)


@triton.jit
def _e2m1_rne_magnitude(v):
    """float32 v >= 0 (not NaN, may be Inf) -> E2M1 magnitude code 0..7, ties to even, saturating."""
    bits = v.to(tl.int32, bitcast=True)
    # v >= 1: round the mantissa to one bit (carries enter the exponent); code = 2*(exp-126) + mbit
    normal = tl.minimum(((bits + 0x1FFFFF + ((bits >> 22) & 1)) >> 22) - 252, 7)
    # v < 1: the grid 0, .5, 1 is the ulp of 2^22, so adding 2^22 rounds to it (nearest even)
    sub = (v + 4194304.0).to(tl.int32, bitcast=True) - 0x4A800000
    return tl.where(v < 1.0, sub, normal)


@triton.jit
def _to_bf16_rne(v):
    """float32 -> bf16 rounding to nearest even (the interpreter's cast truncates)."""
    bits = v.to(tl.int32, bitcast=True)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.to(tl.int16).to(tl.bfloat16, bitcast=True)


@triton.jit
def _scale_offset(group, cols, tiles_n):
    """Flat group index (row * cols + col) -> byte offset in the 128x4 scale layout."""
    r = group // cols
    c = group - r * cols
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
    n_groups, cols, tiles_n,
    GROUPS: tl.constexpr,
):
    # The tensor is walked as a flat list of 16-element groups (row-major over rows x cols),
    # so every access is contiguous and the per-group mask keeps 16-byte vector loads.
    pid = tl.program_id(0)
    amax = tl.load(amax_ptr)
    g = tl.where(amax > 0, tl.math.div_rn(amax, GLOBAL_DIVISOR), 1.0)
    if pid == 0:
        tl.store(global_ptr, g)

    grp = pid.to(tl.int64) * GROUPS + tl.arange(0, GROUPS)
    grp_ok = grp < n_groups
    x = tl.load(
        x_ptr + grp[:, None] * 16 + tl.arange(0, 16)[None, :], mask=grp_ok[:, None], other=0.0,
    ).to(tl.float32)
    # a NaN element counts as 0 in the block amax and encodes as +0
    x = tl.where(x == x, x, 0.0)
    bamax = tl.max(tl.abs(x), axis=1)
    s = tl.minimum(tl.maximum(tl.math.div_rn(bamax, 6.0 * g), 0.0), 448.0)
    scale_bits = _e4m3_rne_bits(s)
    divisor = _e4m3_value(scale_bits) * g
    safe_divisor = tl.where(divisor == 0, 1.0, divisor)
    mag = _e2m1_rne_magnitude(tl.math.div_rn(tl.abs(x), safe_divisor[:, None]))
    mag = tl.where(divisor[:, None] == 0, 0, mag)
    codes = mag | ((x.to(tl.int32, bitcast=True) >> 28) & 8)
    lo, hi = tl.split(tl.reshape(codes, [GROUPS, 8, 2]))
    tl.store(
        data_ptr + grp[:, None] * 8 + tl.arange(0, 8)[None, :], (lo | (hi << 4)).to(tl.uint8),
        mask=grp_ok[:, None],
    )
    # padding bytes of the 128x4 layout are zeroed by the launcher
    tl.store(scale_ptr + _scale_offset(grp.to(tl.int32), cols, tiles_n), scale_bits.to(tl.uint8), mask=grp_ok)


@triton.jit
def nvfp4_dequantize_kernel(
    words_ptr, scale_ptr, global_ptr, out_ptr,
    n_groups, cols, tiles_n,
    WORDS: tl.constexpr, APPLY_GLOBAL: tl.constexpr,
):
    # The packed codes are read as int32 words (8 codes, half a group); a tile row is one word
    # -> 8 BF16 = one 16-byte store, so the store keeps the layout the load produced.
    pid = tl.program_id(0)
    word = pid * WORDS + tl.arange(0, WORDS)
    word_ok = word < n_groups * 2
    packed = tl.load(words_ptr + word, mask=word_ok, other=0)
    vals = _e2m1_value((packed[:, None] >> (tl.arange(0, 8) * 4)[None, :]) & 15)
    scale_bits = tl.load(scale_ptr + _scale_offset(word // 2, cols, tiles_n), mask=word_ok, other=0)
    out = vals * _e4m3_value(scale_bits.to(tl.int32))[:, None]
    if APPLY_GLOBAL:
        out = out * tl.load(global_ptr)
    tl.store(
        out_ptr + word.to(tl.int64)[:, None] * 8 + tl.arange(0, 8)[None, :], _to_bf16_rne(out),
        mask=word_ok[:, None],
    )


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
                cases.append(GateCase(
                    name=f"nvfp4_quantize[{tname},G{groups},w{warps}{tag}]", fn=nvfp4_quantize_kernel,
                    signature={"x_ptr": ptr, "amax_ptr": "*fp32", "global_ptr": "*fp32", "data_ptr": "*u8",
                               "scale_ptr": "*u8", "n_groups": "i32", "cols": "i32", "tiles_n": "i32",
                               "GROUPS": "constexpr"},
                    constexprs={"GROUPS": groups}, num_warps=warps, aligned_ints=aligned,
                ))
        for words, warps in DEQUANTIZE_CONFIGS:
            for apply_global in (True, False):
                cases.append(GateCase(
                    name=f"nvfp4_dequantize[bf16,W{words},w{warps},global={int(apply_global)}{tag}]",
                    fn=nvfp4_dequantize_kernel,
                    signature={"words_ptr": "*i32", "scale_ptr": "*u8", "global_ptr": "*fp32", "out_ptr": "*bf16",
                               "n_groups": "i32", "cols": "i32", "tiles_n": "i32", "WORDS": "constexpr",
                               "APPLY_GLOBAL": "constexpr"},
                    constexprs={"WORDS": words, "APPLY_GLOBAL": apply_global},
                    num_warps=warps, aligned_ints=aligned,
                ))
    return cases
