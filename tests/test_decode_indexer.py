"""flash_decode_with_topk_idx: block scores, forced blocks, selection vs torch.topk, the index value."""
import importlib
import math

import pytest
import torch
from _pkg import TRITON_DEVICE, TRITON_HALF, msa, needs_cuda, needs_triton

di = importlib.import_module(msa.__name__ + ".decode_indexer")
ref = importlib.import_module(msa.__name__ + ".reference.indexer")
ref_decode = importlib.import_module(msa.__name__ + ".reference.decode")


def make_cache(seq_lens, hq=4, hkv=1, d=32, block_size=64, dtype=torch.float16, device="cpu", seed=0):
    gen = torch.Generator().manual_seed(seed)
    batch = len(seq_lens)
    width = max(seq_lens) + 5
    max_slots = batch * width + 50
    req_to_token = torch.stack([torch.randperm(max_slots, generator=gen)[:width] for _ in range(batch + 1)])
    slot_ids = torch.randperm(batch + 1, generator=gen)[:batch]
    q = torch.randn(batch, hq, d, generator=gen).to(dtype)
    k = torch.randn(max_slots, hkv, d, generator=gen).to(dtype)
    v = torch.randn(max_slots, hkv, d, generator=gen).to(dtype)
    sink = torch.randn(hq, d, generator=gen).to(dtype)
    to = lambda t: t.to(device)  # noqa: E731
    return dict(q=to(q), sink=to(sink), k_cache=to(k), v_cache=to(v), req_to_token=to(req_to_token.to(torch.int32)),
                seq_lens=to(torch.tensor(seq_lens, dtype=torch.int32)), max_seqlen=width,
                slot_ids=to(slot_ids.to(torch.int64)), block_size=block_size)


def expected_selection(case, topk, init_blocks, local_blocks):
    """Forced blocks first (ascending), then the best other blocks by torch.topk, as sets per (head, b)."""
    bs = case["block_size"]
    max_blocks = -(-case["max_seqlen"] // bs)
    scores = ref.decode_block_scores_reference(case["q"].cpu(), case["k_cache"].cpu(), case["req_to_token"].cpu(),
                                               case["seq_lens"].cpu(), case["slot_ids"].cpu(), bs, max_blocks)
    sets = {}
    for b, n in enumerate(case["seq_lens"].tolist()):
        nb = -(-n // bs)
        forced = sorted(set(range(min(init_blocks, nb))) | set(range(max(nb - local_blocks, 0), nb)))
        rest = [j for j in range(nb) if j not in forced]
        for h in range(scores.shape[0]):
            s = scores[h, b, rest]
            take = min(topk - len(forced), int(torch.isfinite(s).sum()))
            best = [rest[i] for i in torch.topk(s, take).indices.tolist()] if take > 0 else []
            sets[h, b] = (forced, sorted(best), scores[h, b])
    return sets


def check_selection(topk_idx, sets, topk):
    assert topk_idx.dtype == torch.int32 and topk_idx.shape[2] == topk
    for (h, b), (forced, best, scores) in sets.items():
        row = topk_idx[h, b].tolist()
        n = len(forced) + len(best)
        assert row[n:] == [-1] * (topk - n)
        assert row[: len(forced)] == forced
        got = sorted(row[len(forced) : n])
        # ties allowed: compare the selected score multisets
        assert sorted(scores[got].tolist()) == sorted(scores[best].tolist())


def test_reference_selection_and_value():
    case = make_case = make_cache([300, 64, 130, 1])
    o, topk_idx, extra = di.naive_flash_decode_with_topk_idx(**case, topk=3, init_blocks=1, local_blocks=1)
    assert extra is None
    check_selection(topk_idx, expected_selection(make_case, 3, 1, 1), 3)
    # the index value attends over each head's own selected blocks (sink included)
    for h in range(4):
        sel = topk_idx[h : h + 1]
        want, _ = ref_decode.token_slot_decode_reference(
            case["q"][:, h : h + 1], case["sink"][h : h + 1], case["k_cache"], case["v_cache"], case["req_to_token"],
            case["seq_lens"], case["slot_ids"], case["block_size"], sel, 32 ** -0.5)
        assert torch.allclose(o[:, h : h + 1].float(), want, atol=2e-3)


def test_reference_dense_value_and_disable():
    case = make_cache([200, 70], hq=2)
    o, _, _ = di.naive_flash_decode_with_topk_idx(**case, topk=1, init_blocks=0, local_blocks=1,
                                                  use_dense_main_attn=True, sm_scale=0.3)
    want, _ = ref_decode.token_slot_decode_reference(
        case["q"], case["sink"], case["k_cache"], case["v_cache"], case["req_to_token"], case["seq_lens"],
        case["slot_ids"], case["block_size"], None, 0.3)
    assert torch.allclose(o.float(), want, atol=2e-3)
    o, _, _ = di.naive_flash_decode_with_topk_idx(**case, topk=1, init_blocks=0, local_blocks=1,
                                                  disable_index_value=True)
    assert o is None


def test_bad_inputs():
    case = make_cache([100])
    with pytest.raises(ValueError, match="init_blocks"):
        di.flash_decode_with_topk_idx(**case, topk=2, init_blocks=2, local_blocks=1)
    with pytest.raises(ValueError, match="score_type"):
        di.flash_decode_with_topk_idx(**case, topk=2, init_blocks=0, local_blocks=1, score_type="lse")
    with pytest.raises(TypeError, match="req_to_token"):
        di.flash_decode_with_topk_idx(**{**case, "req_to_token": case["req_to_token"].long()}, topk=2, init_blocks=0,
                                      local_blocks=1)
    with pytest.raises(ValueError, match="seq_lens"):
        di.flash_decode_with_topk_idx(**{**case, "seq_lens": case["seq_lens"].repeat(2)}, topk=2, init_blocks=0,
                                      local_blocks=1)
    with pytest.raises(ValueError, match="q heads"):
        di.flash_decode_with_topk_idx(**{**case, "k_cache": case["k_cache"].repeat(1, 3, 1)}, topk=2, init_blocks=0,
                                      local_blocks=1, disable_index_value=True)


@pytest.mark.triton
@needs_triton
def test_triton_scores_match_reference():
    case = make_cache([300, 64, 1, 0], hq=4, hkv=2, dtype=TRITON_HALF, device=TRITON_DEVICE, seed=1)
    case["req_to_token"][case["slot_ids"][0], 10] = -5  # a bad slot is skipped
    max_blocks = -(-case["max_seqlen"] // 64)
    out = di._decode_block_scores_op(case["q"], case["k_cache"], case["req_to_token"], case["slot_ids"],
                                     case["seq_lens"], 64, max_blocks, 1.0).cpu()
    expect = ref.decode_block_scores_reference(case["q"].cpu(), case["k_cache"].cpu(), case["req_to_token"].cpu(),
                                               case["seq_lens"].cpu(), case["slot_ids"].cpu(), 64, max_blocks)
    finite = torch.isfinite(expect)
    assert torch.equal(torch.isfinite(out), finite) and torch.all(out[~finite] == -math.inf)
    assert (out[finite] - expect[finite]).abs().max() <= 1e-3
    assert torch.all(out[:, 3] == -math.inf)


@pytest.mark.triton
@needs_triton
def test_triton_forced_blocks_and_large_group():
    # 20 index heads on one K head: two 16-head programs; forced blocks come back as +inf from the kernel
    case = make_cache([200, 70], hq=20, hkv=1, dtype=TRITON_HALF, device=TRITON_DEVICE, seed=4)
    max_blocks = -(-case["max_seqlen"] // 64)
    out = di._decode_block_scores_op(case["q"], case["k_cache"], case["req_to_token"], case["slot_ids"],
                                     case["seq_lens"], 64, max_blocks, 1.0, 1, 1).cpu()
    expect = ref.decode_block_scores_reference(case["q"].cpu(), case["k_cache"].cpu(), case["req_to_token"].cpu(),
                                               case["seq_lens"].cpu(), case["slot_ids"].cpu(), 64, max_blocks)
    expect = di.force_blocks(expect, case["seq_lens"].cpu(), 64, 1, 1)
    finite = torch.isfinite(expect)
    assert torch.equal(out == math.inf, expect == math.inf) and torch.equal(out == -math.inf, expect == -math.inf)
    assert (out[finite] - expect[finite]).abs().max() <= 1e-3


@pytest.mark.sanitize
@pytest.mark.triton
@needs_triton
def test_triton_end_to_end_matches_naive():
    case = make_cache([300, 64, 130], hq=4, hkv=1, d=64, dtype=TRITON_HALF, device=TRITON_DEVICE, seed=2)
    o, topk_idx, _ = di.flash_decode_with_topk_idx(**case, topk=3, init_blocks=1, local_blocks=1)
    ro, ridx, _ = di.naive_flash_decode_with_topk_idx(**case, topk=3, init_blocks=1, local_blocks=1)
    assert torch.equal(topk_idx.cpu(), ridx.cpu())
    assert (o.float() - ro.float()).abs().max().item() <= 2e-2


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("fp8", [False, True])
def test_gpu_long_context(fp8):
    case = make_cache([40_000, 128, 9_000], hq=4, hkv=1, d=128, block_size=128, dtype=torch.bfloat16, device="cuda",
                      seed=3)
    kw = {}
    if fp8:
        case["k_cache"] = case["k_cache"].to(torch.float8_e4m3fn)
        case["v_cache"] = case["v_cache"].to(torch.float8_e4m3fn)
        kw = dict(k_scale=0.5, v_scale=2.0)
    o, topk_idx, _ = di.flash_decode_with_topk_idx(**case, topk=16, init_blocks=1, local_blocks=2, **kw)
    ro, ridx, _ = di.naive_flash_decode_with_topk_idx(**case, topk=16, init_blocks=1, local_blocks=2, **kw)
    # equal scores can order differently: compare as score multisets per row
    scores = ref.decode_block_scores_reference(case["q"].cpu(), case["k_cache"].cpu(), case["req_to_token"].cpu(),
                                               case["seq_lens"].cpu(), case["slot_ids"].cpu(), 128,
                                               -(-case["max_seqlen"] // 128))
    for h in range(4):
        for b in range(3):
            a = [j for j in topk_idx[h, b].tolist() if j >= 0]
            r = [j for j in ridx[h, b].tolist() if j >= 0]
            assert sorted(scores[h, b, a].tolist()) == sorted(scores[h, b, r].tolist())
    assert (o.float() - ro.float()).abs().max().item() <= (0.125 if fp8 else 2e-2)
