"""fp4_indexer_block_scores: reference checks, Triton vs the FP32 reference, bad input."""
import importlib
import math

import pytest
import torch
from _pkg import TRITON_DEVICE, msa, needs_cuda, needs_triton

indexer = importlib.import_module(msa.__name__ + ".indexer")
ref = importlib.import_module(msa.__name__ + ".reference.indexer")


def make_case(fmt, layout, q_lens, k_lens, hq=4, hkv=2, d=64, spare_pages=2, seed=0, device="cpu"):
    """Random packed operands, scales in `layout`, pages scattered through a larger cache."""
    gen = torch.Generator().manual_seed(seed)
    groups = d // ref.FP4_GROUP[fmt]
    total_q = sum(q_lens)
    pages = [-(-k // 128) for k in k_lens]
    total_pages = sum(pages) + spare_pages
    q = torch.randint(0, 256, (total_q, hq, d // 2), generator=gen, dtype=torch.uint8)
    k = torch.randint(0, 256, (total_pages, hkv, 128, d // 2), generator=gen, dtype=torch.uint8)
    if fmt == "mxfp4":
        qs = torch.randint(122, 132, (total_q, hq, groups), generator=gen, dtype=torch.uint8)
        ks = torch.randint(122, 132, (total_pages, hkv, 128, groups), generator=gen, dtype=torch.uint8)
    else:
        qs = (torch.rand(total_q, hq, groups, generator=gen) * 8).to(torch.float8_e4m3fn).view(torch.uint8)
        ks = (torch.rand(total_pages, hkv, 128, groups, generator=gen) * 8).to(torch.float8_e4m3fn).view(torch.uint8)
    if layout == "preordered_mma":
        qs = ref.preorder_scales(qs.permute(1, 0, 2).contiguous())
        ks = ref.preorder_scales(ks.reshape(total_pages * hkv, 128, groups))
    kv_indices = torch.randperm(total_pages, generator=gen)[: sum(pages)].to(torch.int32)
    cum = lambda xs: torch.tensor([0] + [sum(xs[: i + 1]) for i in range(len(xs))], dtype=torch.int32)  # noqa: E731
    args = [t.to(device) for t in (q, k, qs, ks, cum(q_lens), cum(k_lens), cum(pages))]
    kw = dict(max_seqlen_q=max(q_lens), max_seqlen_k=max(k_lens), kv_indices=kv_indices.to(device), fp4_format=fmt,
              scale_layout=layout)
    return args, kw


def assert_scores_match(out, expect):
    assert out.shape == expect.shape and out.dtype == torch.float32
    finite = torch.isfinite(expect)
    assert torch.equal(torch.isfinite(out), finite)
    assert torch.all(out[~finite] == -math.inf)
    # exact products (E2M1 x scale fits bf16), fp32 sums in another order
    err = (out[finite] - expect[finite]).abs().max().item() if finite.any() else 0.0
    assert err <= 1e-6 * max(expect[finite].abs().max().item(), 1.0)


def test_preordered_layout_indexing():
    logical = torch.randint(0, 256, (3, 200, 6), dtype=torch.uint8)
    storage = ref.preorder_scales(logical)
    assert storage.shape == (3, 2, 2, 32, 4, 4)
    for l_idx, r, c in [(0, 0, 0), (1, 37, 5), (2, 199, 3), (2, 130, 4)]:
        assert storage[l_idx, r // 128, c // 4, r % 32, (r // 32) % 4, c % 4] == logical[l_idx, r, c]
    assert torch.equal(ref.unpreorder_scales(storage, 3, 200, 6), logical)
    assert int(storage.sum()) == int(logical.long().sum())  # padding stays zero


@pytest.mark.parametrize("fmt", ["mxfp4", "nvfp4"])
def test_dequantize_matches_scalar_formula(fmt):
    groups = 64 // ref.FP4_GROUP[fmt]
    packed = torch.tensor([[0x21, 0xF8] + [0x00] * 30], dtype=torch.uint8)
    scales = torch.full((1, groups), 128 if fmt == "mxfp4" else 0x38, dtype=torch.uint8)  # 2.0 / 1.0
    x = ref.dequantize_fp4(packed, scales, fmt)
    unit = 2.0 if fmt == "mxfp4" else 1.0
    assert x[0, :4].tolist() == [0.5 * unit, 1.0 * unit, -0.0, -6.0 * unit]
    assert torch.all(x[0, 4:] == 0)


def test_reference_brute_force_and_decode_causal():
    """A single decode-position query per request sees every block; compare with explicit loops."""
    (q, k, qs, ks, cu_q, cu_k, cu_p), kw = make_case("nvfp4", "public", [1, 1], [300, 129], hq=2, hkv=1, d=32)
    out = ref.fp4_indexer_block_scores_reference(q, k, qs, ks, cu_q, cu_k, cu_p, causal=True, **kw)
    qd = ref.dequantize_fp4(q, qs, "nvfp4")
    kd = ref.dequantize_fp4(k, ks, "nvfp4")
    for b, (lk, pages) in enumerate([(300, (0, 3)), (129, (3, 5))]):
        ids = kw["kv_indices"][pages[0] : pages[1]].long()
        keys = kd[ids].transpose(1, 2).reshape(-1, 1, 32)[:lk]
        for h in range(2):
            dots = keys[:, 0] @ qd[b, h]
            for j in range(3):
                seg = dots[j * 128 : (j + 1) * 128]
                want = seg.max().item() if seg.numel() else -math.inf
                assert out[h, j, b].item() == pytest.approx(want, rel=1e-6, abs=1e-6)
    assert torch.isfinite(out[:, :3, 0]).all() and torch.isfinite(out[:, :2, 1]).all()
    assert torch.all(out[:, 2, 1] == -math.inf)


def test_bad_inputs():
    (q, k, qs, ks, cu_q, cu_k, cu_p), kw = make_case("mxfp4", "public", [3], [100])
    call = lambda **over: indexer.fp4_indexer_block_scores(q, k, qs, ks, cu_q, cu_k, cu_p, **{**kw, **over})  # noqa
    with pytest.raises(ValueError, match="qo_offset"):
        call(qo_offset=torch.zeros(1, dtype=torch.int32))
    with pytest.raises(ValueError, match="fp4_format"):
        call(fp4_format="fp4")
    with pytest.raises(ValueError, match="scale_layout"):
        call(scale_layout="swizzled")
    with pytest.raises(ValueError, match="q_scale"):
        call(scale_layout="preordered_mma")
    with pytest.raises(TypeError, match="q_fp4"):
        indexer.fp4_indexer_block_scores(q.float(), k, qs, ks, cu_q, cu_k, cu_p, **kw)
    with pytest.raises(ValueError, match="k_fp4"):
        indexer.fp4_indexer_block_scores(q, k[:, :, :64], qs, ks, cu_q, cu_k, cu_p, **kw)
    with pytest.raises(TypeError, match="kv_indices"):
        call(kv_indices=kw["kv_indices"].long())


@pytest.mark.triton
@needs_triton
@pytest.mark.parametrize("fmt", ["mxfp4", "nvfp4"])
@pytest.mark.parametrize("layout", ["public", "preordered_mma"])
@pytest.mark.parametrize("causal", [False, True])
def test_triton_matches_reference_varlen(fmt, layout, causal):
    args, kw = make_case(fmt, layout, [3, 17], [200, 140], device=TRITON_DEVICE, seed=1)
    out = indexer.fp4_indexer_block_scores(*args, causal=causal, **kw)
    cpu = [a.cpu() for a in args]
    expect = ref.fp4_indexer_block_scores_reference(*cpu, causal=causal, **{**kw, "kv_indices": kw["kv_indices"].cpu()})
    assert_scores_match(out.cpu(), expect)


@pytest.mark.sanitize
@pytest.mark.triton
@needs_triton
def test_triton_qo_offset_and_bad_pages():
    args, kw = make_case("nvfp4", "preordered_mma", [5, 2], [260, 90], hq=2, hkv=1, device=TRITON_DEVICE, seed=2)
    kw["kv_indices"][1] = -3  # request 0, page 1: skipped
    kw["kv_indices"][3] = 10_000  # request 1, page 0: skipped
    qo = torch.tensor([130, -1], dtype=torch.int32, device=TRITON_DEVICE)
    out = indexer.fp4_indexer_block_scores(*args, causal=True, qo_offset=qo, **kw).cpu()
    cpu = [a.cpu() for a in args]
    expect = ref.fp4_indexer_block_scores_reference(*cpu, causal=True, qo_offset=qo.cpu(),
                                                    **{**kw, "kv_indices": kw["kv_indices"].cpu()})
    assert_scores_match(out, expect)
    assert torch.all(out[:, 1, :5] == -math.inf) and torch.all(out[:, :, 5:] == -math.inf)
    assert torch.isfinite(out[:, 0, :5]).all() and torch.all(out[:, 2, :5] == -math.inf)  # t <= 4 + 130 < 256


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("fmt", ["mxfp4", "nvfp4"])
@pytest.mark.kernels_ci
def test_gpu_large_prefill_shape(fmt):
    args, kw = make_case(fmt, "preordered_mma", [700, 64, 1], [3000, 1000, 5000], hq=16, hkv=4, d=128,
                         device="cuda", seed=3)
    out = indexer.fp4_indexer_block_scores(*args, causal=True, **kw)
    cpu = [a.cpu() for a in args]
    expect = ref.fp4_indexer_block_scores_reference(*cpu, causal=True, **{**kw, "kv_indices": kw["kv_indices"].cpu()})
    assert_scores_match(out.cpu(), expect)
