"""Property-based fuzzing of every public function against its PyTorch reference (CONTRACT §3-§5, §7).

On the CPU the public functions run the reference path, so here the fuzz checks that random valid
inputs are accepted and do not crash, and compares against oracles independent of that path:
brute-force loops, or another public function on an equivalent layout (paged vs dense, decode vs
prefill, token-slot vs paged, FP4 scorer vs proxy FMHA). On a GPU the same checks test the kernels
against the references (the reference-vs-reference cross-checks stay on the CPU pass).

Examples per test: MSA_FUZZ_EXAMPLES, else 500 on CUDA and 10 on the CPU. CPU runs are
derandomized so CI is reproducible (MSA_FUZZ_RANDOM=1 explores new examples). Not marked
`triton`: the interpreter is far too slow for fuzzing. With MSA_FUZZ_COUNTS=DIR each process
writes how many examples every test ran to DIR/fuzz-<pid>.json (tools/gpu_validate.py's fuzz
step sums them, so the report shows the count rather than the setting).
"""
import collections
import functools
import importlib
import json
import math
import os
from types import SimpleNamespace

import torch
from _pkg import HAS_CUDA, INTERPRET, msa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_csr import brute_csr
from test_csr import random_case as random_csr_case
from test_decode import assert_close_half
from test_decode import make_case as make_decode_case
from test_decode import reference_of as decode_reference_of
from test_decode_indexer import expected_selection, make_cache
from test_fmha import assert_close as assert_fmha_close
from test_fmha import make_inputs as make_fmha_inputs
from test_fmha import reference as fmha_reference
from test_flashrt import make_slot_case
from test_flashrt import reference_of as slot_reference_of
from test_indexer import assert_scores_match
from test_indexer import make_case as make_fp4_case
from test_nvfp4 import assert_matches_reference, codes_of, logical_scales
from test_prefill import assert_lse_close, assert_out_close, corrupt_csr, to_paged
from test_topk import brute_sparse_topk, brute_topk_from_scores, make_scores

ref_attention = importlib.import_module(msa.__name__ + ".reference.attention")
ref_csr = importlib.import_module(msa.__name__ + ".reference.csr")
ref_prefill = importlib.import_module(msa.__name__ + ".reference.prefill")
ref_decode = importlib.import_module(msa.__name__ + ".reference.decode")
ref_indexer = importlib.import_module(msa.__name__ + ".reference.indexer")
ref_nvfp4 = importlib.import_module(msa.__name__ + ".reference.nvfp4")

DEV = "cuda" if HAS_CUDA else "cpu"
FP8 = torch.float8_e4m3fn
HALF = [torch.float16, torch.bfloat16]
EXAMPLES = int(os.environ.get("MSA_FUZZ_EXAMPLES", "500" if HAS_CUDA else "10"))
EXAMPLES_RUN = collections.Counter()


def counted(test):
    """Count the examples hypothesis feeds `test` (shrinking replays of a failure included).

    MSA_FUZZ_TRACE=FILE appends each example to FILE before it runs and "ok" after it passes:
    an example that kills the CUDA context (no shrinking possible) is the first without "ok".
    "{pid}" in FILE becomes the process id (several fuzz processes at once)."""
    trace = os.environ.get("MSA_FUZZ_TRACE", "").replace("{pid}", str(os.getpid()))

    @functools.wraps(test)
    def run(*args, **kwargs):
        EXAMPLES_RUN[test.__name__] += 1
        if trace:
            _trace(trace, f"{test.__name__} {args!r} {kwargs!r}")
        result = test(*args, **kwargs)
        if trace:
            _trace(trace, "ok")
        return result
    return run


def _trace(path, line):
    with open(path, "a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


@pytest.fixture(scope="module", autouse=True)
def write_example_counts():
    yield
    out_dir = os.environ.get("MSA_FUZZ_COUNTS")
    if out_dir and EXAMPLES_RUN:
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, f"fuzz-{os.getpid()}.json"), "w") as f:
            json.dump(dict(EXAMPLES_RUN), f)


FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not HAS_CUDA and os.environ.get("MSA_FUZZ_RANDOM", "0") == "0",
    database=None,  # nothing written into the checkout
    print_blob=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Checks of one reference against another (decode vs prefill, token-slot vs paged, FP4 scorer vs
# proxy FMHA) run on CPU copies: the CPU pass covers them, the GPU pass spends its time on kernels.
CROSS_CHECK_REFERENCES = not HAS_CUDA

HEAD_DIMS = st.sampled_from([64, 128])
BLOCKS = st.sampled_from([64, 128])
GROUPS = st.sampled_from([1, 2, 3, 4, 8, 16])
SEEDS = st.integers(0, 2**31 - 1)


def key_length(draw, blk, blocks=3):
    """Key lengths biased to the block edges (0, 1, blk-1, blk, blk+1, ...)."""
    edge = st.sampled_from([0, 1, blk - 1, blk, blk + 1, 2 * blk, blocks * blk])
    return draw(st.one_of(edge, st.integers(0, blocks * blk)))


def cumsum32(xs, device="cpu"):
    out = [0]
    for x in xs:
        out.append(out[-1] + x)
    return torch.tensor(out, dtype=torch.int32, device=device)


def nblocks(n, blk):
    return -(-n // blk)


def cpu(x):
    return x.cpu() if isinstance(x, torch.Tensor) else x


def assert_fp8_close(out, lse, ref_out, ref_lse):
    """CONTRACT §7 FP8: max abs 0.125 vs the BF16-rounded reference, LSE 2e-3."""
    out = out.float().cpu()
    assert not torch.isnan(out).any()
    assert out.numel() == 0 or (out - ref_out.bfloat16().float()).abs().max().item() <= 0.125
    assert_lse_close(lse.cpu(), ref_lse, atol=2e-3)


def assert_scores_close(got, expect, fmha=False):
    """Block max scores vs the reference (the shared helpers need at least one finite score)."""
    got = got.cpu()
    if not torch.isfinite(expect).any():
        assert got.shape == expect.shape and bool((got == -math.inf).all())
    elif fmha:
        assert_fmha_close(None, got, None, expect, 0)
    else:
        assert_scores_match(got, expect)


def assert_empty_rows_zero(out, ref_lse):
    """A row with nothing visible is exactly 0 (never NaN) with LSE -inf."""
    empty = torch.isinf(ref_lse) & (ref_lse < 0)
    assert (out.float().cpu()[empty] == 0).all()


# ----------------------------------------------------------------------------- prefill


def random_selection(gen, lens, hkv, topk, blk):
    """q2k [Hkv, total_q, topK]: ids in [-2, nb+2) (holes, out-of-range), some duplicated."""
    parts = []
    for lq, lk in lens:
        nb = nblocks(lk, blk)
        parts.append(torch.randint(-2, nb + 2, (hkv, lq, topk), generator=gen, dtype=torch.int32))
    q2k = torch.cat(parts, dim=1)
    if topk >= 2 and q2k.shape[1]:
        dup = torch.rand(q2k.shape[:2], generator=gen) < 0.3
        q2k[..., 1] = torch.where(dup, q2k[..., 0], q2k[..., 1])
    return q2k


def attention_oracle(q, kf, vf, q2k, lens, k_starts, blk, causal, scale, temperature, table=None):
    """FP32 attention straight from the q2k selection (not through the CSR): (out, lse, tlse).

    `lens` = (L_q, L_k) per request; kf/vf dense [total_k, Hkv, D] with request b at k_starts[b],
    or paged [P, Hkv, blk, D] read through `table`."""
    total_q, hq, d = q.shape
    out = torch.zeros(total_q, hq, d)
    lse = torch.full((total_q, hq), -math.inf)
    tlse = lse.clone()
    q0 = 0
    for b, (lq, lk) in enumerate(lens):
        if lq:
            if table is None:
                kb, vb = kf[k_starts[b]:k_starts[b] + lk], vf[k_starts[b]:k_starts[b] + lk]
            else:
                kb, vb = ref_prefill.gather_paged_kv(kf, table[b], lk), ref_prefill.gather_paged_kv(vf, table[b], lk)
            vis = ref_attention.block_selection_visible(q2k[:, q0:q0 + lq], lk, blk)
            if causal:
                vis = vis & ref_attention.causal_visible(lq, lk).unsqueeze(0)
            o, l_, t_ = ref_attention.masked_attention(q[q0:q0 + lq].float(), kb.float(), vb.float(), vis, scale,
                                                       lse_temperature_scale=temperature)
            out[q0:q0 + lq], lse[q0:q0 + lq], tlse[q0:q0 + lq] = o, l_, t_
        q0 += lq
    return out, lse, tlse


# The CPU interpreter computes bf16 dots wrongly: its fuzz passes draw FP16 Q/K/V or FP8 K/V.
INTERPRETER_KV = ["half", "fp8_kv"]


@st.composite
def prefill_cases(draw, interpreter=False):
    blk = draw(BLOCKS)
    batch = draw(st.integers(1, 3))
    return SimpleNamespace(
        d=draw(HEAD_DIMS), blk=blk, hkv=draw(st.integers(1, 2)), group=draw(GROUPS),
        lens=[(draw(st.integers(0, 6)), key_length(draw, blk)) for _ in range(batch)],
        topk=draw(st.integers(1, 8)), causal=draw(st.booleans()), paged=draw(st.booleans()),
        trim=draw(st.booleans()),
        kv=draw(st.sampled_from(INTERPRETER_KV if interpreter else ["half", "half", "fp8_kv", "fp8_qkv", "nvfp4"])),
        dtype=torch.float16 if interpreter else draw(st.sampled_from(HALF)),
        rows=draw(st.sampled_from(["exact", "padded", "default"])),
        schedule=draw(st.booleans()), corrupt=draw(st.booleans()), out_buffer=draw(st.booleans()),
        temperature=draw(st.sampled_from([1.0, 0.5, 1.7])), scale=draw(st.sampled_from([None, 0.05])),
        seed=draw(SEEDS),
    )


@FUZZ
@given(prefill_cases())
@counted
def test_fuzz_sparse_atten_func(p):
    """sparse_atten_func / sparse_atten_nvfp4_kv_func: dense and paged, ragged, holes, duplicates,
    out-of-range ids and queries, empty requests, FP16/BF16/FP8/NVFP4, vs attention from q2k."""
    gen = torch.Generator().manual_seed(p.seed)
    hq = p.hkv * p.group
    q_lens = [lq for lq, _ in p.lens]
    k_lens = [lk for _, lk in p.lens]
    cu_q, cu_k = cumsum32(q_lens), cumsum32(k_lens)
    total_q, total_k = int(cu_q[-1]), int(cu_k[-1])
    q = torch.randn(total_q, hq, p.d, generator=gen)
    k = torch.randn(total_k, p.hkv, p.d, generator=gen)
    v = torch.randn(total_k, p.hkv, p.d, generator=gen)
    q2k = random_selection(gen, p.lens, p.hkv, p.topk, p.blk)
    exact_rows = sum(nblocks(n, p.blk) for n in k_lens)
    # The contract's default total_rows is total_k // blk when that divides, which undercounts ragged
    # batches (rows past it are dropped): use it only where it covers every row.
    total_rows = {"exact": exact_rows, "padded": exact_rows + 2, "default": None}[p.rows]
    if total_rows is None and ref_csr.default_total_rows(total_k, p.blk, len(k_lens)) < exact_rows:
        total_rows = exact_rows
    built = msa.build_k2q_csr(q2k.to(DEV), cu_q.to(DEV), cu_k.to(DEV), p.blk, total_k=total_k,
                              total_rows=total_rows, return_schedule=p.schedule)
    row_ptr, q_idx = built[0], built[1]
    schedule = built[2] if p.schedule else None
    if p.corrupt and not p.schedule:  # a query listed twice counts once; queries past L_q are skipped
        row_ptr, q_idx = corrupt_csr(SimpleNamespace(row_ptr=row_ptr, q_idx=q_idx), seed=p.seed)

    q_dtype = FP8 if p.kv == "fp8_qkv" else p.dtype
    kv_dtype = FP8 if p.kv in ("fp8_kv", "fp8_qkv") else p.dtype
    q, k, v = q.to(q_dtype), k.to(kv_dtype), v.to(kv_dtype)
    lens = list(p.lens)
    kw = dict(cu_seqlens_q=cu_q.to(DEV), cu_seqlens_k=cu_k.to(DEV), max_seqlen_q=max(q_lens),
              max_seqlen_k=max(k_lens), blk_kv=p.blk, causal=p.causal, softmax_scale=p.scale,
              return_softmax_lse=True, return_temperature_lse=True, lse_temperature_scale=p.temperature,
              schedule=schedule)
    k_op, v_op, table = k, v, None
    if p.paged:
        k_op, v_op, table = to_paged(SimpleNamespace(cu_k=cu_k, k=k, v=v), p.blk, seed=p.seed)
        kw["page_table"] = table.to(DEV)
        if p.trim:  # seqused_k trims each request (whole blocks past it are ignored)
            used = [int(torch.randint(0, n + 1, (), generator=gen)) for n in k_lens]
            kw["seqused_k"] = torch.tensor(used, dtype=torch.int32, device=DEV)
            lens = [(lq, u) for (lq, _), u in zip(p.lens, used)]
    out_dtype = torch.bfloat16 if q_dtype == FP8 else q_dtype
    if p.out_buffer:
        kw["out"] = torch.full((total_q, hq, p.d), float("nan"), dtype=out_dtype, device=DEV)
    scale = p.d ** -0.5 if p.scale is None else p.scale
    args = (q.to(DEV), k_op.to(DEV), v_op.to(DEV), row_ptr, q_idx, p.topk)

    if p.kv == "nvfp4":
        qk, qv = msa.quantize_kv_bf16_to_nvfp4_128x4(k_op.to(DEV), v_op.to(DEV))
        out, lse, tlse = msa.sparse_atten_nvfp4_kv_func(
            args[0], qk.data, qv.data, qk.scale_128x4, qv.scale_128x4, qk.global_scale, qv.global_scale,
            row_ptr, q_idx, p.topk, **kw)
        # exact FP32 values of the codes (a BF16 dequantization would round them: LSE off by ~3e-3)
        kd, vd = (ref_nvfp4.dequantize_nvfp4_reference(t.data.cpu(), t.scale_128x4.cpu(), t.global_scale.cpu(),
                                                       *t.logical_scale_shape) for t in (qk, qv))
        ro, rl, rt = attention_oracle(q, kd, vd, q2k, lens, cu_k.tolist(), p.blk, p.causal, scale, p.temperature,
                                      table=table if p.paged else None)
    else:
        out, lse, tlse = msa.sparse_atten_func(*args, **kw)
        # paged or not, the oracle reads the dense K/V: the paged layout must not change the math
        ro, rl, rt = attention_oracle(q, k, v, q2k, lens, cu_k.tolist(), p.blk, p.causal, scale, p.temperature)
    assert out.shape == (total_q, hq, p.d) and out.dtype == out_dtype and lse.dtype == torch.float32
    if p.out_buffer:
        assert out is kw["out"]
    if p.temperature == 1.0:
        assert tlse is lse
    assert_empty_rows_zero(out, rl)
    if p.kv == "nvfp4":  # CONTRACT §7: NVFP4 vs the dequantized values 2e-2
        assert out.numel() == 0 or (out.float().cpu() - ro).abs().max().item() <= 2e-2
        assert_lse_close(lse.cpu(), rl, atol=2e-3)
        assert_lse_close(tlse.cpu(), rt, atol=2e-3)
    elif p.kv == "fp8_qkv":
        assert_fp8_close(out, lse, ro, rl)
        assert_lse_close(tlse.cpu(), rt, atol=2e-3)
    else:
        if ro.numel():  # the shared helper reduces over the whole tensor
            assert_out_close(out.cpu(), ro, p.dtype)
        assert_lse_close(lse.cpu(), rl)
        assert_lse_close(tlse.cpu(), rt)
    if p.kv == "fp8_kv":  # FP8 K/V must equal the same call on K/V upcast to q's dtype, bit for bit
        up = (args[0], args[1].to(p.dtype), args[2].to(p.dtype)) + args[3:]
        kw.pop("out", None)
        out16, lse16, _ = msa.sparse_atten_func(*up, **kw)
        assert torch.equal(out16, out) and torch.equal(lse16, lse)


# ----------------------------------------------------------------------------- decode


@st.composite
def decode_cases(draw, interpreter=False):
    blk = draw(BLOCKS)
    batch = draw(st.integers(1, 3))
    return SimpleNamespace(
        d=draw(HEAD_DIMS), blk=blk, hkv=draw(st.integers(1, 2)), group=draw(GROUPS),
        lens=[key_length(draw, blk) for _ in range(batch)], seqlen_q=draw(st.integers(1, 4)),
        topk=draw(st.integers(1, 8)), sparse=draw(st.booleans()), causal=draw(st.booleans()),
        kv=draw(st.sampled_from(INTERPRETER_KV if interpreter else ["half", "half", "fp8_kv", "fp8_qkv"])),
        dtype=torch.float16 if interpreter else draw(st.sampled_from(HALF)),
        scales=draw(st.booleans()), wrapper=draw(st.booleans()), seed=draw(SEEDS),
    )


def decode_via_prefill(case, causal):
    """The same paged decode through sparse_atten_func on CPU tensors (bottom-right causal:
    query i of request b at seqused_k[b] - seqlen_q + i, exactly the decode position)."""
    sq, blk = case["seqlen_q"], case["blk_kv"]
    lens = case["seqused_k"].tolist()
    q2k = case["q2k_indices"]
    if q2k is None:  # dense decode = every block selected
        nb = max(max(nblocks(n, blk) for n in lens), 1)
        q2k = torch.arange(nb, dtype=torch.int32).expand(case["k"].shape[1], len(lens) * sq, nb).contiguous()
    cu_q = cumsum32([sq] * len(lens))
    cu_k = cumsum32(lens)
    row_ptr, q_idx = msa.build_k2q_csr(q2k.cpu(), cu_q, cu_k, blk, total_k=int(cu_k[-1]),
                                       total_rows=sum(nblocks(n, blk) for n in lens))
    return msa.sparse_atten_func(
        case["q"].cpu(), case["k"].cpu(), case["v"].cpu(), row_ptr, q_idx, q2k.shape[2], cu_seqlens_q=cu_q,
        cu_seqlens_k=cu_k, max_seqlen_q=sq, max_seqlen_k=max(lens), blk_kv=blk, causal=causal,
        return_softmax_lse=True, page_table=case["page_table"].cpu(), seqused_k=case["seqused_k"].cpu())


@FUZZ
@given(decode_cases())
@counted
def test_fuzz_sparse_decode_atten_func(p):
    """sparse_decode_atten_func and its plan/run wrapper: sparse and dense, seqlen_q 1..4, FP8 with
    scales, vs the decode reference and vs the same work done by the prefill path."""
    hq = p.hkv * p.group
    case = make_decode_case(lens=p.lens, seqlen_q=p.seqlen_q, hq=hq, hkv=p.hkv, d=p.d, blk=p.blk, topk=p.topk,
                            dtype=torch.float32, device="cpu", seed=p.seed, sparse=p.sparse)
    fp8_kv = p.kv != "half"
    k_scale = v_scale = None
    if fp8_kv and p.scales:
        k_scale, v_scale = torch.tensor([0.5]), torch.tensor([2.0])
        case["k"], case["v"] = case["k"] / 0.5, case["v"] / 2.0
    case["q"] = case["q"].to(FP8 if p.kv == "fp8_qkv" else p.dtype)
    case["k"], case["v"] = (case[n].to(FP8 if fp8_kv else p.dtype) for n in ("k", "v"))
    dev = {n: (t.to(DEV) if isinstance(t, torch.Tensor) else t) for n, t in case.items()}
    scales = dict(k_scale=None if k_scale is None else k_scale.to(DEV),
                  v_scale=None if v_scale is None else v_scale.to(DEV))
    if p.wrapper:
        wrapper = msa.SparseDecodePagedAttentionWrapper(blk_kv=p.blk, causal=p.causal)
        wrapper.plan(page_table=dev["page_table"], seqused_k=dev["seqused_k"], seqlen_q=p.seqlen_q,
                     max_seqlen_k=max(p.lens), q2k_indices=dev["q2k_indices"], num_qo_heads=hq,
                     num_kv_heads=p.hkv, head_dim=p.d)
        out, lse = wrapper.run(dev["q"], dev["k"], dev["v"], return_softmax_lse=True, **scales)
    else:
        out, lse = msa.sparse_decode_atten_func(
            dev["q"], dev["k"], dev["v"], dev["q2k_indices"], page_table=dev["page_table"],
            seqused_k=dev["seqused_k"], seqlen_q=p.seqlen_q, max_seqlen_k=max(p.lens), blk_kv=p.blk,
            causal=p.causal, return_softmax_lse=True, **scales)
    assert out.shape == case["q"].shape
    assert out.dtype == (torch.bfloat16 if p.kv == "fp8_qkv" else p.dtype)
    ref_out, ref_lse = decode_reference_of(case, causal=p.causal, k_scale=k_scale, v_scale=v_scale)
    assert_empty_rows_zero(out, ref_lse)
    if fp8_kv:
        assert_fp8_close(out, lse, ref_out, ref_lse)
    else:
        abs_v = decode_reference_of(dict(case, v=case["v"].abs()), causal=p.causal)[0]
        assert_close_half(out, lse, ref_out, ref_lse, ref_abs_v=abs_v)
    if CROSS_CHECK_REFERENCES and k_scale is None:  # the prefill path takes no FP8 scales
        pre_out, pre_lse = decode_via_prefill(case, p.causal)
        assert_out_close(pre_out, ref_out, pre_out.dtype)
        assert_lse_close(pre_lse, ref_lse, atol=1e-5)


# ----------------------------------------------------------------------------- FlashRT helpers


@st.composite
def slot_cases(draw, interpreter=False):
    block = draw(BLOCKS)
    batch = draw(st.integers(1, 4))
    return SimpleNamespace(
        d=draw(HEAD_DIMS), block=block, hkv=draw(st.integers(1, 2)), group=draw(GROUPS),
        lens=[key_length(draw, block) for _ in range(batch)], topk=draw(st.integers(1, 8)),
        sink=draw(st.booleans()), shuffle=draw(st.booleans()),
        dtype=torch.float16 if interpreter else draw(st.sampled_from(HALF)),
        fp8_kv=draw(st.booleans()), scale=draw(st.sampled_from([None, 0.07])), seed=draw(SEEDS),
    )


def slot_case_as_paged(case):
    """Copy the token-slot cache into a paged one (page = block) for the paged decode."""
    lens, block = case["seq_lens"].tolist(), case["block_size"]
    pages = max(max(nblocks(n, block) for n in lens), 1)
    hkv, d = case["k_cache"].shape[1:]
    kp = torch.zeros(len(lens) * pages, hkv, block, d)  # fp32 holds FP16/BF16/FP8 values exactly
    vp = torch.zeros_like(kp)
    for b, n in enumerate(lens):
        t = torch.arange(n)
        slots = case["req_to_token"][case["slot_ids"][b], :n].long()
        kp[b * pages + t // block, :, t % block] = case["k_cache"][slots].float()
        vp[b * pages + t // block, :, t % block] = case["v_cache"][slots].float()
    table = torch.arange(len(lens) * pages, dtype=torch.int32).view(len(lens), pages)
    return kp, vp, table


@FUZZ
@given(slot_cases())
@counted
def test_fuzz_flash_decode_with_gqa_share_sparse(p):
    """Token-slot sparse decode with an optional sink vs the reference, and vs the paged decode
    of the same cache with the sink folded in (out * exp(lse - logaddexp(lse, sink logit)))."""
    hq = p.hkv * p.group
    case = make_slot_case(lens=p.lens, hq=hq, hkv=p.hkv, d=p.d, block=p.block, topk=p.topk, dtype=torch.float32,
                          device="cpu", seed=p.seed, with_sink=p.sink)
    if p.shuffle:  # any order, -1 anywhere
        gen = torch.Generator().manual_seed(p.seed)
        perm = torch.randperm(p.topk, generator=gen)
        case["topk_idx"] = case["topk_idx"][..., perm].contiguous()
    case["q"] = case["q"].to(p.dtype)
    if case["sink"] is not None:
        case["sink"] = case["sink"].to(p.dtype)
    for n in ("k_cache", "v_cache"):
        case[n] = case[n].to(FP8 if p.fp8_kv else p.dtype)
    dev = {n: (t.to(DEV) if isinstance(t, torch.Tensor) else t) for n, t in case.items()}
    out = msa.flash_decode_with_gqa_share_sparse(**dev, sm_scale=p.scale)
    assert out.shape == case["q"].shape and out.dtype == p.dtype
    ref_out, ref_lse = slot_reference_of(dict(case, sm_scale=p.scale))
    if p.fp8_kv:
        assert (out.float().cpu() - ref_out.bfloat16().float()).abs().max().item() <= 0.125
    else:
        abs_v = slot_reference_of(dict(case, v_cache=case["v_cache"].abs(), sm_scale=p.scale))[0]
        assert_close_half(out, ref_lse, ref_out, ref_lse, ref_abs_v=abs_v)
    assert_empty_rows_zero(out, ref_lse)
    if not CROSS_CHECK_REFERENCES:
        return
    # the same work through the paged decode reference (no sink), then the sink's extra logit by hand
    kp, vp, table = slot_case_as_paged(case)
    scale = p.d ** -0.5 if p.scale is None else p.scale
    want_out, want_lse = ref_decode.sparse_decode_reference(
        case["q"], kp, vp, case["topk_idx"], table, case["seq_lens"].int(), 1, p.block, softmax_scale=scale)
    if case["sink"] is not None:
        logit = scale * torch.einsum("bhd,hd->bh", case["q"].float(), case["sink"].float())
        plain_lse, want_lse = want_lse, torch.logaddexp(want_lse, logit)
        want_out = want_out * torch.exp(plain_lse - want_lse).unsqueeze(-1)
    assert torch.allclose(want_out, ref_out, rtol=1e-5, atol=1e-5)
    assert_lse_close(want_lse, ref_lse, atol=1e-5)


@st.composite
def indexer_cases(draw, interpreter=False):
    block = draw(st.sampled_from([16, 64, 128]))
    batch = draw(st.integers(1, 3))
    topk = draw(st.integers(1, 8))
    init = draw(st.integers(0, topk))
    return SimpleNamespace(
        d=draw(HEAD_DIMS), block=block, hkv=draw(st.integers(1, 2)), group=draw(st.sampled_from([1, 2, 4])),
        lens=[key_length(draw, block, blocks=6) for _ in range(batch)], topk=topk, init=init,
        # the index value runs the token-slot decode kernel: blocks of 64 or more (checked on every device)
        local=draw(st.integers(0, topk - init)), dense=draw(st.booleans()),
        no_value=draw(st.booleans()) or block < 64,
        sink=draw(st.booleans()), dtype=torch.float16 if interpreter else draw(st.sampled_from(HALF)),
        scale=draw(st.sampled_from([None, 0.1])), seed=draw(SEEDS),
    )


@FUZZ
@given(indexer_cases())
@counted
def test_fuzz_flash_decode_with_topk_idx(p):
    """Decode indexer: the selection vs torch.topk on the block-max scores (forced blocks first,
    ties as score multisets), and the index value vs per-head token-slot attention."""
    hq = p.hkv * p.group
    case = make_cache(p.lens, hq=hq, hkv=p.hkv, d=p.d, block_size=p.block, dtype=p.dtype, seed=p.seed)
    if not p.sink:
        case["sink"] = None
    dev = {n: (t.to(DEV) if isinstance(t, torch.Tensor) else t) for n, t in case.items()}
    o, topk_idx, extra = msa.flash_decode_with_topk_idx(
        **dev, topk=p.topk, init_blocks=p.init, local_blocks=p.local, sm_scale=p.scale,
        disable_index_value=p.no_value, use_dense_main_attn=p.dense)
    assert extra is None and topk_idx.dtype == torch.int32 and topk_idx.shape == (hq, len(p.lens), p.topk)
    sets = expected_selection(case, p.topk, p.init, p.local)
    idx = topk_idx.cpu()
    for (h, b), (forced, best, scores) in sets.items():
        row = idx[h, b].tolist()
        n = len(forced) + len(best)
        assert row[n:] == [-1] * (p.topk - n) and row[:len(forced)] == forced, (h, b, row, forced, best)
        got = torch.tensor(sorted(scores[row[len(forced):n]].tolist()))
        want = torch.tensor(sorted(scores[best].tolist()))
        # exact products, fp32 sums in another order on the GPU: near-ties may swap
        assert torch.allclose(got, want, rtol=0, atol=0 if not HAS_CUDA else 1e-3), (h, b, got, want)
    if p.no_value:
        assert o is None
        return
    assert o.shape == case["q"].shape and o.dtype == p.dtype
    scale = p.d ** -0.5 if p.scale is None else p.scale
    for h in range(hq):
        g = h // p.group
        want, want_lse = ref_decode.token_slot_decode_reference(
            case["q"][:, h:h + 1], None if case["sink"] is None else case["sink"][h:h + 1],
            case["k_cache"][:, g:g + 1], case["v_cache"][:, g:g + 1], case["req_to_token"], case["seq_lens"],
            case["slot_ids"], p.block, None if p.dense else idx[h:h + 1], scale)
        abs_v = ref_decode.token_slot_decode_reference(
            case["q"][:, h:h + 1], None if case["sink"] is None else case["sink"][h:h + 1],
            case["k_cache"][:, g:g + 1], case["v_cache"][:, g:g + 1].abs(), case["req_to_token"],
            case["seq_lens"], case["slot_ids"], p.block, None if p.dense else idx[h:h + 1], scale)[0]
        assert_close_half(o[:, h:h + 1], want_lse, want, want_lse, ref_abs_v=abs_v)


# ----------------------------------------------------------------------------- top-k and CSR


@st.composite
def topk_select_cases(draw):
    topk = draw(st.one_of(st.integers(1, 20), st.just(64)))
    fb = draw(st.integers(0, min(topk, 3)))
    return SimpleNamespace(
        h=draw(st.integers(1, 3)), k=draw(st.integers(1, 80)), t=draw(st.integers(0, 6)), topk=topk, fb=fb,
        fe=draw(st.integers(0, min(topk - fb, 3))), nvp=draw(st.sampled_from(["none", "int", "tensor32",
                                                                            "tensor64"])),
        specials=draw(st.booleans()), ties=draw(st.booleans()), output=draw(st.booleans()), seed=draw(SEEDS),
    )


@FUZZ
@given(topk_select_cases())
@counted
def test_fuzz_sparse_topk_select(p):
    """sparse_topk_select vs a brute-force transcription of CONTRACT §4 (exact, ties to the lower id)."""
    gen = torch.Generator().manual_seed(p.seed)
    s = make_scores((p.h, p.k, p.t), gen, specials=p.specials, ties=p.ties)
    nvp_list = torch.randint(-2, p.k + 4, (p.t,), generator=gen)
    nvp, brute_nvp = None, p.k
    if p.nvp == "int":
        nvp = brute_nvp = int(torch.randint(0, p.k + 4, (), generator=gen))
    elif p.nvp.startswith("tensor"):
        nvp = nvp_list.to(torch.int32 if p.nvp == "tensor32" else torch.int64).to(DEV)
        brute_nvp = nvp_list.tolist()
    output = torch.full((p.t, p.h, p.topk), 7, dtype=torch.int32, device=DEV) if p.output else None
    got = msa.sparse_topk_select(s.to(DEV), p.topk, nvp, output=output, force_begin_blocks=p.fb,
                                 force_end_blocks=p.fe)
    if output is not None:
        assert got is output
    assert got.dtype == torch.int32 and got.shape == (p.t, p.h, p.topk)
    assert torch.equal(got.cpu(), brute_sparse_topk(s, p.topk, brute_nvp, p.fb, p.fe))


@st.composite
def topk_scores_cases(draw):
    return SimpleNamespace(
        heads=draw(st.integers(1, 3)), batch=draw(st.integers(1, 4)), m=draw(st.integers(1, 60)),
        block=draw(st.sampled_from([1, 16, 64, 128])), topk=draw(st.one_of(st.integers(1, 20), st.just(64))),
        int64=draw(st.booleans()), specials=draw(st.booleans()), seed=draw(SEEDS),
    )


@FUZZ
@given(topk_scores_cases())
@counted
def test_fuzz_native_topk_from_scores(p):
    """native_topk_from_scores vs brute force: descending, ties to the lower id, -1 padded."""
    gen = torch.Generator().manual_seed(p.seed)
    score = make_scores((p.heads, p.batch, p.m), gen, specials=p.specials)
    lens = torch.randint(0, p.m * p.block + 2 * p.block, (p.batch,), generator=gen)
    lens = lens.to(torch.int64 if p.int64 else torch.int32)
    got = msa.native_topk_from_scores(score.to(DEV), lens.to(DEV), p.block, p.topk)
    assert got.dtype == torch.int32
    assert torch.equal(got.cpu(), brute_topk_from_scores(score, lens, p.block, p.topk))


@st.composite
def csr_cases(draw):
    blk = draw(st.sampled_from([1, 2, 4, 16, 64, 128]))
    return SimpleNamespace(
        batch=draw(st.integers(1, 4)), hkv=draw(st.integers(1, 3)), topk=draw(st.integers(1, 8)), blk=blk,
        max_q=draw(st.integers(0, 9)), max_k=draw(st.integers(0, 5 * blk + 3)), holes=draw(st.booleans()),
        rows=draw(st.sampled_from(["default", "exact", "padded", "short"])), layout=draw(st.sampled_from(
            ["head_major", "token_major_view", "int64"])), seed=draw(SEEDS),
    )


@FUZZ
@given(csr_cases())
@counted
def test_fuzz_build_k2q_csr(p):
    """build_k2q_csr (and the builder class) vs a brute-force transcription of CONTRACT §2.2, with
    holes, out-of-range and duplicate ids, empty requests and every total_rows choice."""
    gen = torch.Generator().manual_seed(p.seed)
    q2k, cu_q, cu_k = random_csr_case(gen, p.batch, p.hkv, p.topk, p.blk, max_q=p.max_q, max_k=p.max_k,
                                      holes=p.holes)
    total_k = int(cu_k[-1])
    exact = sum(nblocks(int(cu_k[b + 1] - cu_k[b]), p.blk) for b in range(p.batch))
    total_rows = {"default": None, "exact": exact, "padded": exact + 3, "short": max(exact - 2, 0)}[p.rows]
    rows = ref_csr.default_total_rows(total_k, p.blk, p.batch) if total_rows is None else total_rows
    want = brute_csr(q2k, cu_q, cu_k, p.blk, rows)
    ids = q2k.to(DEV)
    if p.layout == "token_major_view":  # the sparse_topk_select layout, permuted back (a strided view)
        ids = q2k.permute(1, 0, 2).contiguous().to(DEV).permute(1, 0, 2)
    elif p.layout == "int64":
        ids = ids.long()
    got = msa.build_k2q_csr(ids, cu_q.to(DEV), cu_k.to(DEV), p.blk, total_k=total_k, total_rows=total_rows,
                            return_schedule=True)
    builder = msa.SparseK2qCsrBuilderSm100()(ids, cu_q.to(DEV), cu_k.to(DEV), total_k=total_k, blk_kv=p.blk,
                                             total_rows=total_rows, return_schedule=True)
    for res in (got, builder):
        row_ptr, q_idx, sched = res
        assert torch.equal(row_ptr.cpu(), want[0]) and torch.equal(q_idx.cpu(), want[1])
        assert torch.equal(sched.qsplit_indices.cpu(), want[2]) and torch.equal(sched.split_counts.cpu(), want[3])
    seq_blocks = msa.get_cu_seqblocks((cu_k[1:] - cu_k[:-1]).to(DEV), p.blk)
    assert seq_blocks.tolist() == cumsum32([nblocks(int(cu_k[b + 1] - cu_k[b]), p.blk)
                                            for b in range(p.batch)]).tolist()


# ----------------------------------------------------------------------------- index branch


@st.composite
def fp4_cases(draw):
    batch = draw(st.integers(1, 3))
    causal = draw(st.booleans())
    return SimpleNamespace(
        fmt=draw(st.sampled_from(["mxfp4", "nvfp4"])), layout=draw(st.sampled_from(["public", "preordered_mma"])),
        q_lens=[draw(st.integers(0, 5)) for _ in range(batch)],
        k_lens=[key_length(draw, 128) for _ in range(batch)], hkv=draw(st.integers(1, 2)),
        group=draw(st.sampled_from([1, 2, 3, 4])), d=draw(HEAD_DIMS), causal=causal,
        offset=causal and draw(st.booleans()), seed=draw(SEEDS),
    )


@FUZZ
@given(fp4_cases())
@counted
def test_fuzz_fp4_indexer_block_scores(p):
    """fp4_indexer_block_scores vs the reference, both scale layouts agreeing, and the same scores
    from fmha_sm12x's max_score over the dequantized operands (exact in BF16)."""
    hq = p.hkv * p.group
    shape = dict(hq=hq, hkv=p.hkv, d=p.d, seed=p.seed)
    args, kw = make_fp4_case(p.fmt, p.layout, p.q_lens, p.k_lens, device=DEV, **shape)
    qo_offset = None
    if p.offset:
        gen = torch.Generator().manual_seed(p.seed)
        qo_offset = torch.tensor([int(torch.randint(-3, n + 4, (), generator=gen)) for n in p.k_lens],
                                 dtype=torch.int32)
    out = msa.fp4_indexer_block_scores(*args, causal=p.causal,
                                       qo_offset=None if qo_offset is None else qo_offset.to(DEV), **kw)
    cargs = [a.cpu() for a in args]
    ckw = dict(kw, kv_indices=kw["kv_indices"].cpu())
    expect = ref_indexer.fp4_indexer_block_scores_reference(*cargs, causal=p.causal, qo_offset=qo_offset, **ckw)
    assert_scores_close(out, expect)
    other = "public" if p.layout == "preordered_mma" else "preordered_mma"
    oargs, okw = make_fp4_case(p.fmt, other, p.q_lens, p.k_lens, device=DEV, **shape)
    out2 = msa.fp4_indexer_block_scores(*oargs, causal=p.causal,
                                        qo_offset=None if qo_offset is None else qo_offset.to(DEV), **okw)
    assert_scores_close(out2, expect)
    if not CROSS_CHECK_REFERENCES:
        return
    # the proxy FMHA over the dequantized operands (CPU copies) gives the same block maxima
    (q, k, qs, ks, *_), _ = make_fp4_case(p.fmt, "public", p.q_lens, p.k_lens, **shape)
    qd = ref_indexer.dequantize_fp4(q, qs, p.fmt).bfloat16()
    kd = ref_indexer.dequantize_fp4(k, ks, p.fmt).bfloat16()
    plan = msa.fmha_sm12x_plan(p.q_lens, p.k_lens, hq, p.hkv, qo_offset=qo_offset, page_size=128,
                               output_maxscore=True, causal=p.causal, device="cpu")
    _, ms = msa.fmha_sm12x(qd, kd, kd, plan, ckw["kv_indices"], output_o=False)
    assert_scores_close(ms, expect, fmha=True)


@st.composite
def fmha_cases(draw):
    batch = draw(st.integers(1, 3))
    return SimpleNamespace(
        q_lens=[draw(st.integers(0, 5)) for _ in range(batch)], k_lens=[key_length(draw, 128) for _ in range(batch)],
        hkv=draw(st.integers(1, 2)), group=draw(st.sampled_from([1, 2, 3, 4, 8, 20])), d=draw(HEAD_DIMS),
        page_size=draw(st.sampled_from([16, 64, 128])), causal=draw(st.booleans()),
        offset=draw(st.booleans()), dtype=draw(st.sampled_from(HALF + [FP8])), seed=draw(SEEDS),
    )


def to_pages(k, plan, kv_indices, num_pages):
    """Dense [total_k, Hkv, D] -> paged [num_pages, Hkv, page, D] through the plan's kv_indices."""
    ps = plan.page_size
    kp = torch.zeros(num_pages, k.shape[1], ps, k.shape[2], dtype=k.dtype)
    cu_k, cu_p = plan.cu_seqlens_k.tolist(), plan.cu_page_offsets.tolist()
    for b in range(plan.batch):
        for j in range(cu_p[b + 1] - cu_p[b]):
            t0, t1 = cu_k[b] + j * ps, min(cu_k[b] + (j + 1) * ps, cu_k[b + 1])
            kp[int(kv_indices[cu_p[b] + j]), :, : t1 - t0] = k[t0:t1].transpose(0, 1)
    return kp


@FUZZ
@given(fmha_cases())
@counted
def test_fuzz_fmha_sm12x_max_score(p):
    """fmha_sm12x proxy max_score (output_o=False): dense and paged plans of the same keys agree,
    and both match the reference (FP8 with scalar scales too)."""
    hq = p.hkv * p.group
    gen = torch.Generator().manual_seed(p.seed)
    offsets = [int(torch.randint(-3, n + 4, (), generator=gen)) for n in p.k_lens] if p.offset else None
    dense = msa.fmha_sm12x_plan(p.q_lens, p.k_lens, hq, p.hkv, qo_offset=offsets, page_size=-1,
                                output_maxscore=True, causal=p.causal, device=DEV)
    paged = msa.fmha_sm12x_plan(p.q_lens, p.k_lens, hq, p.hkv, qo_offset=offsets, page_size=p.page_size,
                                output_maxscore=True, causal=p.causal, device=DEV)
    q, k, v, _ = make_fmha_inputs(dense, p.d, torch.float32, "cpu", seed=p.seed)
    scales = {}
    if p.dtype == FP8:
        scales = dict(q_scale=0.5, k_scale=2.0, v_scale=1.0)
        q, k, v = (q / 0.5).to(FP8), (k / 2.0).to(FP8), v.to(FP8)
    else:
        q, k, v = q.to(p.dtype), k.to(p.dtype), v.to(p.dtype)
    used = int(paged.cu_page_offsets[-1])
    kv_indices = torch.randperm(used + 2, generator=gen)[:used].to(torch.int32)
    kp = to_pages(k, paged, kv_indices, used + 2)
    none, ms = msa.fmha_sm12x(q.to(DEV), k.to(DEV), v.to(DEV), dense, output_o=False, **scales)
    assert none is None and ms.shape == (hq, dense.num_kv_tiles, dense.total_q) and ms.dtype == torch.float32
    _, ms_paged = msa.fmha_sm12x(q.to(DEV), kp.to(DEV), kp.to(DEV), paged, kv_indices.to(DEV), output_o=False,
                                 **scales)
    _, rms = fmha_reference(q, k, v, dense, None, **scales)
    assert_scores_close(ms, rms, fmha=True)
    assert_scores_close(ms_paged, rms, fmha=True)


# ----------------------------------------------------------------------------- NVFP4


@st.composite
def nvfp4_cases(draw):
    lead = draw(st.lists(st.integers(0, 5), min_size=1, max_size=3))
    return SimpleNamespace(
        shape=tuple(lead) + (16 * draw(st.integers(1, 8)),), dtype=draw(st.sampled_from(HALF)),
        magnitude=draw(st.sampled_from([1e-6, 1e-2, 1.0, 1e3, 6e4])), specials=draw(st.floats(0.0, 0.3)),
        zero_blocks=draw(st.booleans()), seed=draw(SEEDS),
    )


def nvfp4_input(p):
    gen = torch.Generator().manual_seed(p.seed)
    n = math.prod(p.shape)
    x = torch.randn(n, generator=gen) * torch.exp(torch.randn(n, generator=gen) * 2) * p.magnitude
    pick = torch.rand(n, generator=gen)
    special = torch.tensor([math.nan, math.inf, -math.inf, 0.0, -0.0])[torch.randint(0, 5, (n,), generator=gen)]
    x = torch.where(pick < p.specials, special, x)
    if p.zero_blocks and n >= 16:
        x[:16] = 0.0
    if p.dtype == torch.float16:  # keep NaN and Inf, but no finite value beyond the FP16 range
        x = torch.where(torch.isfinite(x), x.clamp(-6e4, 6e4), x)
    return x.view(p.shape).to(p.dtype)


@FUZZ
@given(nvfp4_cases())
@counted
def test_fuzz_nvfp4_quantize_dequantize(p):
    """NVFP4 quantize/dequantize: bit-exact vs the reference recipe, plus the contract's properties:
    global = finite amax / 2688, NaN -> code 0 (dequantizes to 0), sign bit kept, +-Inf saturate,
    and the round-trip error of every finite element within one E2M1 step (or the saturation)."""
    x = nvfp4_input(p).to(DEV)
    assert_matches_reference(x)
    q = msa.quantize_bf16_to_nvfp4_128x4(x)
    d = p.shape[-1]
    rows, cols = x.numel() // d, d // 16
    assert q.data.shape == p.shape[:-1] + (d // 2,) and q.data.dtype == torch.uint8
    assert q.logical_scale_shape == (rows, cols) and q.original_shape == p.shape
    assert q.scale_128x4.numel() == ref_nvfp4.round_up(rows, 128) * ref_nvfp4.round_up(cols, 4)
    xf = x.float().cpu()
    finite = torch.isfinite(xf)
    amax = xf.abs()[finite].max() if finite.any() else torch.tensor(0.0)
    want_global = amax / 2688 if amax > 0 else torch.tensor(1.0)
    assert q.global_scale.cpu().item() == want_global.item()
    out = msa.dequantize_nvfp4_128x4_to_bf16(q)
    assert out.dtype == torch.bfloat16 and out.shape == p.shape
    out = out.float().cpu()
    nan = torch.isnan(xf)
    assert not torch.isnan(out).any() and (out[nan] == 0).all()
    if rows:
        codes = codes_of(q.data.cpu()).view(p.shape)
        assert (codes[nan] == 0).all()
        assert torch.equal((codes[~nan] >> 3).bool(), torch.signbit(xf[~nan]))
        step = logical_scales(q).view(torch.float8_e4m3fn).float() * q.global_scale.cpu()
        step = step.repeat_interleave(16, dim=1).view(p.shape)
        inf = torch.isinf(xf)
        assert ((codes[inf] & 7) == 7).all()  # an Inf block gets scale 448: Inf saturates to 6
        bound = torch.maximum(step, xf.abs() - 6 * step) + out.abs() * 2**-8
        assert ((out - xf).abs() <= bound)[finite].all()
        raw = msa.dequantize_nvfp4_128x4_to_bf16(q, include_global_scale=False).float().cpu()
        assert torch.allclose(raw * q.global_scale.cpu(), out, rtol=2**-7, atol=0)
    # K/V pairs are two independent quantizations
    qk, qv = msa.quantize_kv_bf16_to_nvfp4_128x4(x, -x)
    qn = msa.quantize_bf16_to_nvfp4_128x4(-x)
    for a, b in ((qk, q), (qv, qn)):
        assert torch.equal(a.data, b.data) and torch.equal(a.scale_128x4, b.scale_128x4)
        assert torch.equal(a.global_scale, b.global_scale)
    g = msa.nvfp4_global_scale_from_amax(amax.to(p.dtype))
    assert g.dtype == torch.float32 and g.item() == (amax.to(p.dtype).float() / 2688).item()


@FUZZ
@given(st.integers(0, 300), st.integers(0, 13), st.booleans(), SEEDS)
@counted
def test_fuzz_nvfp4_scale_swizzle(rows, cols, as_fp8, seed):
    """swizzle_nvfp4_scale_to_128x4 puts scale (r, c) at the CONTRACT §2.4 offset, pads with 0,
    and unswizzle_nvfp4_scale_from_128x4 inverts it."""
    gen = torch.Generator().manual_seed(seed)
    scale = torch.randint(0, 256, (rows, cols), generator=gen, dtype=torch.uint8)
    src = scale.view(torch.float8_e4m3fn) if as_fp8 else scale
    flat = msa.swizzle_nvfp4_scale_to_128x4(src.to(DEV), rows=rows, cols=cols).cpu()
    rp, cp = -(-rows // 128) * 128, -(-cols // 4) * 4
    assert flat.dtype == torch.uint8 and flat.shape == (rp * cp,)
    r = torch.arange(rows).view(-1, 1)
    c = torch.arange(cols).view(1, -1)
    tiles_n = cp // 4
    offset = ((r // 128) * tiles_n + c // 4) * 512 + (r % 32) * 16 + ((r % 128) // 32) * 4 + c % 4
    assert torch.equal(flat[offset.reshape(-1)].view(rows, cols), scale)
    padding = torch.ones(rp * cp, dtype=torch.bool)
    padding[offset.reshape(-1)] = False
    assert not flat[padding].any()
    back = msa.unswizzle_nvfp4_scale_from_128x4(flat.to(DEV), rows=rows, cols=cols)
    assert torch.equal(back.cpu(), scale)


# ----------------------------------------------------------------------------- interpreter passes
# The same properties with the Triton kernels on the CPU interpreter (the SM12x launch configs,
# every access bounds-checked by tests/interp_bounds.py), few examples: CI has no GPU.
INTERPRETER_EXAMPLES = int(os.environ.get("MSA_INTERP_FUZZ_EXAMPLES", "10"))
INTERPRETER_FUZZ = settings(FUZZ, max_examples=INTERPRETER_EXAMPLES)


def interpreter_fuzz(gpu_fuzz_test, cases):
    """The property of `gpu_fuzz_test` over `cases`, as a test of the interpreter pass."""
    @pytest.mark.triton
    @pytest.mark.skipif(not INTERPRET or HAS_CUDA, reason="the CPU interpreter pass")
    @INTERPRETER_FUZZ
    @given(cases)
    def test(p):
        gpu_fuzz_test.hypothesis.inner_test(p=p)
    return test


test_interpreter_fuzz_sparse_atten_func = interpreter_fuzz(test_fuzz_sparse_atten_func,
                                                           prefill_cases(interpreter=True))
test_interpreter_fuzz_sparse_decode_atten_func = interpreter_fuzz(test_fuzz_sparse_decode_atten_func,
                                                                  decode_cases(interpreter=True))
test_interpreter_fuzz_flash_decode_with_gqa_share_sparse = interpreter_fuzz(
    test_fuzz_flash_decode_with_gqa_share_sparse, slot_cases(interpreter=True))
test_interpreter_fuzz_flash_decode_with_topk_idx = interpreter_fuzz(test_fuzz_flash_decode_with_topk_idx,
                                                                    indexer_cases(interpreter=True))
# FP8 and BF16 scores-only matched the reference on the interpreter: the cases as drawn
test_interpreter_fuzz_fmha_sm12x_max_score = interpreter_fuzz(test_fuzz_fmha_sm12x_max_score, fmha_cases())
