"""NVFP4 128x4 helpers: the reference recipe, the swizzle, and the Triton kernels bit for bit."""
import importlib

import pytest
import torch
import triton
import triton.language as tl
from _pkg import HAS_CUDA, INTERPRET, TRITON_DEVICE, msa, needs_cuda, needs_triton

nvfp4 = importlib.import_module(msa.__name__ + ".nvfp4")
ref = importlib.import_module(msa.__name__ + ".reference.nvfp4")
kernels = importlib.import_module(msa.__name__ + ".triton_kernels.nvfp4")

NAN, INF = float("nan"), float("inf")
# Interpreter runs stay fp16 (its bf16 handling is not trustworthy); the GPU runs bf16.
INPUT_DTYPE = torch.bfloat16 if HAS_CUDA else torch.float16


def codes_of(data):
    """Packed uint8 [..., D/2] -> nibble codes [..., D] (low nibble first)."""
    return torch.stack((data & 15, data >> 4), dim=-1).reshape(*data.shape[:-1], -1)


def logical_scales(q):
    rows, cols = q.logical_scale_shape
    return ref.unswizzle_scales_reference(q.scale_128x4.cpu(), rows, cols)


def with_unit_global(row):
    """Prepend a row holding 2688 so the global scale is exactly 1.0."""
    anchor = torch.zeros(len(row))
    anchor[0] = 2688.0
    return torch.stack((anchor, torch.tensor(row, dtype=torch.float32))).to(torch.float16)


# ---------------------------------------------------------------- reference recipe

def test_e2m1_round_to_nearest_even_and_saturation():
    row = [6.0, 0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 0.2, 0.3, 1.3, 2.6, 3.4, 5.1, -0.75, -5.0]
    q = nvfp4.quantize_bf16_to_nvfp4_128x4(with_unit_global(row))
    assert q.global_scale.item() == 1.0
    assert logical_scales(q)[1, 0].item() == 0x38  # 6 / 6 = 1.0
    expected = [7, 0, 2, 2, 4, 4, 6, 6, 0, 1, 3, 5, 5, 7, 8 | 2, 8 | 6]
    assert codes_of(q.data)[1].tolist() == expected


def test_saturation_after_scale_rounds_down():
    # block amax 55.5 -> 55.5/6 = 9.25 -> E4M3 9, so 55.5/9 = 6.17 saturates to 6
    q = nvfp4.quantize_bf16_to_nvfp4_128x4(with_unit_global([55.5, -55.5] + [0.0] * 14))
    assert logical_scales(q)[1, 0].item() == 0x51  # 9.0 = 1.125 * 2^3
    assert codes_of(q.data)[1, :2].tolist() == [7, 15]
    out = nvfp4.dequantize_nvfp4_128x4_to_bf16(q)
    assert out[1, :2].tolist() == [54.0, -54.0]


def test_e4m3_scale_rounding_ties_subnormals_and_clamp():
    blocks = [
        [6 * 9.5] + [0.0] * 15,  # 9.5 ties to 10 (even mantissa) -> 0x52
        [6 * 1.5 * 2**-9] + [0.0] * 15,  # subnormal tie 1.5 * 2^-9 -> 2 * 2^-9 -> 0x02
        [6 * 2**-9] + [0.0] * 15,  # smallest subnormal -> 0x01
        [6 * 0.4 * 2**-9] + [0.0] * 15,  # below half the smallest subnormal -> 0
    ]
    x = with_unit_global(sum(blocks, []))
    scales = logical_scales(nvfp4.quantize_bf16_to_nvfp4_128x4(x))
    assert scales[0, 0].item() == 0x7E  # the amax block: 2688 / 6 = 448
    assert scales[1].tolist() == [0x52, 0x02, 0x01, 0x00]


def test_zero_block_nan_and_signed_zero():
    x = torch.zeros(2, 32, dtype=torch.float16)
    x[0, 16:] = torch.tensor([NAN, -0.0, 0.0, 3.0, -3.0] + [0.0] * 11, dtype=torch.float16)
    x[1, :16] = -0.0
    q = nvfp4.quantize_bf16_to_nvfp4_128x4(x)
    # NaN is ignored by the amax: the global comes from 3.0
    assert q.global_scale.item() == torch.tensor(3.0 / 2688, dtype=torch.float32).item()
    codes = codes_of(q.data)
    scales = logical_scales(q)
    assert scales[0, 0].item() == 0 and codes[0, :16].tolist() == [0] * 16  # all-zero block
    assert codes[0, 16:21].tolist() == [0, 8, 0, 7, 15]  # NaN -> 0, -0.0 keeps its sign
    assert scales[1, 0].item() == 0 and codes[1, :16].tolist() == [8] * 16  # zero scale keeps signs
    out = nvfp4.dequantize_nvfp4_128x4_to_bf16(q)
    assert torch.signbit(out[0, 17]) and out[0, 17] == 0 and out[0, 16] == 0
    assert not torch.isnan(out).any()


def test_all_zero_and_empty_inputs():
    q = nvfp4.quantize_bf16_to_nvfp4_128x4(torch.zeros(3, 64, dtype=torch.bfloat16))
    assert q.global_scale.tolist() == [1.0]
    assert not q.data.any() and not q.scale_128x4.any()
    assert q.scale_128x4.numel() == 128 * 4
    e = nvfp4.quantize_bf16_to_nvfp4_128x4(torch.zeros(0, 4, 32, dtype=torch.bfloat16))
    assert e.data.shape == (0, 4, 16) and e.scale_128x4.numel() == 0 and e.global_scale.tolist() == [1.0]
    assert nvfp4.dequantize_nvfp4_128x4_to_bf16(e).shape == (0, 4, 32)


def test_inf_saturates():
    x = torch.tensor([[INF, -INF, 1.0] + [0.0] * 13], dtype=torch.float16)
    q = nvfp4.quantize_bf16_to_nvfp4_128x4(x)
    assert q.global_scale.item() == torch.tensor(1.0 / 2688).item()  # Inf excluded from the amax
    assert logical_scales(q)[0, 0].item() == 0x7E
    assert codes_of(q.data)[0, :3].tolist() == [7, 15, 7]  # divisor 448 * g = 1/6, so 1.0 -> 6


def test_kv_cache_scale_rows_follow_flattened_rows():
    torch.manual_seed(0)
    k = torch.randn(5, 3, 64, dtype=torch.bfloat16)  # dense [T, Hkv, D]
    q = nvfp4.quantize_bf16_to_nvfp4_128x4(k)
    assert q.logical_scale_shape == (15, 4) and q.data.shape == (5, 3, 32)
    scales = logical_scales(q)
    for t, g in ((0, 0), (2, 1), (4, 2)):
        d, s, _, _ = ref.quantize_nvfp4_reference(k[t, g][None], global_scale=q.global_scale)
        assert torch.equal(scales[t * 3 + g], ref.unswizzle_scales_reference(s, 1, 4)[0])
        assert torch.equal(q.data[t, g], d[0])
    paged = torch.randn(2, 2, 4, 32, dtype=torch.bfloat16)  # [P, Hkv, page, D]
    qp = nvfp4.quantize_bf16_to_nvfp4_128x4(paged)
    p, g, slot = 1, 0, 3
    _, s, _, _ = ref.quantize_nvfp4_reference(paged[p, g, slot][None], global_scale=qp.global_scale)
    assert torch.equal(logical_scales(qp)[(p * 2 + g) * 4 + slot], ref.unswizzle_scales_reference(s, 1, 2)[0])


def test_round_trip_error_within_quantization_bound():
    torch.manual_seed(1)
    x = (torch.randn(64, 256) * torch.logspace(-3, 2, 256)).to(torch.bfloat16)
    q = nvfp4.quantize_bf16_to_nvfp4_128x4(x)
    out = nvfp4.dequantize_nvfp4_128x4_to_bf16(q).float()
    step = logical_scales(q).view(torch.float8_e4m3fn).float() * q.global_scale  # one E2M1 unit
    # rounding error <= half the widest gap (1 unit); beyond that only saturation (|x| - 6 units),
    # which normal E4M3 scales keep under 0.375 unit, plus the bf16 output rounding
    step = step.repeat_interleave(16, dim=1)
    bound = torch.maximum(step, x.float().abs() - 6 * step) + out.abs() * 2**-8
    assert ((out - x.float()).abs() <= bound).all()
    normal_scale = step >= 2.0**-6 * q.global_scale
    assert normal_scale.float().mean() > 0.5
    assert ((out - x.float()).abs() <= step + out.abs() * 2**-8)[normal_scale].all()
    rel = (out - x.float()).norm() / x.float().norm()
    assert rel < 0.12
    # include_global_scale=False leaves exactly the global factor out
    raw = nvfp4.dequantize_nvfp4_128x4_to_bf16(q, include_global_scale=False).float()
    assert torch.allclose(raw * q.global_scale, out, rtol=2**-7, atol=0)


def test_quantize_kv_uses_independent_global_scales():
    k = torch.full((4, 32), 2.0, dtype=torch.bfloat16)
    v = torch.full((4, 32), -8.0, dtype=torch.bfloat16)
    qk, qv = nvfp4.quantize_kv_bf16_to_nvfp4_128x4(k, v)
    assert qk.global_scale.item() == torch.tensor(2.0 / 2688).item()
    assert qv.global_scale.item() == torch.tensor(8.0 / 2688).item()
    assert torch.equal(nvfp4.dequantize_nvfp4_128x4_to_bf16(qv), v)
    assert torch.equal(nvfp4.dequantize_nvfp4_128x4_to_bf16(qk), k)


def test_global_scale_from_amax():
    assert nvfp4.nvfp4_global_scale_from_amax(torch.tensor(2688.0, dtype=torch.bfloat16)).item() == 1.0
    g = nvfp4.nvfp4_global_scale_from_amax(torch.tensor([5.0]))
    assert g.dtype == torch.float32 and g.item() == torch.tensor(5.0 / 2688).item()


# ---------------------------------------------------------------- 128x4 swizzle

def test_swizzle_offset_formula():
    cols = 6  # tiles_n = 2
    cases = {(0, 0): 0, (0, 1): 1, (0, 3): 3, (0, 4): 512, (1, 0): 16, (31, 0): 496, (32, 0): 4,
             (96, 3): 15, (128, 0): 1024, (129, 5): 1024 + 512 + 16 + 1}
    for (r, c), off in cases.items():
        assert ref.swizzle_offset(r, c, cols) == off


@pytest.mark.parametrize("rows,cols", [(1, 1), (129, 5), (300, 13), (128, 4), (7, 8)])
def test_swizzle_round_trip_and_zero_padding(rows, cols):
    torch.manual_seed(rows * 31 + cols)
    scale = torch.randint(1, 255, (rows, cols), dtype=torch.uint8)
    flat = nvfp4.swizzle_nvfp4_scale_to_128x4(scale, rows=rows, cols=cols)
    assert flat.shape == (((rows + 127) // 128 * 128) * ((cols + 3) // 4 * 4),)
    assert torch.equal(nvfp4.unswizzle_nvfp4_scale_from_128x4(flat, rows=rows, cols=cols), scale)
    assert int((flat != 0).sum()) == rows * cols  # everything else is zero padding
    fp8 = nvfp4.swizzle_nvfp4_scale_to_128x4(scale.view(torch.float8_e4m3fn), rows=rows, cols=cols)
    assert torch.equal(fp8, flat)


# ---------------------------------------------------------------- bad input

def test_bad_inputs_raise():
    with pytest.raises(TypeError, match="x"):
        nvfp4.quantize_bf16_to_nvfp4_128x4(torch.zeros(4, 32))
    with pytest.raises(ValueError, match="x"):
        nvfp4.quantize_bf16_to_nvfp4_128x4(torch.zeros(32, dtype=torch.bfloat16))
    with pytest.raises(ValueError, match="multiple of 16"):
        nvfp4.quantize_bf16_to_nvfp4_128x4(torch.zeros(4, 24, dtype=torch.bfloat16))
    with pytest.raises(TypeError, match="x"):
        nvfp4.quantize_bf16_to_nvfp4_128x4([[1.0] * 16])
    with pytest.raises(TypeError, match="v"):
        nvfp4.quantize_kv_bf16_to_nvfp4_128x4(torch.zeros(2, 16, dtype=torch.bfloat16), torch.zeros(2, 16))
    with pytest.raises(TypeError, match="qx"):
        nvfp4.dequantize_nvfp4_128x4_to_bf16(torch.zeros(2, 8, dtype=torch.uint8))
    q = nvfp4.quantize_bf16_to_nvfp4_128x4(torch.ones(2, 32, dtype=torch.bfloat16))
    bad_scale = nvfp4.Nvfp4QuantizedTensor(q.data, q.scale_128x4[:-1], q.global_scale,
                                           q.logical_scale_shape, q.original_shape)
    with pytest.raises(ValueError, match="scale_128x4"):
        nvfp4.dequantize_nvfp4_128x4_to_bf16(bad_scale)
    bad_shape = nvfp4.Nvfp4QuantizedTensor(q.data, q.scale_128x4, q.global_scale, (2, 3), q.original_shape)
    with pytest.raises(ValueError, match="logical_scale_shape"):
        nvfp4.dequantize_nvfp4_128x4_to_bf16(bad_shape)
    bad_data = nvfp4.Nvfp4QuantizedTensor(q.data.view(torch.int8), q.scale_128x4, q.global_scale,
                                          q.logical_scale_shape, q.original_shape)
    with pytest.raises(TypeError, match="qx.data"):
        nvfp4.dequantize_nvfp4_128x4_to_bf16(bad_data)
    with pytest.raises(ValueError, match="scale"):
        nvfp4.swizzle_nvfp4_scale_to_128x4(torch.zeros(3, 4, dtype=torch.uint8), rows=3, cols=5)
    with pytest.raises(TypeError, match="scale"):
        nvfp4.swizzle_nvfp4_scale_to_128x4(torch.zeros(3, 4), rows=3, cols=4)
    with pytest.raises(ValueError, match="scale_128x4"):
        nvfp4.unswizzle_nvfp4_scale_from_128x4(torch.zeros(100, dtype=torch.uint8), rows=3, cols=4)
    with pytest.raises(TypeError, match="rows"):
        nvfp4.swizzle_nvfp4_scale_to_128x4(torch.zeros(3, 4, dtype=torch.uint8), rows=3.0, cols=4)


# ---------------------------------------------------------------- Triton kernels

def special_input(kind, shape, dtype, device):
    g = torch.Generator().manual_seed(sum(map(ord, kind)) + shape[0])
    x = torch.randn(shape, generator=g) * 2.5
    if kind == "constant":
        x = torch.full(shape, -1.375)
    elif kind == "zero":
        x = torch.zeros(shape)
    elif kind == "huge":
        x = x * 4000.0  # amax well above 2688
    elif kind == "special":
        flat = x.view(-1)
        flat[: 8] = torch.tensor([NAN, -0.0, 0.0, INF, -INF, 1e-7, -1e-7, 6e-5])
        flat[16:32] = 0.0  # a zero block
        flat[32:48] = -0.0
    elif kind == "ties":
        # exact E2M1 midpoints times a per-block power of two
        mids = torch.tensor([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 6.0])
        x = (mids.repeat(x.numel() // 8) * 2.0 ** torch.randint(-4, 4, (x.numel() // 8,), generator=g)
             .repeat_interleave(8)).reshape(shape)
        x.view(-1)[0] = 2688.0  # global scale exactly 1, so every divisor is a power of two
    return x.to(dtype).to(device)


def assert_matches_reference(x):
    q = nvfp4.quantize_bf16_to_nvfp4_128x4(x)
    d, s, g, (rows, cols) = ref.quantize_nvfp4_reference(x.cpu())
    assert q.logical_scale_shape == (rows, cols)
    assert torch.equal(q.global_scale.cpu(), g)
    assert torch.equal(q.scale_128x4.cpu(), s)
    assert torch.equal(q.data.cpu(), d)
    for include_global in (True, False):
        out = nvfp4.dequantize_nvfp4_128x4_to_bf16(q, include_global_scale=include_global)
        expect = ref.dequantize_nvfp4_reference(d, s, g, rows, cols, include_global_scale=include_global)
        assert out.dtype == torch.bfloat16 and out.shape == x.shape
        assert torch.equal(out.cpu().view(torch.int16), expect.to(torch.bfloat16).view(torch.int16))


@pytest.mark.triton
@needs_triton
@pytest.mark.parametrize("shape", [(1, 128), (257, 128), (3, 5, 48)])
@pytest.mark.parametrize("kind", ["random", "constant", "zero", "huge", "special", "ties"])
def test_triton_bit_exact_small(shape, kind):
    assert_matches_reference(special_input(kind, shape, INPUT_DTYPE, TRITON_DEVICE))


_e4m3_rne = kernels._e4m3_rne
_e4m3_value = kernels._e4m3_value
_to_bf16_rne = kernels._to_bf16_rne


@triton.jit
def _probe_kernel(x_ptr, e4m3_ptr, value_ptr, back_ptr, bf16_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(x_ptr + offs, mask=mask, other=0.0)
    bits, value = _e4m3_rne(tl.minimum(tl.abs(x), 448.0))
    tl.store(e4m3_ptr + offs, bits.to(tl.uint8), mask=mask)
    tl.store(value_ptr + offs, value, mask=mask)
    tl.store(back_ptr + offs, _e4m3_value(offs & 255), mask=mask)
    tl.store(bf16_ptr + offs, _to_bf16_rne(x), mask=mask)


@pytest.mark.triton
@needs_triton
def test_triton_e4m3_and_bf16_rounding_match_torch():
    values = torch.arange(0, 0x7F, dtype=torch.uint8).view(torch.float8_e4m3fn).float()
    mids = (values[1:] + values[:-1]) / 2
    g = torch.Generator().manual_seed(0)
    x = torch.cat([
        values, mids, torch.nextafter(mids, torch.zeros(())), torch.nextafter(mids, torch.full((), 1e4)),
        torch.rand(1500, generator=g) * 448, torch.rand(500, generator=g) * 0.02,
        torch.tensor([448.0, 2.0**-10, 3 * 2.0**-11, 1e-42, 1e-30, 3.0e38, -2.5, -1e-3]),
    ]).float()
    n = x.numel()
    e4m3 = torch.empty(n, dtype=torch.uint8, device=TRITON_DEVICE)
    value = torch.empty(n, dtype=torch.float32, device=TRITON_DEVICE)
    back = torch.empty(n, dtype=torch.float32, device=TRITON_DEVICE)
    bf16 = torch.empty(n, dtype=torch.bfloat16, device=TRITON_DEVICE)
    _probe_kernel[(triton.cdiv(n, 1024),)](x.to(TRITON_DEVICE), e4m3, value, back, bf16, n, BLOCK=1024)
    expect = x.abs().clamp(max=448.0).to(torch.float8_e4m3fn)
    assert torch.equal(e4m3.cpu(), expect.view(torch.uint8))
    assert torch.equal(value.cpu(), expect.float())
    byte_values = (torch.arange(n) & 255).to(torch.uint8).view(torch.float8_e4m3fn).float()
    assert torch.equal(back.cpu().view(torch.int32)[~byte_values.isnan()],
                       byte_values.view(torch.int32)[~byte_values.isnan()])
    assert back.cpu()[byte_values.isnan()].isnan().all()
    assert torch.equal(bf16.cpu().view(torch.int16), x.to(torch.bfloat16).view(torch.int16))


@triton.jit
def _e2m1_probe_kernel(v_ptr, code_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    code = kernels._e2m1_rne_magnitude(tl.load(v_ptr + offs, mask=mask, other=0.0))
    tl.store(code_ptr + offs, code.to(tl.uint8), mask=mask)


@pytest.mark.triton
@needs_triton
def test_triton_e2m1_rounding_matches_thresholds():
    edges = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 7.0, 8.0])
    g = torch.Generator().manual_seed(1)
    v = torch.cat([
        edges, torch.nextafter(edges, torch.zeros(())), torch.nextafter(edges, torch.full((), 1e9)),
        torch.rand(3000, generator=g) * 7, torch.rand(500, generator=g) * 1e-3,
        torch.tensor([1e-45, 1e-38, 100.0, 3.0e38, INF]),
    ]).float()
    codes = torch.empty(v.numel(), dtype=torch.uint8, device=TRITON_DEVICE)
    _e2m1_probe_kernel[(triton.cdiv(v.numel(), 1024),)](v.to(TRITON_DEVICE), codes, v.numel(), BLOCK=1024)
    assert torch.equal(codes.cpu(), ref.rne_e2m1_magnitude(v))


@triton.jit
def _division_probe_kernel(a_ptr, d_ptr, rcp_ptr, quot_ptr, n, BLOCK: tl.constexpr, INTERPRETED: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    a = tl.load(a_ptr + offs, mask=mask, other=1.0)
    d = tl.load(d_ptr + offs, mask=mask, other=1.0)
    y_hi, y_lo = kernels._rcp_pair(d, INTERPRETED)
    tl.store(rcp_ptr + offs, y_hi, mask=mask)
    tl.store(quot_ptr + offs, kernels._quotient(a, 0.0 - d, y_hi, y_lo, INTERPRETED), mask=mask)


def division_cases(n, seed):
    """Divisors over the range the quantize pass guarantees ([2^-95, 2^73]; all-ones and
    near-power-of-two mantissas included) and dividends whose quotients sit next to float32
    rounding boundaries near the E2M1 steps, or anywhere in [1/8, 16)."""
    g = torch.Generator().manual_seed(seed)
    mant = torch.randint(0, 1 << 23, (n,), generator=g)
    mant[:200] = (1 << 23) - 1 - torch.arange(200)
    mant[200:400] = torch.arange(200)
    d = ((torch.randint(-95, 74, (n,), generator=g) + 127) << 23 | mant).to(torch.int32).view(torch.float32)
    steps = torch.tensor([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 0.5, 1.0, 2.0, 4.0, 6.0])
    near = steps[torch.randint(0, len(steps), (n,), generator=g)].view(torch.int32)
    near = (near + torch.randint(-3, 4, (n,), generator=g, dtype=torch.int32)).view(torch.float32).double()
    near = near * (1 + 2.0**-24 * (torch.randint(0, 2, (n,), generator=g) * 2 - 1))
    target = torch.where(torch.rand(n, generator=g) < 0.7, near, 0.125 + torch.rand(n, generator=g).double() * 16)
    a = (target * d.double()).float()
    a[::2] = (a[::2].view(torch.int32) & -65536).view(torch.float32)  # BF16-precision dividends
    return a, d


@pytest.mark.triton
@needs_triton
def test_triton_exact_division_helpers():
    """The quantize pass divides without a division instruction: RN(1/d) from a 1-2 ulp seed and
    the FMA-corrected quotient must equal torch's correctly rounded division."""
    n = 1 << 15
    a, d = division_cases(n, 0)
    rcp = torch.empty(n, device=TRITON_DEVICE)
    quot = torch.empty(n, device=TRITON_DEVICE)
    _division_probe_kernel[(triton.cdiv(n, 1024),)](a.to(TRITON_DEVICE), d.to(TRITON_DEVICE), rcp, quot, n,
                                                    BLOCK=1024, INTERPRETED=INTERPRET)
    assert torch.equal(rcp.cpu(), 1.0 / d)
    want = a / d
    relevant = (want >= 0.125) & (want < 16)
    assert relevant.float().mean() > 0.9
    assert torch.equal(quot.cpu()[relevant], want[relevant])


def extreme_input(kind, shape):
    """BF16 inputs for the quantize pass's rescaled / sanitizing branch."""
    g = torch.Generator().manual_seed(sum(map(ord, kind)))
    lo, hi = {"tiny": (-133, -100), "huge": (90, 128), "wide": (-133, 128), "nan_inf": (-8, 8)}[kind]
    x = (1 + torch.rand(shape, generator=g)) * 2.0 ** torch.randint(lo, hi, shape, generator=g).float()
    # per-block scales next to E2M1 steps, as in the "ties" inputs
    x.view(-1, 16)[::3] *= torch.tensor([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 6.0] * 2) / 6
    x = x * (torch.randint(0, 2, shape, generator=g) * 2 - 1)
    if kind in ("nan_inf", "wide"):
        x.view(-1)[::97] = INF
        x.view(-1)[5::89] = -INF
        x.view(-1)[7::61] = NAN
    return x.to(torch.bfloat16)


@pytest.mark.triton
@needs_triton
@pytest.mark.parametrize("kind", ["tiny", "huge", "wide", "nan_inf"])
def test_triton_bf16_extremes_bit_exact(kind):
    """Global scales beyond 2^+-64 (power-of-two rescaling), subnormal BF16 inputs, NaN / Inf:
    the quantize pass reads BF16 as integer words, so the interpreter runs it in BF16 too."""
    assert_matches_reference(extreme_input(kind, (48, 128)).to(TRITON_DEVICE))


@pytest.mark.triton
@needs_triton
def test_triton_unaligned_views():
    """Quantize reads the input as int32 words and dequantize reads the codes as bytes: views
    starting at an odd element / byte still match the reference."""
    g = torch.Generator().manual_seed(3)
    base = torch.randn(1 + 6 * 64, generator=g).to(INPUT_DTYPE).to(TRITON_DEVICE)
    x = base[1:].view(6, 64)
    assert x.storage_offset() % 2 == 1
    assert_matches_reference(x)
    q = nvfp4.quantize_bf16_to_nvfp4_128x4(x)
    shifted = torch.empty(1 + q.data.numel(), dtype=torch.uint8, device=q.data.device)
    shifted[1:] = q.data.reshape(-1)
    moved = nvfp4.Nvfp4QuantizedTensor(shifted[1:].view(q.data.shape), q.scale_128x4, q.global_scale,
                                       q.logical_scale_shape, q.original_shape)
    assert torch.equal(nvfp4.dequantize_nvfp4_128x4_to_bf16(moved), nvfp4.dequantize_nvfp4_128x4_to_bf16(q))


def test_division_magic():
    """grp // cols == umulhi(2 * grp, magic) >> shift for every 31-bit grp."""
    g = torch.Generator().manual_seed(2)
    grp = torch.cat([torch.randint(0, 2**31, (4000,), generator=g), torch.tensor([0, 1, 2**31 - 1, 2**31 - 2])])
    for cols in list(range(1, 70)) + [127, 128, 129, 255, 448, 512, 1000, 4095, 4096, 65535, 2**20 + 7, 2**30 + 3]:
        magic, shift = kernels.division_magic(cols)
        assert -(2**31) <= magic < 2**31 and 0 <= shift <= 31
        g_cols = torch.cat([grp, torch.arange(1, 50) * cols - 1, torch.arange(1, 50) * cols])
        g_cols = g_cols[g_cols < 2**31]
        m = magic % 2**32  # umulhi(x, m) = x * m >> 32, split so nothing exceeds int64
        r = ((g_cols * 2 * (m >> 16) + ((g_cols * 2 * (m & 0xFFFF)) >> 16)) >> 16) >> shift
        assert torch.equal(r, g_cols // cols), cols


def test_gate_cases_cover_every_launch_config():
    cases = kernels.gate_cases()
    names = {c.name for c in cases}
    assert len(names) == len(cases)
    for tname in ("bf16", "fp16"):
        for groups, warps in kernels.QUANTIZE_CONFIGS:
            for tag in ("", ",n16"):
                assert f"nvfp4_quantize[{tname},G{groups},w{warps}{tag}]" in names
    for words, warps in kernels.DEQUANTIZE_CONFIGS:
        for apply_global in (0, 1):
            for tag in ("", ",n16"):
                assert f"nvfp4_dequantize[bf16,W{words},w{warps},global={apply_global}{tag}]" in names
    for case in cases:
        assert set(case.constexprs) <= set(case.signature)


def test_launch_config_override():
    assert kernels.launch_configs("") == (kernels.QUANTIZE_CONFIG, kernels.DEQUANTIZE_CONFIG)
    q, d = kernels.QUANTIZE_CONFIGS[1], kernels.DEQUANTIZE_CONFIGS[2]
    assert kernels.launch_configs(f"q={q[0]}x{q[1]}, d={d[0]}x{d[1]}") == (q, d)
    with pytest.raises(ValueError, match="MSA_NVFP4_CONFIG"):
        kernels.launch_configs("q=3x4")
    with pytest.raises(ValueError, match="MSA_NVFP4_CONFIG"):
        kernels.launch_configs("z=256x4")


# ---------------------------------------------------------------- GPU

@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("shape", [(64, 4096), (4096, 4, 128), (8, 4, 128, 128), (1000, 80), (3, 7168)])
@pytest.mark.parametrize("kind", ["random", "special", "ties", "huge"])
def test_gpu_bit_exact(shape, kind):
    assert_matches_reference(special_input(kind, shape, torch.bfloat16, "cuda"))


@pytest.mark.sanitize
@pytest.mark.gpu
@needs_cuda
@pytest.mark.kernels_ci
def test_gpu_fp16_bit_exact():
    assert_matches_reference(special_input("random", (300, 256), torch.float16, "cuda"))


@pytest.mark.gpu
@needs_cuda
def test_gpu_compile_and_cuda_graph():
    x = torch.randn(512, 4, 128, device="cuda", dtype=torch.bfloat16)
    expect = nvfp4.dequantize_nvfp4_128x4_to_bf16(nvfp4.quantize_bf16_to_nvfp4_128x4(x))

    def round_trip(t):
        q = nvfp4.quantize_bf16_to_nvfp4_128x4(t)
        return nvfp4.dequantize_nvfp4_128x4_to_bf16(q), q.global_scale

    compiled = torch.compile(round_trip, fullgraph=True)
    out, _ = compiled(x)
    assert torch.equal(out, expect)

    static_x = x.clone()
    round_trip(static_x)  # warm up (kernel compilation) outside the capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out, static_global = round_trip(static_x)
    static_x.copy_(x * 3)
    graph.replay()
    torch.cuda.synchronize()
    q3 = nvfp4.quantize_bf16_to_nvfp4_128x4(x * 3)
    assert torch.equal(static_global, q3.global_scale)
    assert torch.equal(static_out, nvfp4.dequantize_nvfp4_128x4_to_bf16(q3))
