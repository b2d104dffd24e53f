"""FlashRT/SGLang token-slot decode helpers vs the reference."""
import importlib

import pytest
import torch
from _pkg import TRITON_DEVICE, TRITON_HALF, msa, needs_cuda, needs_triton

flashrt = importlib.import_module(msa.__name__ + ".flashrt")
ref_decode = importlib.import_module(msa.__name__ + ".reference.decode")


def make_slot_case(*, lens, hq, hkv, d, block, topk, dtype, device, seed=0, with_sink=True):
    """Token-slot cache with shuffled slots; requests use scattered rows of req_to_token."""
    gen = torch.Generator().manual_seed(seed)
    batch = len(lens)
    max_kv_len = max(max(lens), 1) + 8
    max_slots = sum(lens) + 16
    k = torch.randn(max_slots, hkv, d, generator=gen)
    v = torch.randn(max_slots, hkv, d, generator=gen)
    req_to_token = torch.full((batch + 2, max_kv_len), -1, dtype=torch.int32)
    perm = torch.randperm(max_slots, generator=gen)
    slot_ids = torch.randperm(batch + 2, generator=gen)[:batch]
    start = 0
    for b, n in enumerate(lens):
        req_to_token[slot_ids[b], :n] = perm[start:start + n].int()
        start += n
    nb_max = max((n + block - 1) // block for n in lens)
    topk_idx = torch.randint(-1, nb_max + 1, (hkv, batch, topk), generator=gen)
    topk_idx, _ = torch.sort(topk_idx, dim=-1, descending=True)  # left-packed, -1 on the right
    q = torch.randn(batch, hq, d, generator=gen)
    sink = torch.randn(hq, d, generator=gen) if with_sink else None
    to = dict(device=device)
    return dict(q=q.to(dtype=dtype, **to), sink=None if sink is None else sink.to(dtype=dtype, **to),
                k_cache=k.to(dtype=dtype, **to), v_cache=v.to(dtype=dtype, **to), req_to_token=req_to_token.to(**to),
                seq_lens=torch.tensor(lens, dtype=torch.int64, **to), slot_ids=slot_ids.to(**to),
                block_size=block, topk_idx=topk_idx.int().contiguous().to(**to))


def reference_of(case):
    cpu = {n: (t.cpu() if isinstance(t, torch.Tensor) else t) for n, t in case.items()}
    return ref_decode.token_slot_decode_reference(**cpu)


@pytest.mark.triton
@needs_triton
@pytest.mark.parametrize("with_sink", [True, False])
@pytest.mark.parametrize("hq,hkv", [(4, 2), (8, 1)])
def test_token_slot_sparse_matches_reference(with_sink, hq, hkv):
    case = make_slot_case(lens=[200, 0, 65, 1], hq=hq, hkv=hkv, d=64, block=64, topk=3, dtype=TRITON_HALF,
                          device=TRITON_DEVICE, seed=hq + with_sink, with_sink=with_sink)
    out = flashrt.flash_decode_with_gqa_share_sparse(**case)
    ref_out, _ = reference_of(case)
    assert out.shape == case["q"].shape and out.dtype == case["q"].dtype
    err = (out.float().cpu() - ref_out).abs().max().item()
    assert err <= 2 * (ref_out.to(out.dtype).float() - ref_out).abs().max().item() + 2e-3
    assert (out[1].float() == 0).all()  # seq_len 0


@pytest.mark.sanitize
@pytest.mark.triton
@needs_triton
def test_token_slot_split_dense_and_lse_with_bad_slots():
    case = make_slot_case(lens=[64 * 5 + 3], hq=4, hkv=1, d=64, block=64, topk=6, dtype=TRITON_HALF,
                          device=TRITON_DEVICE, seed=21)
    req = int(case["slot_ids"][0])
    case["req_to_token"][req, 3] = 10 ** 6  # out of the cache: skipped
    case["req_to_token"][req, 70] = -5
    for topk_idx in (case["topk_idx"], None):
        case_now = dict(case, topk_idx=topk_idx)
        out, lse = flashrt.token_slot_decode(**case_now, return_softmax_lse=True)
        ref_out, ref_lse = reference_of(case_now)
        assert (out.float().cpu() - ref_out).abs().max().item() < 5e-3
        assert torch.allclose(lse.cpu(), ref_lse, atol=1e-3, rtol=0)


def test_naive_matches_reference_and_sink_enlarges_denominator():
    case = make_slot_case(lens=[70, 5], hq=4, hkv=2, d=64, block=64, topk=2, dtype=torch.float16, device="cpu")
    with_sink = flashrt.naive_flash_decode_with_gqa_share_sparse(**case)
    without = flashrt.naive_flash_decode_with_gqa_share_sparse(**dict(case, sink=None))
    ref_out, ref_lse = reference_of(case)
    ref_plain, ref_plain_lse = reference_of(dict(case, sink=None))
    assert torch.equal(with_sink, ref_out.half()) and torch.equal(without, ref_plain.half())
    assert (ref_lse > ref_plain_lse).all()
    # Same direction, smaller weight: out_sink = out * exp(lse_plain - lse_sink).
    ratio = torch.exp(ref_plain_lse - ref_lse).unsqueeze(-1)
    assert torch.allclose(ref_out, ref_plain * ratio, atol=1e-5)


def test_get_cu_seqblocks():
    cu = flashrt.get_cu_seqblocks(torch.tensor([0, 1, 64, 65, 200]), 64)
    assert cu.dtype == torch.int32
    assert cu.tolist() == [0, 0, 1, 2, 4, 8]


def test_bad_input_errors():
    case = make_slot_case(lens=[70], hq=4, hkv=2, d=64, block=64, topk=2, dtype=torch.float16, device="cpu")
    with pytest.raises(ValueError, match="topk_idx"):
        flashrt.flash_decode_with_gqa_share_sparse(**dict(case, topk_idx=case["topk_idx"][:1]))
    with pytest.raises(ValueError, match="sink"):
        flashrt.flash_decode_with_gqa_share_sparse(**dict(case, sink=case["sink"][:2]))
    with pytest.raises(TypeError, match="req_to_token"):
        flashrt.flash_decode_with_gqa_share_sparse(**dict(case, req_to_token=case["req_to_token"].long()))
    with pytest.raises(ValueError, match="slot_ids"):
        flashrt.flash_decode_with_gqa_share_sparse(**dict(case, slot_ids=case["slot_ids"].repeat(2)))


@pytest.mark.gpu
@needs_cuda
def test_gpu_token_slot_bf16_and_allocator():
    import triton

    triton.set_allocator(flashrt.robust_allocator)
    buf = flashrt.robust_allocator(1000, 128, None)
    assert buf.dtype == torch.uint8 and buf.is_cuda and buf.numel() == 1000 and buf.data_ptr() % 128 == 0
    case = make_slot_case(lens=[5000, 17, 128 * 40, 1], hq=64, hkv=4, d=128, block=128, topk=16,
                          dtype=torch.bfloat16, device="cuda", seed=3)
    out = flashrt.flash_decode_with_gqa_share_sparse(**case)
    ref_out, _ = reference_of(case)
    out = out.float().cpu()
    assert (out - ref_out).abs().max().item() <= 2 * (ref_out.bfloat16().float() - ref_out).abs().max().item() + 2e-3
    naive = flashrt.naive_flash_decode_with_gqa_share_sparse(**case)
    assert naive.is_cuda and torch.allclose(naive.float().cpu(), out, atol=2e-2)
