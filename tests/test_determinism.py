"""Determinism (issue #8): identical inputs give bitwise identical outputs on every call.

Every public GPU path runs three times on the same inputs at production-like sizes, with
allocations of random sizes in between so the outputs, partials and workspaces land at other
addresses each time. The split-K decode, the KV-outer prefill (partials + combine) and the
native CSR builder are the paths where a scheduling-dependent order could leak into the bits.
"""
import importlib

import pytest
import torch
from _pkg import msa, needs_cuda
from test_decode import make_case as make_decode_case
from test_decode_indexer import make_cache
from test_fmha import make_inputs as make_fmha_inputs
from test_flashrt import make_slot_case
from test_indexer import make_case as make_fp4_case
from test_prefill import make_case as make_prefill_case
from test_topk import make_scores

prefill = importlib.import_module(msa.__name__ + ".prefill")

pytestmark = [pytest.mark.gpu, needs_cuda]
RUNS = 3


def bits(t):
    """A tensor's bytes (so NaN payloads and -0.0 compare too)."""
    t = t.detach().contiguous()
    return t.view(torch.uint8) if t.dtype != torch.bool else t


def assert_same_every_run(fn):
    """Call fn() RUNS times with allocation churn in between; every output tensor must be bitwise equal."""
    first = None
    for i in range(RUNS):
        churn = torch.empty(int(torch.randint(1, 1 << 22, ())) + i * 4099, dtype=torch.uint8, device="cuda")
        churn.fill_(0xA5)
        outs = fn()
        outs = [outs] if isinstance(outs, torch.Tensor) else [o for o in outs if isinstance(o, torch.Tensor)]
        torch.cuda.synchronize()
        got = [bits(o).clone() for o in outs]
        if first is None:
            first = got
            assert first, "fn returned no tensor"
        else:
            for a, b in zip(first, got):
                assert torch.equal(a, b), f"run {i} differs from run 0"
        del churn


@pytest.mark.parametrize("lens,seqlen_q", [([40_000], 1), ([9000, 1, 20_000, 130], 4),
                                           ([3000 - 37 * b for b in range(48)], 1)])
@pytest.mark.parametrize("kv", ["bf16", "fp8"])
def test_sparse_decode_is_deterministic(lens, seqlen_q, kv):
    # B=1 takes the split-K path (partials + merge); B=48 the single-pass path
    case = make_decode_case(lens=lens, seqlen_q=seqlen_q, hq=64, hkv=4, d=128, blk=128, topk=16,
                            dtype=torch.bfloat16, device="cuda", seed=len(lens))
    if kv == "fp8":
        case["k"], case["v"] = case["k"].to(torch.float8_e4m3fn), case["v"].to(torch.float8_e4m3fn)
    assert_same_every_run(lambda: msa.sparse_decode_atten_func(
        case["q"], case["k"], case["v"], case["q2k_indices"], page_table=case["page_table"],
        seqused_k=case["seqused_k"], seqlen_q=seqlen_q, max_seqlen_k=case["max_seqlen_k"], blk_kv=128,
        causal=True, return_softmax_lse=True))


def test_decode_wrapper_is_deterministic():
    case = make_decode_case(lens=[30_000, 1, 300], seqlen_q=2, hq=16, hkv=2, d=128, blk=64, topk=32,
                            dtype=torch.float16, device="cuda", seed=3)
    wrapper = msa.SparseDecodePagedAttentionWrapper(blk_kv=64, causal=True)
    wrapper.plan(page_table=case["page_table"], seqused_k=case["seqused_k"], seqlen_q=2,
                 max_seqlen_k=case["max_seqlen_k"], q2k_indices=case["q2k_indices"], num_qo_heads=16,
                 num_kv_heads=2, head_dim=128)
    assert_same_every_run(lambda: wrapper.run(case["q"], case["k"], case["v"], return_softmax_lse=True))


@pytest.mark.parametrize("kernel", ["kv_outer", "query_major"])
def test_sparse_prefill_is_deterministic(kernel, monkeypatch):
    monkeypatch.setenv("MSA_PREFILL_KERNEL", kernel)
    c = make_prefill_case([(2048, 9000), (700, 700), (1, 4000)], 32, 4, 128, 128, 16, torch.bfloat16, "cuda", seed=5)
    assert_same_every_run(lambda: prefill.sparse_atten_func(
        c.q, c.k, c.v, c.row_ptr, c.q_idx, c.topk, cu_seqlens_q=c.cu_q, cu_seqlens_k=c.cu_k,
        max_seqlen_q=c.max_q, max_seqlen_k=c.max_k, blk_kv=c.blk, causal=True, return_softmax_lse=True,
        return_temperature_lse=True, lse_temperature_scale=0.7))


def test_nvfp4_prefill_is_deterministic():
    c = make_prefill_case([(1500, 5000)], 16, 2, 128, 128, 16, torch.bfloat16, "cuda", seed=6)
    qk, qv = msa.quantize_kv_bf16_to_nvfp4_128x4(c.k, c.v)
    assert_same_every_run(lambda: msa.sparse_atten_nvfp4_kv_func(
        c.q, qk.data, qv.data, qk.scale_128x4, qv.scale_128x4, qk.global_scale, qv.global_scale,
        c.row_ptr, c.q_idx, c.topk, cu_seqlens_q=c.cu_q, cu_seqlens_k=c.cu_k, max_seqlen_q=c.max_q,
        max_seqlen_k=c.max_k, blk_kv=c.blk, causal=True, return_softmax_lse=True))


def test_csr_build_is_deterministic():
    gen = torch.Generator().manual_seed(7)
    cu_q = torch.tensor([0, 4096, 4096 + 1000], dtype=torch.int32, device="cuda")
    cu_k = torch.tensor([0, 30_000, 30_000 + 1000], dtype=torch.int32, device="cuda")
    q2k = torch.randint(-1, 240, (4, 5096, 16), generator=gen, dtype=torch.int32).cuda()
    assert_same_every_run(lambda: msa.build_k2q_csr(q2k, cu_q, cu_k, 128, total_k=31_000, total_rows=250,
                                                    return_schedule=True)[:2])


def test_topk_select_is_deterministic():
    gen = torch.Generator().manual_seed(8)
    scores = make_scores((8, 600, 2048), gen).cuda()  # many ties: the lower id must win every time
    assert_same_every_run(lambda: msa.sparse_topk_select(scores, 16, force_begin_blocks=1, force_end_blocks=1))


def test_token_slot_decode_is_deterministic():
    case = make_slot_case(lens=[50_000, 3, 2000], hq=32, hkv=2, d=128, block=64, topk=16,
                          dtype=torch.bfloat16, device="cuda", seed=9)
    assert_same_every_run(lambda: msa.flash_decode_with_gqa_share_sparse(**case))


def test_decode_indexer_is_deterministic():
    case = make_cache([60_000, 1, 5000], hq=4, hkv=1, d=128, block_size=128, dtype=torch.bfloat16, device="cuda",
                      seed=10)
    assert_same_every_run(lambda: msa.flash_decode_with_topk_idx(
        **case, topk=16, init_blocks=1, local_blocks=2, disable_index_value=False)[:2])


@pytest.mark.parametrize("fmt", ["mxfp4", "nvfp4"])
def test_fp4_indexer_is_deterministic(fmt):
    args, kw = make_fp4_case(fmt, "public", [1000, 3], [9000, 300], hq=4, hkv=1, d=128, device="cuda", seed=11)
    assert_same_every_run(lambda: msa.fp4_indexer_block_scores(*args, causal=True, **kw))


def test_fmha_proxy_is_deterministic():
    plan = msa.fmha_sm12x_plan([1500, 7], [6000, 900], 16, 2, page_size=128, output_maxscore=True, causal=True,
                               device="cuda")
    q, k, v, kv_indices = make_fmha_inputs(plan, 128, torch.bfloat16, "cuda", seed=12)
    assert_same_every_run(lambda: msa.fmha_sm12x(q, k, v, plan, kv_indices))


def test_nvfp4_quantize_dequantize_is_deterministic():
    x = torch.randn(4096, 8, 128, device="cuda", dtype=torch.bfloat16) * 3
    assert_same_every_run(lambda: list(vars(msa.quantize_bf16_to_nvfp4_128x4(x)).values())[:3])
    qx = msa.quantize_bf16_to_nvfp4_128x4(x)
    assert_same_every_run(lambda: msa.dequantize_nvfp4_128x4_to_bf16(qx))
