"""Sparse/dense paged decode: Triton kernel vs the reference, the plan/run wrapper, bad input."""
import importlib
import math

import pytest
import torch
from _pkg import TRITON_DEVICE, TRITON_HALF, msa, needs_cuda, needs_triton

decode = importlib.import_module(msa.__name__ + ".decode")
ref_decode = importlib.import_module(msa.__name__ + ".reference.decode")


def make_case(*, lens, seqlen_q, hq, hkv, d, blk, topk, dtype, device, seed=0, spare_pages=2, sparse=True):
    """Random paged cache with scattered pages, and selections with holes, out-of-range ids,
    duplicates and a distinct selection per KV head."""
    gen = torch.Generator().manual_seed(seed)
    batch = len(lens)
    pages_per = max(1, max(math.ceil(n / blk) for n in lens))
    num_pages = batch * pages_per + spare_pages
    k = torch.randn(num_pages, hkv, blk, d, generator=gen)
    v = torch.randn(num_pages, hkv, blk, d, generator=gen)
    page_table = torch.randperm(num_pages, generator=gen)[:batch * pages_per].view(batch, pages_per)
    q = torch.randn(batch * seqlen_q, hq, d, generator=gen)
    sel = None
    if sparse:
        nb_max = pages_per
        sel = torch.randint(-1, nb_max + 2, (hkv, batch * seqlen_q, topk), generator=gen)
        if topk >= 3:
            sel[..., 1] = sel[..., 0]  # duplicate
    to = dict(device=device)
    return dict(
        q=q.to(dtype=dtype, **to), k=k.to(dtype=dtype, **to), v=v.to(dtype=dtype, **to),
        q2k_indices=None if sel is None else sel.to(dtype=torch.int32, **to).contiguous(),
        page_table=page_table.to(dtype=torch.int32, **to).contiguous(),
        seqused_k=torch.tensor(lens, dtype=torch.int32, **to), seqlen_q=seqlen_q, max_seqlen_k=max(lens),
        blk_kv=blk)


def reference_of(case, causal=True, k_scale=None, v_scale=None):
    return ref_decode.sparse_decode_reference(
        case["q"].cpu(), case["k"].cpu(), case["v"].cpu(),
        None if case["q2k_indices"] is None else case["q2k_indices"].cpu(),
        case["page_table"].cpu(), case["seqused_k"].cpu(), case["seqlen_q"], case["blk_kv"], causal=causal,
        k_scale=None if k_scale is None else k_scale.cpu(), v_scale=None if v_scale is None else v_scale.cpu())


def assert_close_half(out, lse, ref_out, ref_lse, floor=2e-3, ref_abs_v=None):
    """`ref_abs_v`: the reference run on |V|. The kernel rounds P to Q's 16-bit type for P@V;
    each p_i is then off by at most u * p_i (unit roundoff u) while l sums the unrounded p_i,
    so an output element is off by at most u * sum(p_i |v_i|) / l, which is that run's output.
    Without it, the floor scales with the output instead (too tight when the output averages
    out large values)."""
    half = out.dtype if out.dtype != torch.float32 else torch.float16
    out = out.float().cpu()
    rounding = 2 * (ref_out.to(half).float() - ref_out).abs().max().item()
    err = (out - ref_out).abs()
    if ref_abs_v is None:
        bound = rounding + max(floor, 2.0 ** -8 * ref_out.abs().max().item())
    else:
        u = 2.0 ** -8 if half == torch.bfloat16 else 2.0 ** -11
        bound = rounding + floor + u * ref_abs_v.float()
    excess = (err - bound).max().item()
    assert excess <= 0, f"max|out-ref| {err.max().item()} exceeds its bound by {excess}"
    assert torch.equal(torch.isinf(lse.cpu()), torch.isinf(ref_lse))
    finite = torch.isfinite(ref_lse)
    assert torch.allclose(lse.cpu()[finite], ref_lse[finite], atol=1e-3, rtol=0)
    assert not torch.isnan(out).any()


def run_case(case, **kw):
    c = dict(case)
    return decode.sparse_decode_atten_func(c.pop("q"), c.pop("k"), c.pop("v"), c.pop("q2k_indices"),
                                           return_softmax_lse=True, **c, **kw)


# ---------------------------------------------------------------- Triton (GPU or interpreter)


@pytest.mark.triton
@needs_triton
@pytest.mark.parametrize("hq,hkv,seqlen_q", [(2, 2, 1), (4, 2, 1), (8, 2, 1), (8, 1, 1), (16, 1, 1), (4, 1, 4)])
def test_sparse_paged_matches_reference(hq, hkv, seqlen_q):
    # One empty request (seq_len 0), one shorter than a block, one ragged.
    case = make_case(lens=[150, 0, 40], seqlen_q=seqlen_q, hq=hq, hkv=hkv, d=64, blk=64, topk=4,
                     dtype=TRITON_HALF, device=TRITON_DEVICE, seed=hq * 10 + hkv + seqlen_q)
    out, lse = run_case(case)
    ref_out, ref_lse = reference_of(case)
    assert_close_half(out, lse, ref_out, ref_lse)
    rows_empty = slice(seqlen_q, 2 * seqlen_q)
    assert (out[rows_empty].float() == 0).all() and torch.isinf(lse[rows_empty]).all()


@pytest.mark.triton
@needs_triton
def test_sparse_paged_d128_blk128_tile_smaller_than_block():
    case = make_case(lens=[300, 129], seqlen_q=2, hq=4, hkv=2, d=128, blk=128, topk=3, dtype=TRITON_HALF,
                     device=TRITON_DEVICE, seed=3)
    out, lse = run_case(case)
    assert_close_half(out, lse, *reference_of(case))


@pytest.mark.triton
@needs_triton
@pytest.mark.parametrize("causal", [True, False])
def test_dense_paged_matches_reference(causal):
    case = make_case(lens=[200, 1], seqlen_q=2, hq=4, hkv=2, d=64, blk=64, topk=0, dtype=TRITON_HALF,
                     device=TRITON_DEVICE, seed=5, sparse=False)
    out, lse = run_case(case, causal=causal)
    assert_close_half(out, lse, *reference_of(case, causal=causal))


@pytest.mark.sanitize
@pytest.mark.triton
@needs_triton
def test_split_path_matches_reference():
    # B=1: the (row, head) grid is small, so the functional API splits over the selections.
    case = make_case(lens=[64 * 7 + 5], seqlen_q=1, hq=4, hkv=1, d=64, blk=64, topk=8, dtype=TRITON_HALF,
                     device=TRITON_DEVICE, seed=7)
    splits = decode.choose_num_splits(1, 8, decode._sm_count(case["q"].device))
    assert splits > 1
    out, lse = run_case(case)
    assert_close_half(out, lse, *reference_of(case))


@pytest.mark.sanitize
@pytest.mark.triton
@needs_triton
def test_bad_page_table_entries_are_skipped():
    case = make_case(lens=[130], seqlen_q=1, hq=2, hkv=1, d=64, blk=64, topk=3, dtype=TRITON_HALF,
                     device=TRITON_DEVICE, seed=9)
    num_pages = case["k"].shape[0]
    case["page_table"][0, 0] = num_pages + 5
    case["page_table"][0, 1] = -3
    case["q2k_indices"].copy_(torch.tensor([[[0, 1, 2]]], dtype=torch.int32))
    out, lse = run_case(case)
    assert_close_half(out, lse, *reference_of(case))


@pytest.mark.triton
@needs_triton
@pytest.mark.parametrize("fixed_split_size", [None, 1])
def test_wrapper_plan_run_and_in_place_updates(fixed_split_size):
    case = make_case(lens=[200, 70], seqlen_q=1, hq=4, hkv=2, d=64, blk=64, topk=3, dtype=TRITON_HALF,
                     device=TRITON_DEVICE, seed=11)
    wrapper = decode.SparseDecodePagedAttentionWrapper(blk_kv=64)
    wrapper.plan(page_table=case["page_table"], seqused_k=case["seqused_k"], seqlen_q=1, max_seqlen_k=200,
                 q2k_indices=case["q2k_indices"], num_qo_heads=4, num_kv_heads=2, head_dim=64,
                 fixed_split_size=fixed_split_size)
    if fixed_split_size == 1:
        assert wrapper.num_splits == 3 and wrapper.workspace_bytes == 3 * 2 * 4 * 65 * 4
    out = torch.empty_like(case["q"])
    lse = torch.empty(2, 4, dtype=torch.float32, device=case["q"].device)
    got = wrapper.run(case["q"], case["k"], case["v"], out=out, lse=lse, return_softmax_lse=True)
    assert got[0] is out and got[1] is lse
    assert_close_half(out, lse, *reference_of(case))
    # Values change in place between runs; the plan stays valid.
    case["seqused_k"].copy_(torch.tensor([120, 190], dtype=torch.int32))
    case["q2k_indices"].copy_(case["q2k_indices"].flip(-1))
    case["page_table"].copy_(case["page_table"].flip(0))
    wrapper.run(case["q"], case["k"], case["v"], out=out, lse=lse)
    assert_close_half(out, lse, *reference_of(case))


# ---------------------------------------------------------------- CPU: reference path and errors


def test_run_before_plan_raises():
    wrapper = decode.SparseDecodePagedAttentionWrapper(blk_kv=64)
    q = torch.zeros(1, 2, 64, dtype=torch.float16)
    with pytest.raises(RuntimeError):
        wrapper.run(q, q, q)


def test_cpu_path_is_reference():
    if TRITON_DEVICE == "cpu":
        pytest.skip("interpreter runs the kernel on CPU tensors")
    case = make_case(lens=[100, 3], seqlen_q=2, hq=4, hkv=2, d=64, blk=64, topk=2, dtype=torch.float32,
                     device="cpu", seed=2)
    case["q"], case["k"], case["v"] = (case[n].half() for n in ("q", "k", "v"))
    out, lse = run_case(case)
    ref_out, ref_lse = reference_of(case)
    assert torch.equal(out, ref_out.half())
    assert torch.equal(lse, ref_lse)


def test_reference_reduces_to_masked_attention_on_a_tiny_case():
    # One request, one KV head, blk 64, 2 pages; selection {1} only: query sees tokens 64..kv_len-1.
    torch.manual_seed(0)
    k = torch.randn(2, 1, 64, 64)
    v = torch.randn(2, 1, 64, 64)
    q = torch.randn(1, 1, 64)
    pt = torch.tensor([[1, 0]], dtype=torch.int32)
    out, lse = ref_decode.sparse_decode_reference(q, k, v, torch.tensor([[[1]]], dtype=torch.int32), pt,
                                                  torch.tensor([100], dtype=torch.int32), 1, 64)
    keys = k[0, 0, :36]  # logical block 1 lives in physical page 0
    s = (q[0, 0] @ keys.T) * 64 ** -0.5
    expect = torch.softmax(s, 0) @ v[0, 0, :36]
    assert torch.allclose(out[0, 0], expect, atol=1e-5)
    assert torch.allclose(lse[0, 0], torch.logsumexp(s, 0), atol=1e-5)


def _bad_call(**over):
    case = make_case(lens=[100], seqlen_q=1, hq=4, hkv=2, d=64, blk=64, topk=2, dtype=torch.float16, device="cpu")
    case.update(over)
    return run_case(case)


@pytest.mark.parametrize("over,exc,word", [
    (dict(q=torch.zeros(1, 4, 64, dtype=torch.float32)), TypeError, "q"),
    (dict(q=torch.zeros(1, 4, 32, dtype=torch.float16)), ValueError, "q"),
    (dict(q=torch.zeros(2, 4, 64, dtype=torch.float16)), ValueError, "q.shape[0]"),
    (dict(q=torch.zeros(1, 3, 64, dtype=torch.float16)), ValueError, "multiple"),
    (dict(k=torch.zeros(4, 2, 64, 64, dtype=torch.bfloat16)), TypeError, "k"),
    (dict(v=torch.zeros(4, 2, 32, 64, dtype=torch.float16)), ValueError, "v"),
    (dict(blk_kv=32), ValueError, "blk_kv"),
    (dict(seqused_k=torch.tensor([100], dtype=torch.int64)), TypeError, "seqused_k"),
    (dict(page_table=torch.zeros(2, 3, dtype=torch.int32)), ValueError, "page_table"),
    (dict(q2k_indices=torch.zeros(1, 1, 2, dtype=torch.int32)), ValueError, "q2k_indices"),
    (dict(q2k_indices=torch.zeros(2, 1, 65, dtype=torch.int32)), ValueError, "topK"),
    (dict(q2k_indices=torch.zeros(2, 1, 2, dtype=torch.int64)), TypeError, "q2k_indices"),
    (dict(seqlen_q=0), ValueError, "seqlen_q"),
    (dict(k_scale=torch.ones(2)), ValueError, "k_scale"),
    (dict(out=torch.zeros(1, 4, 64, dtype=torch.bfloat16)), TypeError, "out"),
])
def test_bad_input_errors(over, exc, word):
    with pytest.raises(exc, match=word.replace("[", r"\[").replace("]", r"\]")):
        _bad_call(**over)


# ---------------------------------------------------------------- GPU


def _bf16_check(out, lse, ref_out, ref_lse):
    out = out.float().cpu()
    bound = 2 * (ref_out.bfloat16().float() - ref_out).abs().max().item() + 2e-3
    assert (out - ref_out).abs().max().item() <= bound
    cos = torch.nn.functional.cosine_similarity(out.flatten(), ref_out.flatten(), dim=0)
    assert cos >= 0.9999
    finite = torch.isfinite(ref_lse)
    assert torch.equal(torch.isfinite(lse.cpu()), finite)
    assert torch.allclose(lse.cpu()[finite], ref_lse[finite], atol=1e-3, rtol=0)


def _m3_case(batch, seqlen_q, lens, dtype, hq=64, hkv=4, topk=16, seed=0):
    case = make_case(lens=lens, seqlen_q=seqlen_q, hq=hq, hkv=hkv, d=128, blk=128, topk=topk, dtype=torch.float32,
                     device="cpu", seed=seed)
    nb = torch.tensor([math.ceil(n / 128) for n in lens]).repeat_interleave(seqlen_q)
    gen = torch.Generator().manual_seed(seed + 1)
    sel = (torch.rand(hkv, batch * seqlen_q, topk, generator=gen) * nb.view(1, -1, 1)).long()
    sel[..., 0] = nb.view(1, -1) - 1  # the local block
    sel[..., -1] = -1
    case["q2k_indices"] = sel.int().contiguous()
    for name in ("q", "k", "v"):
        case[name] = case[name].to(dtype)
    return {n: (t.cuda() if isinstance(t, torch.Tensor) else t) for n, t in case.items()}


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("batch,seqlen_q", [(1, 1), (4, 4), (64, 1)])
@pytest.mark.kernels_ci
def test_gpu_m3_bf16(batch, seqlen_q):
    gen = torch.Generator().manual_seed(batch)
    lens = torch.randint(1, 8192, (batch,), generator=gen).tolist()
    case = _m3_case(batch, seqlen_q, lens, torch.bfloat16, seed=batch)
    out, lse = run_case(case)
    _bf16_check(out, lse, *reference_of(case))


@pytest.mark.gpu
@needs_cuda
def test_gpu_long_ragged_context_dense_and_sparse():
    lens = [262144, 5000, 131073]
    case = _m3_case(3, 1, lens, torch.bfloat16, hq=8, hkv=1, topk=64, seed=4)
    out, lse = run_case(case)
    _bf16_check(out, lse, *reference_of(case))
    case["q2k_indices"] = None
    out, lse = run_case(case)
    _bf16_check(out, lse, *reference_of(case))


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("q_fp8", [False, True])
def test_gpu_fp8_kv_with_scales(q_fp8):
    case = _m3_case(8, 2, [4000, 300, 9000, 128, 129, 1, 7777, 2048], torch.bfloat16, hq=16, hkv=1, seed=6)
    k_scale = torch.tensor([0.5], device="cuda")
    v_scale = torch.tensor([2.0], device="cuda")
    case["k"] = (case["k"].float() / 0.5).to(torch.float8_e4m3fn)
    case["v"] = (case["v"].float() / 2.0).to(torch.float8_e4m3fn)
    if q_fp8:
        case["q"] = case["q"].to(torch.float8_e4m3fn)
    out, lse = run_case(case, k_scale=k_scale, v_scale=v_scale)
    assert out.dtype == torch.bfloat16
    ref_out, ref_lse = reference_of(case, k_scale=k_scale, v_scale=v_scale)
    assert (out.float().cpu() - ref_out.bfloat16().float()).abs().max().item() <= 0.125
    finite = torch.isfinite(ref_lse)
    assert torch.allclose(lse.cpu()[finite], ref_lse[finite], atol=2e-3, rtol=0)


@pytest.mark.gpu
@needs_cuda
def test_gpu_fp8_matches_bf16_on_upcast_kv():
    case = _m3_case(4, 1, [3000, 100, 2000, 5000], torch.bfloat16, seed=8)
    case["k"] = case["k"].to(torch.float8_e4m3fn)
    case["v"] = case["v"].to(torch.float8_e4m3fn)
    out8 = run_case(case)
    case["k"] = case["k"].to(torch.bfloat16)
    case["v"] = case["v"].to(torch.bfloat16)
    out16, lse16 = run_case(case)
    # The FP8 path runs its MMAs in fp16 (Q scaled by a power of two), the BF16 path in bf16:
    # the same values in a different MMA input type, so results agree to rounding, not bitwise.
    ref_out, ref_lse = reference_of(case)
    _bf16_check(out16, lse16, ref_out, ref_lse)
    assert (out8[0].float().cpu() - ref_out.bfloat16().float()).abs().max().item() <= 0.125  # contract §7 FP8
    finite = torch.isfinite(ref_lse)
    assert torch.allclose(out8[1].cpu()[finite], ref_lse[finite], atol=2e-3, rtol=0)
    assert (out8[0].float() - out16.float()).abs().max().item() <= 2e-2


@pytest.mark.gpu
@needs_cuda
def test_gpu_fp8_kv_large_bf16_q_stays_finite():
    # The FP8-KV path scales a bf16 Q into fp16 range by a power of two: |q| ~ 1e6 would
    # overflow fp16 without it. Scaling Q up and softmax_scale down by 2^20 leaves the math equal.
    case = _m3_case(2, 1, [3000, 700], torch.bfloat16, hq=16, hkv=1, seed=15)
    case["k"] = case["k"].to(torch.float8_e4m3fn)
    case["v"] = case["v"].to(torch.float8_e4m3fn)
    out, lse = run_case(case)
    case["q"] = case["q"] * 2.0 ** 20
    big_out, big_lse = run_case(case, softmax_scale=128 ** -0.5 * 2.0 ** -20)
    assert torch.isfinite(big_out.float()).all()
    assert (big_out.float() - out.float()).abs().max().item() <= 2e-2
    assert torch.allclose(big_lse, lse, atol=2e-3, rtol=0)


@pytest.mark.gpu
@needs_cuda
def test_gpu_wrapper_cuda_graph_replay_with_changed_metadata():
    case = _m3_case(2, 1, [5000, 3000], torch.bfloat16, seed=12)
    wrapper = decode.SparseDecodePagedAttentionWrapper(blk_kv=128)
    wrapper.plan(page_table=case["page_table"], seqused_k=case["seqused_k"], seqlen_q=1, max_seqlen_k=5000,
                 q2k_indices=case["q2k_indices"], num_qo_heads=64, num_kv_heads=4, head_dim=128)
    assert wrapper.num_splits > 1
    out = torch.empty_like(case["q"])
    lse = torch.empty(2, 64, dtype=torch.float32, device="cuda")
    wrapper.run(case["q"], case["k"], case["v"], out=out, lse=lse)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        wrapper.run(case["q"], case["k"], case["v"], out=out, lse=lse)
    new = _m3_case(2, 1, [4100, 4999], torch.bfloat16, seed=13)
    case["seqused_k"].copy_(new["seqused_k"])
    case["q2k_indices"].copy_(new["q2k_indices"])
    case["page_table"].copy_(case["page_table"].flip(0))
    graph.replay()
    torch.cuda.synchronize()
    _bf16_check(out, lse, *reference_of(case))


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("kv_dtype", [torch.bfloat16, torch.float8_e4m3fn])
def test_gpu_programmatic_launch_does_not_change_bits(monkeypatch, kv_dtype):
    # Programmatic dependent launch changes when the split and merge kernels start, never the math.
    case = _m3_case(3, 1, [5000, 0, 3000], torch.bfloat16, seed=16)
    case["k"] = case["k"].to(kv_dtype)
    case["v"] = case["v"].to(kv_dtype)
    results = []
    for pdl in (0, 1):
        monkeypatch.setenv(decode.CONFIG_ENV, f"pdl={pdl}")
        results.append(run_case(case))
    assert decode.plan_launch(case["q"].device, 16, 3 * 4, 128, False, 16, 5000)[1] > 1  # the split path
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])


@pytest.mark.gpu
@needs_cuda
def test_gpu_torch_compile_fullgraph():
    case = _m3_case(2, 2, [3000, 700], torch.bfloat16, hq=16, hkv=1, seed=14)

    def fn(q, k, v, q2k, page_table, seqused_k):
        return decode.sparse_decode_atten_func(q, k, v, q2k, page_table=page_table, seqused_k=seqused_k,
                                               seqlen_q=2, max_seqlen_k=3000, return_softmax_lse=True)

    compiled = torch.compile(fn, fullgraph=True)
    out, lse = compiled(case["q"], case["k"], case["v"], case["q2k_indices"], case["page_table"],
                        case["seqused_k"])
    _bf16_check(out, lse, *reference_of(case))

