"""fmha_sm12x: the dense proxy FMHA (out + max_score) vs the FP32 reference; plans; bad input."""
import importlib
import math

import pytest
import torch
from _pkg import TRITON_DEVICE, TRITON_HALF, msa, needs_cuda, needs_triton

fmha = importlib.import_module(msa.__name__ + ".fmha")
ref = importlib.import_module(msa.__name__ + ".reference.indexer")


def make_inputs(plan, d, dtype, device, seed=0):
    gen = torch.Generator().manual_seed(seed)
    hq, hkv = plan.num_qo_heads, plan.num_kv_heads
    q = torch.randn(plan.total_q, hq, d, generator=gen).to(dtype)
    kv_indices = None
    if plan.page_size > 0:
        used = int(plan.cu_page_offsets[-1])
        num_pages = used + 3
        k = torch.randn(num_pages, hkv, plan.page_size, d, generator=gen).to(dtype)
        kv_indices = torch.randperm(num_pages, generator=gen)[:used].to(torch.int32).to(device)
    else:
        k = torch.randn(plan.total_k, hkv, d, generator=gen).to(dtype)
    v = torch.randn(k.shape, generator=gen).to(dtype)
    return q.to(device), k.to(device), v.to(device), kv_indices


def reference(q, k, v, plan, kv_indices, qo_offset=None, **scales):
    return ref.proxy_fmha_reference(
        q.cpu(), k.cpu(), v.cpu(), plan.cu_seqlens_q.cpu(), plan.cu_seqlens_k.cpu(),
        None if plan.cu_page_offsets is None else plan.cu_page_offsets.cpu(),
        None if kv_indices is None else kv_indices.cpu(),
        (plan.qo_offset if qo_offset is None else qo_offset).cpu(), page_size=plan.page_size, causal=plan.causal,
        num_tiles=plan.num_kv_tiles, sm_scale=q.shape[2] ** -0.5, **scales)


def assert_close(out, max_score, ref_out, ref_ms, out_tol):
    finite = torch.isfinite(ref_ms)
    assert torch.equal(torch.isfinite(max_score.cpu()), finite)
    assert torch.all(max_score.cpu()[~finite] == -math.inf)
    ms_err = (max_score.cpu()[finite] - ref_ms[finite]).abs().max().item()
    assert ms_err <= 1e-3 * max(1.0, ref_ms[finite].abs().max().item())
    if out is not None:
        assert not torch.isnan(out).any()
        assert (out.float().cpu() - ref_out).abs().max().item() <= out_tol


def test_plan_metadata():
    plan = fmha.fmha_sm12x_plan([3, 0, 5], torch.tensor([300, 10, 5]), 8, 2, page_size=64, output_maxscore=True,
                                device="cpu")
    assert plan.cu_seqlens_q.tolist() == [0, 3, 3, 8] and plan.cu_seqlens_k.tolist() == [0, 300, 310, 315]
    assert plan.cu_page_offsets.tolist() == [0, 5, 6, 7]
    assert plan.qo_offset.tolist() == [297, 10, 0] and plan.num_kv_tiles == 3 and plan.num_k2q_rows == 5
    custom = fmha.fmha_sm12x_plan([2], [9], 4, qo_offset=3, device="cpu")
    assert custom.qo_offset.tolist() == [3] and custom.num_kv_heads == 4


def test_bad_inputs():
    plan = fmha.fmha_sm12x_plan([4], [40], 4, 2, page_size=16, output_maxscore=True, device="cpu")
    q, k, v, kv_indices = make_inputs(plan, 32, torch.float16, "cpu")
    with pytest.raises(ValueError, match="num_qo_heads"):
        fmha.fmha_sm12x_plan([4], [40], 6, 4)
    with pytest.raises(ValueError, match="kv_segment_lens"):
        fmha.fmha_sm12x_plan([4, 1], [40], 4)
    with pytest.raises(TypeError, match="kv_indices"):
        fmha.fmha_sm12x(q, k, v, plan)
    with pytest.raises(ValueError, match="q must have shape"):
        fmha.fmha_sm12x(q[:3], k, v, plan, kv_indices)
    with pytest.raises(TypeError, match="v"):
        fmha.fmha_sm12x(q, k, v.float(), plan, kv_indices)
    with pytest.raises(TypeError, match="plan"):
        fmha.fmha_sm12x(q, k, v, {"page_size": 16}, kv_indices)
    with pytest.raises(ValueError, match="nothing to compute"):
        fmha.fmha_sm12x(q, k, v, plan, kv_indices, output_o=False, output_maxscore=False)


def test_cpu_reference_path_matches():
    plan = fmha.fmha_sm12x_plan([3, 6], [130, 6], 4, 2, output_maxscore=True, device="cpu")
    q, k, v, _ = make_inputs(plan, 32, torch.float16, "cpu")
    out, ms = fmha.fmha_sm12x(q, k, v, plan)
    ro, rms = reference(q, k, v, plan, None)
    assert_close(out, ms, ro, rms, 2e-3)
    assert torch.all(ms[:, 1, 3:] == -math.inf)  # request 1 has one tile


@pytest.mark.triton
@needs_triton
@pytest.mark.parametrize("page_size", [-1, 16, 256])
@pytest.mark.parametrize("causal", [True, False])
def test_triton_matches_reference(page_size, causal):
    plan = fmha.fmha_sm12x_plan([3, 20], [150, 70], 4, 2, page_size=page_size, output_maxscore=True, causal=causal,
                                device=TRITON_DEVICE)
    q, k, v, kv_indices = make_inputs(plan, 32, TRITON_HALF, TRITON_DEVICE, seed=page_size + 7)
    out, ms = fmha.fmha_sm12x(q, k, v, plan, kv_indices)
    ro, rms = reference(q, k, v, plan, kv_indices)
    assert out.dtype == TRITON_HALF
    assert_close(out, ms, ro, rms, 2e-2)


@pytest.mark.triton
@needs_triton
@pytest.mark.parametrize("page_size", [-1, 16, 64, 256])
@pytest.mark.parametrize("causal", [True, False])
def test_triton_scores_only_matches_reference(page_size, causal):
    # whole tiles (plain max) and partial ones (masked: past the keys, the causal edge, a bad page)
    plan = fmha.fmha_sm12x_plan([3, 20], [150, 330], 4, 2, page_size=page_size, output_maxscore=True, causal=causal,
                                device=TRITON_DEVICE)
    q, k, v, kv_indices = make_inputs(plan, 32, TRITON_HALF, TRITON_DEVICE, seed=page_size + 1)
    if kv_indices is not None:
        kv_indices[-1] = -5
    out, ms = fmha.fmha_sm12x(q, k, v, plan, kv_indices, output_o=False)
    _, rms = reference(q, k, v, plan, kv_indices)
    assert out is None
    assert_close(None, ms, None, rms, 0)


@pytest.mark.sanitize
@pytest.mark.triton
@needs_triton
def test_triton_proxy_only_offset_override_and_bad_pages():
    plan = fmha.fmha_sm12x_plan([4, 2], [200, 60], 2, 1, page_size=64, output_maxscore=True, device=TRITON_DEVICE)
    q, k, v, kv_indices = make_inputs(plan, 32, TRITON_HALF, TRITON_DEVICE, seed=3)
    kv_indices[1] = 99  # out of range: those keys are invisible
    override = torch.tensor([70, -2], dtype=torch.int32)
    out, ms = fmha.fmha_sm12x(q, k, v, plan, kv_indices, output_o=False, q_offset_override=override)
    assert out is None
    _, rms = reference(q, k, v, plan, kv_indices, qo_offset=override)
    assert_close(None, ms, None, rms, 0)
    assert torch.all(ms[:, :, 4:] == -math.inf)  # offset -2: the last request sees nothing
    # a plan without output_maxscore gives no max_score
    plain = fmha.fmha_sm12x_plan([4, 2], [200, 60], 2, 1, page_size=64, device=TRITON_DEVICE)
    out, none = fmha.fmha_sm12x(q, k, v, plain, kv_indices)
    assert none is None and out.shape == q.shape


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("d", [64, 128])
def test_gpu_bf16_large(d):
    plan = fmha.fmha_sm12x_plan([1000, 7, 300], [3000, 7, 5000], 16, 4, page_size=128, output_maxscore=True,
                                device="cuda")
    q, k, v, kv_indices = make_inputs(plan, d, torch.bfloat16, "cuda", seed=d)
    out, ms = fmha.fmha_sm12x(q, k, v, plan, kv_indices)
    ro, rms = reference(q, k, v, plan, kv_indices)
    bf16_err = (ro.bfloat16().float() - ro).abs().max().item()
    assert_close(out, ms, ro, rms, 2 * bf16_err + 1e-2)
    cos = torch.nn.functional.cosine_similarity(out.float().cpu().flatten(), ro.flatten(), dim=0)
    assert cos >= 0.9999


@pytest.mark.gpu
@needs_cuda
def test_gpu_fp8_scales():
    plan = fmha.fmha_sm12x_plan([300], [900], 8, 2, output_maxscore=True, device="cuda")
    q, k, v, _ = make_inputs(plan, 128, torch.float32, "cuda", seed=5)
    q8, k8, v8 = (t.to(torch.float8_e4m3fn) for t in (q, k, v))
    out, ms = fmha.fmha_sm12x(q8, k8, v8, plan, q_scale=0.5, k_scale=torch.tensor([2.0]), v_scale=0.25)
    ro, rms = reference(q8.float(), k8.float(), v8.float(), plan, None, q_scale=0.5, k_scale=2.0, v_scale=0.25)
    assert out.dtype == torch.bfloat16
    assert_close(out, ms, ro.bfloat16().float(), rms, 0.125)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("page_size", [-1, 64])
@pytest.mark.parametrize("q_scale", [0.5, -0.5, 0.0])
def test_gpu_fp8_scores_only_scale_sign(q_scale, page_size):
    # A positive scale is applied to each tile's max, others to every score; on Hopper the FP8 K
    # pages are widened up front (bad page ids stay invisible). All match the reference.
    plan = fmha.fmha_sm12x_plan([300, 40], [900, 200], 8, 2, page_size=page_size, output_maxscore=True,
                                device="cuda")
    q, k, v, kv_indices = make_inputs(plan, 128, torch.float32, "cuda", seed=6)
    if kv_indices is not None:
        kv_indices[3] = k.shape[0] + 5
        kv_indices[-1] = -1
    q8, k8 = q.to(torch.float8_e4m3fn), k.to(torch.float8_e4m3fn)
    _, ms = fmha.fmha_sm12x(q8, k8, k8, plan, kv_indices, output_o=False, q_scale=q_scale, k_scale=2.0)
    _, rms = reference(q8.float(), k8.float(), k8.float(), plan, kv_indices, q_scale=q_scale, k_scale=2.0)
    assert_close(None, ms, None, rms, 0)


@pytest.mark.gpu
@needs_cuda
def test_gpu_pipeline_end_to_end():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
    from msa_pipeline import run_pipeline

    errors = run_pipeline("cuda")
    # bf16 outputs of O(1) values vs the FP32 reference on the same selection
    assert errors["prefill_max_abs"] <= 2e-2 and errors["decode_max_abs"] <= 2e-2, errors


@pytest.mark.triton
@needs_triton
def test_triton_group_above_16_heads_splits_programs():
    # 20 query heads per KV head: two 16-head chunks per group, the second half empty
    plan = fmha.fmha_sm12x_plan([2], [140], 20, 1, page_size=-1, output_maxscore=True, device=TRITON_DEVICE)
    q, k, v, kv_indices = make_inputs(plan, 32, TRITON_HALF, TRITON_DEVICE, seed=11)
    out, ms = fmha.fmha_sm12x(q, k, v, plan, kv_indices)
    ro, rms = reference(q, k, v, plan, kv_indices)
    assert_close(out, ms, ro, rms, 2e-2)
