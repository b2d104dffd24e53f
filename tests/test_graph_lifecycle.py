"""CUDA-graph lifecycle: capture once, replay with new metadata values written in place,
re-plan and re-capture as the batch grows and shrinks.

test_decode/test_prefill already capture one graph and replay it once (decode against the
reference only, prefill with unchanged inputs). Here every replay is compared bitwise with an
eager run of the same plan (same split, same kernels), and with the reference.
"""
import importlib

import pytest
import test_decode as td
import test_prefill as tp
import torch
from _pkg import msa, needs_cuda

decode = importlib.import_module(msa.__name__ + ".decode")
prefill = importlib.import_module(msa.__name__ + ".prefill")

pytestmark = [pytest.mark.gpu, needs_cuda]
DEVICE = "cuda"  # one name, so the bodies can be dry-run on the CPU reference path

HQ, HKV, TOPK, BLK = 16, 2, 16, 128
MAX_LEN = 2048  # every case's pool and page table cover this length, so refreshed lengths fit


# ---------------------------------------------------------------------------------------- decode


def _decode_case(batch, seed, sparse=True, seqlen_q=1, full=True):
    gen = torch.Generator().manual_seed(seed)
    lens = torch.randint(seqlen_q, MAX_LEN + 1, (batch,), generator=gen).tolist()
    if full:
        lens[0] = MAX_LEN  # sizes the page table and the plan's max_seqlen_k
    case = td._m3_case(batch, seqlen_q, lens, torch.bfloat16, hq=HQ, hkv=HKV, topk=TOPK, seed=seed)
    if not sparse:
        case["q2k_indices"] = None
    return case


def _refresh(case, seed):
    """New q, lengths (<= the planned max), page table and selection, written in place."""
    batch = case["seqused_k"].numel()
    fresh = _decode_case(batch, seed, sparse=case["q2k_indices"] is not None, seqlen_q=case["seqlen_q"], full=False)
    table = case["page_table"]
    perm = torch.randperm(case["k"].shape[0], generator=torch.Generator().manual_seed(seed))
    table.copy_(perm[:table.numel()].view(table.shape))
    case["seqused_k"].copy_(fresh["seqused_k"])
    case["q"].copy_(fresh["q"])
    if case["q2k_indices"] is not None:
        case["q2k_indices"].copy_(fresh["q2k_indices"])


def _plan(wrapper, case):
    return wrapper.plan(page_table=case["page_table"], seqused_k=case["seqused_k"], seqlen_q=case["seqlen_q"],
                        max_seqlen_k=case["max_seqlen_k"], q2k_indices=case["q2k_indices"], num_qo_heads=HQ,
                        num_kv_heads=HKV, head_dim=case["q"].shape[2])


def _capture(wrapper, case):
    out = torch.empty_like(case["q"])
    lse = torch.empty(case["q"].shape[:2], dtype=torch.float32, device=DEVICE)
    wrapper.run(case["q"], case["k"], case["v"], out=out, lse=lse)  # compile outside the capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        wrapper.run(case["q"], case["k"], case["v"], out=out, lse=lse)
    out.fill_(float("nan"))  # the capture ran nothing: a replay must write every element
    lse.fill_(float("nan"))
    return out, lse, graph


def _functional_splits(case):
    """The split count sparse_decode_atten_func picks for this case (BF16 K/V)."""
    rows, hq, _ = case["q"].shape
    hkv = case["k"].shape[1]
    topk = None if case["q2k_indices"] is None else case["q2k_indices"].shape[2]
    return decode.plan_launch(case["q"].device, hq // hkv, rows * decode.head_blocks(hkv, hq // hkv, False),
                              case["blk_kv"], False, topk, case["max_seqlen_k"])[1]


def _check_replay(wrapper, case, out, lse):
    eager_out, eager_lse = torch.empty_like(out), torch.empty_like(lse)
    wrapper.run(case["q"], case["k"], case["v"], out=eager_out, lse=eager_lse)
    assert torch.equal(out, eager_out), "graph replay differs from the eager run of the same plan"
    assert torch.equal(lse, eager_lse)
    if _functional_splits(case) == wrapper.num_splits:  # same split, same kernels: same bits
        f_out, f_lse = td.run_case(case)
        assert torch.equal(out, f_out) and torch.equal(lse, f_lse)
    td._bf16_check(out, lse, *td.reference_of(case))


@pytest.mark.parametrize("sparse,seqlen_q", [(True, 1), (False, 1), (True, 2)])
def test_decode_replays_with_new_metadata_match_eager(sparse, seqlen_q):
    case = _decode_case(3, seed=1, sparse=sparse, seqlen_q=seqlen_q)
    wrapper = _plan(decode.SparseDecodePagedAttentionWrapper(blk_kv=BLK), case)
    assert wrapper.num_splits > 1  # the graph holds the split kernel and the merge
    out, lse, graph = _capture(wrapper, case)
    for seed in (2, 3, 4):
        _refresh(case, seed)
        graph.replay()
        _check_replay(wrapper, case, out, lse)


def test_decode_graph_per_batch_size_replayed_interleaved():
    # One plan and graph per batch-size bucket, replayed in growing and shrinking order.
    buckets = {}
    for i, batch in enumerate((1, 8, 32, 3)):
        case = _decode_case(batch, seed=10 + i)
        wrapper = _plan(decode.SparseDecodePagedAttentionWrapper(blk_kv=BLK), case)
        buckets[batch] = (case, wrapper, *_capture(wrapper, case))
    for step, batch in enumerate((32, 1, 8, 3, 1, 32, 8)):
        case, wrapper, out, lse, graph = buckets[batch]
        _refresh(case, seed=100 + step)
        graph.replay()
        _check_replay(wrapper, case, out, lse)


def test_decode_one_wrapper_replanned_and_recaptured():
    # A graph reads the workspace of the plan it was captured on: after a re-plan only the new
    # capture is replayed.
    wrapper = decode.SparseDecodePagedAttentionWrapper(blk_kv=BLK)
    splits = []
    for i, batch in enumerate((2, 16, 64, 1, 5)):
        case = _decode_case(batch, seed=20 + i)
        _plan(wrapper, case)
        out, lse, graph = _capture(wrapper, case)
        _refresh(case, seed=200 + i)
        graph.replay()
        _check_replay(wrapper, case, out, lse)
        splits.append(wrapper.num_splits)
        del graph
    assert len(set(splits)) > 1, splits  # the re-plans changed the split and the workspace


# --------------------------------------------------------------------------------------- prefill


@pytest.mark.usefixtures("prefill_kernel")
@pytest.mark.parametrize("paged", [False, True])
def test_prefill_replays_with_new_csr_and_pages_match_eager(paged):
    lens = [(300, 1500), (100, 700), (64, 64)]
    c = tp.make_case(lens, HQ, HKV, 128, BLK, TOPK, torch.bfloat16, DEVICE, seed=31)
    kv = dict(k=c.k, v=c.v, page_table=None, seqused_k=None)
    if paged:
        kp, vp, table = tp.to_paged(c, BLK, seed=31)
        kv = dict(k=kp, v=vp, page_table=table,
                  seqused_k=torch.tensor([1500, 700, 64], dtype=torch.int32, device=DEVICE))

    def call(out):
        return prefill.sparse_atten_func(
            c.q, kv["k"], kv["v"], c.row_ptr, c.q_idx, c.topk, cu_seqlens_q=c.cu_q, cu_seqlens_k=c.cu_k,
            max_seqlen_q=c.max_q, max_seqlen_k=c.max_k, blk_kv=BLK, causal=True, return_softmax_lse=True,
            page_table=kv["page_table"], seqused_k=kv["seqused_k"], out=out)

    out = torch.empty_like(c.q)
    call(out)  # compile outside the capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        _, lse = call(out)

    for step, seed in enumerate((32, 33, 34)):
        new = tp.make_case(lens, HQ, HKV, 128, BLK, TOPK, torch.bfloat16, DEVICE, seed=seed)
        assert new.row_ptr.shape == c.row_ptr.shape and new.q_idx.shape == c.q_idx.shape
        assert not torch.equal(new.q_idx, c.q_idx)  # the CSR contents really change
        c.q.copy_(new.q)
        c.row_ptr.copy_(new.row_ptr)
        c.q_idx.copy_(new.q_idx)
        if paged:
            kp, vp, table = tp.to_paged(new, BLK, seed=seed)
            assert not torch.equal(table, kv["page_table"])
            kv["k"].copy_(kp)
            kv["v"].copy_(vp)
            kv["page_table"].copy_(table)
            kv["seqused_k"].copy_(torch.tensor([1500 - 100 * step, 700 - 129 * step, 64 - step], dtype=torch.int32))
        else:
            c.k.copy_(new.k)
            c.v.copy_(new.v)
        out.fill_(float("nan"))
        lse.fill_(float("nan"))
        graph.replay()
        eager_out, eager_lse = call(None)
        assert torch.equal(out, eager_out), "graph replay differs from eager"
        assert torch.equal(lse, eager_lse)
        ro, rl, _ = tp.reference(c, k=kv["k"], v=kv["v"], causal=True, page_table=kv["page_table"],
                                 seqused_k=kv["seqused_k"])
        tp.assert_out_close(out, ro, torch.bfloat16)
        tp.assert_lse_close(lse, rl)
