"""NVFP4 (E2M1 codes, E4M3 block scales of 16, FP32 global scale): the exact recipe.

Every step is float32 arithmetic in this order, and the Triton kernels repeat it
bit for bit:
  amax   = max |x| over finite elements (NaN and +-Inf count as 0)
  global = amax / 2688, or 1.0 when amax == 0                      (2688 = 448 * 6)
  per 16-block: bamax = max |x| over the block (NaN counts as 0, Inf stays Inf)
           scale = e4m3_rne(clamp(bamax / (6 * global), 0, 448))
           v     = x / (float(scale) * global)
           code  = rne_e2m1(|v|) saturating at 6, ties to even; 0 when the divisor is 0
Sign: bit 3 is the sign bit of x (so -0.0 and negative values that round to zero
give 0x8, as the hardware cvt does); a NaN element gives code 0x0.
Packing: element 2i in the low nibble, 2i+1 in the high nibble.
Value = e2m1 * e4m3(scale) * global, multiplied in that order.

Rows are all leading dims flattened (rows = numel / D, cols = D / 16), so a K cache
`[T, Hkv, D]` has scale row `t*Hkv + g` and a paged cache `[P, Hkv, page, D]` has
`(p*Hkv + g)*page + slot`.
"""
import torch

E2M1_VALUES = torch.tensor(
    [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0],
    dtype=torch.float32,
)
FP4_MAX = 6.0
E4M3_MAX = 448.0
GLOBAL_DIVISOR = FP4_MAX * E4M3_MAX  # 2688
BLOCK = 16

# |v| strictly above (True) or at-or-above (False) each threshold adds one to the code:
# the at-or-above ones are the ties that round up to an even code (0.75->1, 1.75->2, 3.5->4).
E2M1_THRESHOLDS = ((0.25, True), (0.75, False), (1.25, True), (1.75, False), (2.5, True), (3.5, False), (5.0, True))


def round_up(n, m):
    return (n + m - 1) // m * m


def swizzle_offset(rows_idx, cols_idx, cols):
    """Byte offset of logical scale (r, c) in the 128x4 layout (ints or integer tensors)."""
    tiles_n = round_up(cols, 4) // 4
    r, c = rows_idx, cols_idx
    return ((r // 128) * tiles_n + c // 4) * 512 + (r % 32) * 16 + ((r % 128) // 32) * 4 + c % 4


def _logical_index_grid(rows, cols, device):
    r = torch.arange(rows, device=device, dtype=torch.int64).unsqueeze(1)
    c = torch.arange(cols, device=device, dtype=torch.int64).unsqueeze(0)
    return swizzle_offset(r, c, cols).reshape(-1)


def swizzle_scales_reference(scale, rows=None, cols=None):
    """Logical scales [rows, cols] uint8 -> flat uint8 [Rp*Cp] in the 128x4 layout, padding 0."""
    rows = scale.shape[0] if rows is None else rows
    cols = scale.shape[-1] if cols is None else cols
    flat = torch.zeros(round_up(rows, 128) * round_up(cols, 4), dtype=torch.uint8, device=scale.device)
    flat[_logical_index_grid(rows, cols, scale.device)] = scale.reshape(-1).to(torch.uint8)
    return flat


def unswizzle_scales_reference(flat, rows, cols):
    """Inverse of `swizzle_scales_reference`: flat 128x4 bytes -> logical [rows, cols]."""
    return flat.reshape(-1)[_logical_index_grid(rows, cols, flat.device)].reshape(rows, cols)


def global_scale_reference(x):
    """FP32 [1] global scale of x (finite amax / 2688, 1.0 when the amax is 0)."""
    ax = x.float().abs()
    amax = torch.where(torch.isfinite(ax), ax, torch.zeros_like(ax)).amax() if ax.numel() else ax.new_zeros(())
    return torch.where(amax > 0, amax / GLOBAL_DIVISOR, torch.ones_like(amax)).reshape(1)


def e4m3_rne(s):
    """float32 -> (E4M3 bit pattern uint8, its float32 value); s must already be in [0, 448]."""
    s8 = s.to(torch.float8_e4m3fn)
    return s8.view(torch.uint8), s8.float()


def rne_e2m1_magnitude(v):
    """|v| (float32, may be NaN/Inf) -> E2M1 magnitude code 0..7 (NaN -> 0, saturating at 6)."""
    code = torch.zeros(v.shape, dtype=torch.uint8, device=v.device)
    for threshold, strict in E2M1_THRESHOLDS:
        code += (v > threshold if strict else v >= threshold).to(torch.uint8)
    return code


def quantize_nvfp4_reference(x, global_scale=None):
    """x [..., D] (D % 16 == 0) -> (data uint8 [..., D/2], scale_128x4 uint8 flat, global fp32 [1], (rows, cols)).

    `global_scale` (fp32 [1]) overrides the one computed from x.
    """
    d = x.shape[-1]
    rows, cols = x.numel() // d, d // BLOCK
    g = global_scale_reference(x) if global_scale is None else global_scale.float().reshape(1)
    xb = x.float().reshape(rows, cols, BLOCK)
    ax = xb.abs()
    bamax = torch.where(torch.isnan(ax), torch.zeros_like(ax), ax).amax(-1)
    s = torch.clamp(bamax / (FP4_MAX * g), 0.0, E4M3_MAX)
    scale_bits, scale_val = e4m3_rne(s)
    divisor = (scale_val * g).unsqueeze(-1)
    mag = rne_e2m1_magnitude((xb / divisor).abs())
    mag = torch.where(divisor == 0, torch.zeros_like(mag), mag)
    sign = torch.signbit(xb) & ~torch.isnan(xb)
    codes = mag | (sign.to(torch.uint8) << 3)
    codes = codes.reshape(rows, d // 2, 2)
    data = (codes[..., 0] | (codes[..., 1] << 4)).reshape(*x.shape[:-1], d // 2)
    return data, swizzle_scales_reference(scale_bits, rows, cols), g, (rows, cols)


def unpack_e2m1(data):
    """Packed uint8 [..., D/2] -> E2M1 values float32 [..., D]."""
    lo = (data & 0x0F).long()
    hi = (data >> 4).long()
    table = E2M1_VALUES.to(data.device)
    return torch.stack((table[lo], table[hi]), dim=-1).reshape(*data.shape[:-1], data.shape[-1] * 2)


def dequantize_nvfp4_reference(data, scale_128x4, global_scale, rows, cols, include_global_scale=True):
    """Packed codes + 128x4 scales (+ global) -> float32 [..., D], value = (e2m1 * scale) * global."""
    vals = unpack_e2m1(data).reshape(rows, cols, BLOCK)
    scale = unswizzle_scales_reference(scale_128x4, rows, cols).view(torch.float8_e4m3fn).float()
    out = vals * scale.unsqueeze(-1)
    if include_global_scale:
        out = out * global_scale.float().reshape(1)
    return out.reshape(*data.shape[:-1], data.shape[-1] * 2)
