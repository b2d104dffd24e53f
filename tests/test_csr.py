"""build_k2q_csr / SparseK2qCsrBuilderSm100: reference vs a brute-force transpose, validation,
native vs reference, CUDA-graph capture."""
import importlib

import pytest
import torch
from _pkg import msa, needs_cuda

csr_mod = importlib.import_module(msa.__name__ + ".csr")
ref_mod = importlib.import_module(msa.__name__ + ".reference.csr")


def brute_csr(q2k, cu_q, cu_k, blk, total_rows):
    """Direct transcription of contract §2.2 with Python loops."""
    hkv, total_q, topk = q2k.shape
    cu_q, cu_k = cu_q.tolist(), cu_k.tolist()
    batch = len(cu_q) - 1
    nb = [max(cu_k[b + 1] - cu_k[b], 0) // blk + (max(cu_k[b + 1] - cu_k[b], 0) % blk > 0) for b in range(batch)]
    rows = []  # (b, j) in row order
    j = 0
    while any(j < n for n in nb):
        rows += [(b, j) for b in range(batch) if j < nb[b]]
        j += 1
    row_ptr = torch.zeros(hkv, total_rows + 1, dtype=torch.int32)
    q_idx = torch.full((hkv, total_q * topk), -1, dtype=torch.int32)
    qsplit = torch.full_like(q_idx, -1)
    counts = torch.zeros(total_q, hkv, dtype=torch.int32)
    sel = q2k.tolist()
    for g in range(hkv):
        kept = {}  # query -> sorted kept blocks
        for b in range(batch):
            for t in range(cu_q[b], cu_q[b + 1]):
                blocks = sorted({i for i in sel[g][t] if 0 <= i < nb[b]})
                kept[t] = [i for i in blocks if rows.index((b, i)) < total_rows]
                counts[t, g] = len(kept[t])
        pos = 0
        for r in range(total_rows):
            if r < len(rows):
                b, jj = rows[r]
                for t in range(cu_q[b], cu_q[b + 1]):
                    if jj in kept[t]:
                        q_idx[g, pos] = t - cu_q[b]
                        qsplit[g, pos] = (t - cu_q[b]) | (kept[t].index(jj) << 24)
                        pos += 1
            row_ptr[g, r + 1] = pos
    return row_ptr, q_idx, qsplit, counts


def random_case(gen, batch, hkv, topk, blk, max_q=9, max_k=70, holes=True):
    q_lens = torch.randint(0, max_q + 1, (batch,), generator=gen)
    k_lens = torch.randint(0, max_k + 1, (batch,), generator=gen)
    cu_q = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(q_lens, 0)]).to(torch.int32)
    cu_k = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(k_lens, 0)]).to(torch.int32)
    total_q = int(cu_q[-1])
    max_nb = -(-max_k // blk) + 2
    q2k = torch.randint(-3, max_nb + 2, (hkv, total_q, topk), generator=gen, dtype=torch.int32)
    if not holes:
        q2k = q2k.clamp(min=0)
    return q2k, cu_q, cu_k


def check_against_brute(q2k, cu_q, cu_k, blk, total_k, total_rows=None):
    row_ptr, q_idx, sched = csr_mod.build_k2q_csr(
        q2k, cu_q, cu_k, blk, total_k=total_k, total_rows=total_rows, return_schedule=True
    )
    rows = ref_mod.default_total_rows(total_k, blk, cu_q.numel() - 1) if total_rows is None else total_rows
    want = brute_csr(q2k, cu_q, cu_k, blk, rows)
    assert torch.equal(row_ptr, want[0])
    assert torch.equal(q_idx, want[1])
    assert torch.equal(sched.qsplit_indices, want[2])
    assert torch.equal(sched.split_counts, want[3])


def test_contract_worked_example():
    q2k = torch.tensor([1, -1, 0, 0], dtype=torch.int32).view(1, 4, 1)
    cu = torch.tensor([0, 2, 4], dtype=torch.int32)
    row_ptr, q_idx = csr_mod.build_k2q_csr(q2k, cu, cu, 1, total_k=4)
    assert row_ptr.tolist() == [[0, 0, 2, 3, 3]]
    assert q_idx[0, :3].tolist() == [0, 1, 0]
    assert q_idx[0, 3].item() == -1


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("topk", [1, 4, 8])
def test_reference_matches_brute_force(seed, topk):
    gen = torch.Generator().manual_seed(seed * 100 + topk)
    batch = 1 + seed
    hkv = 1 + seed % 4
    blk = [1, 4, 16][seed % 3]
    q2k, cu_q, cu_k = random_case(gen, batch, hkv, topk, blk)
    total_k = int(cu_k[-1])
    exact = int(ref_mod.blocks_per_request(cu_k.long(), blk).sum())
    check_against_brute(q2k, cu_q, cu_k, blk, total_k, total_rows=exact)
    check_against_brute(q2k, cu_q, cu_k, blk, total_k)  # default rule (may drop or pad rows)
    check_against_brute(q2k, cu_q, cu_k, blk, total_k, total_rows=exact + 3)


def test_duplicates_count_once_and_slots_follow_block_order():
    q2k = torch.tensor([[[3, 1, 3, -1, 1, 0]]], dtype=torch.int32)  # one query
    cu_q = torch.tensor([0, 1], dtype=torch.int32)
    cu_k = torch.tensor([0, 16], dtype=torch.int32)
    row_ptr, q_idx, sched = csr_mod.build_k2q_csr(q2k, cu_q, cu_k, 4, total_k=16, return_schedule=True)
    assert row_ptr.tolist() == [[0, 1, 2, 2, 3]]
    assert q_idx.tolist() == [[0, 0, 0, -1, -1, -1]]
    assert (sched.qsplit_indices[0, :3] >> 24).tolist() == [0, 1, 2]
    assert sched.split_counts.tolist() == [[3]]
    assert sched.row_request.tolist() == [0, 0, 0, 0] and sched.row_block.tolist() == [0, 1, 2, 3]


def test_default_total_rows_rule():
    assert csr_mod.default_total_rows(256, 128, 3) == 2
    assert csr_mod.default_total_rows(257, 128, 3) == -(-(257 + 3 * 127) // 128)
    q2k = torch.zeros(1, 2, 1, dtype=torch.int32)
    cu_q = torch.tensor([0, 1, 2], dtype=torch.int32)
    cu_k = torch.tensor([0, 100, 257], dtype=torch.int32)
    row_ptr, _ = csr_mod.build_k2q_csr(q2k, cu_q, cu_k, 128, total_k=257)
    assert row_ptr.shape == (1, csr_mod.default_total_rows(257, 128, 2) + 1)


def test_row_maps_and_round_robin():
    cu_q = torch.tensor([0, 1, 2, 3], dtype=torch.int32)
    cu_k = torch.tensor([0, 3, 4, 6], dtype=torch.int32)  # nb = [3, 1, 2] with blk 1
    q2k = torch.tensor([[[2], [0], [1]]], dtype=torch.int32)
    _, _, sched = csr_mod.build_k2q_csr(q2k, cu_q, cu_k, 1, total_k=6, return_schedule=True)
    # rows: (0,0) (1,0) (2,0) (0,1) (2,1) (0,2)
    assert sched.row_request.tolist() == [0, 1, 2, 0, 2, 0]
    assert sched.row_block.tolist() == [0, 0, 0, 1, 1, 2]
    assert sched.total_rows == 6 and sched.topk == 1 and sched.num_kv_heads == 1


def test_builder_class_and_alias():
    gen = torch.Generator().manual_seed(5)
    q2k, cu_q, cu_k = random_case(gen, 3, 2, 4, 8)
    total_k = int(cu_k[-1])
    a = csr_mod.build_k2q_csr(q2k, cu_q, cu_k, 8, total_k=total_k)
    builder = csr_mod.SparseK2qCsrBuilderSm100()
    b = builder(q2k, cu_q, cu_k, total_k=total_k, blk_kv=8)
    assert csr_mod.SparseK2qCsrBuilderSm12x is csr_mod.SparseK2qCsrBuilderSm100
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_token_major_view_and_int64_inputs():
    gen = torch.Generator().manual_seed(9)
    q2k, cu_q, cu_k = random_case(gen, 4, 3, 4, 4)
    total_k = int(cu_k[-1])
    token_major = q2k.permute(1, 0, 2).contiguous()  # sparse_topk_select layout
    a = csr_mod.build_k2q_csr(q2k, cu_q, cu_k, 4, total_k=total_k)
    b = csr_mod.build_k2q_csr(token_major.permute(1, 0, 2), cu_q.long(), cu_k.long(), 4, total_k=total_k)
    c = csr_mod.build_k2q_csr(q2k.long(), cu_q, cu_k, 4, total_k=total_k)
    assert all(torch.equal(x, y) and torch.equal(x, z) for x, y, z in zip(a, b, c))


def test_empty_work():
    cu = torch.tensor([0, 0], dtype=torch.int32)
    q2k = torch.zeros(2, 0, 16, dtype=torch.int32)
    cu_k = torch.tensor([0, 300])
    row_ptr, q_idx, sched = csr_mod.build_k2q_csr(q2k, cu, cu_k, 128, total_k=300, return_schedule=True)
    assert row_ptr.shape == (2, csr_mod.default_total_rows(300, 128, 1) + 1) and not row_ptr.any()
    assert q_idx.shape == (2, 0) and sched.split_counts.shape == (0, 2)
    row_ptr, q_idx = csr_mod.build_k2q_csr(torch.zeros(1, 3, 2, dtype=torch.int32), torch.tensor([0, 3]),
                                           torch.tensor([0, 0]), 128, total_k=0)
    assert row_ptr.tolist() == [[0]] and q_idx.tolist() == [[-1] * 6]


@pytest.mark.parametrize(
    "kwargs,exc,word",
    [
        (dict(total_k=None), ValueError, "total_k"),
        (dict(total_k=-1), ValueError, "total_k"),
        (dict(q2k_indices=torch.zeros(2, 2, dtype=torch.int32)), ValueError, "q2k_indices"),
        (dict(q2k_indices=torch.zeros(1, 2, 2)), TypeError, "q2k_indices"),
        (dict(q2k_indices=torch.zeros(1, 2, 65, dtype=torch.int32)), ValueError, "topK"),
        (dict(cu_seqlens_q=torch.tensor([0.0, 2.0])), TypeError, "cu_seqlens_q"),
        (dict(cu_seqlens_k=torch.tensor([0, 2, 4], dtype=torch.int32)), ValueError, "cu_seqlens_k"),
        (dict(cu_seqlens_q=torch.zeros(0, dtype=torch.int32)), ValueError, "cu_seqlens_q"),
        (dict(kv_block_size=0), ValueError, "kv_block_size"),
        (dict(total_rows=-1), ValueError, "total_rows"),
        (dict(qhead_per_kv=0), ValueError, "qhead_per_kv"),
        (dict(max_seqlen_k=1.5), TypeError, "max_seqlen_k"),
    ],
)
def test_bad_input(kwargs, exc, word):
    args = dict(
        q2k_indices=torch.zeros(1, 2, 2, dtype=torch.int32),
        cu_seqlens_q=torch.tensor([0, 2], dtype=torch.int32),
        cu_seqlens_k=torch.tensor([0, 4], dtype=torch.int32),
        kv_block_size=2,
        total_k=4,
    )
    args.update(kwargs)
    with pytest.raises(exc, match=word):
        csr_mod.build_k2q_csr(**args)


# ---------------------------------------------------------------- native vs reference (GPU)


def assert_native_equals_reference(q2k, cu_q, cu_k, blk, total_k, total_rows=None):
    want = csr_mod.build_k2q_csr(q2k, cu_q, cu_k, blk, total_k=total_k, total_rows=total_rows, return_schedule=True)
    got = csr_mod.build_k2q_csr(
        q2k.cuda(), cu_q.cuda(), cu_k.cuda(), blk, total_k=total_k, total_rows=total_rows, return_schedule=True
    )
    assert torch.equal(got[0].cpu(), want[0])
    assert torch.equal(got[1].cpu(), want[1])
    for field in ("qsplit_indices", "split_counts", "row_request", "row_block"):
        assert torch.equal(getattr(got[2], field).cpu(), getattr(want[2], field)), field


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("topk", [1, 4, 8, 16, 32, 64])
def test_native_matches_reference_grid(seed, topk):
    gen = torch.Generator().manual_seed(seed * 1000 + topk)
    batch = 1 + seed
    hkv = 1 + seed % 4
    blk = [1, 16, 128][seed % 3]
    q2k, cu_q, cu_k = random_case(gen, batch, hkv, topk, blk, max_q=300, max_k=4000, holes=seed % 2 == 0)
    total_k = int(cu_k[-1])
    exact = int(ref_mod.blocks_per_request(cu_k.long(), blk).sum())
    assert_native_equals_reference(q2k, cu_q, cu_k, blk, total_k)
    assert_native_equals_reference(q2k, cu_q, cu_k, blk, total_k, total_rows=exact)
    assert_native_equals_reference(q2k, cu_q, cu_k, blk, total_k, total_rows=max(exact - 2, 0))


@pytest.mark.gpu
@needs_cuda
def test_native_large_hot_rows():
    # One long request where every query picks block 0 and its local block: block 0's row holds all
    # 40k queries, so its order must survive the sort across every query tile.
    gen = torch.Generator().manual_seed(3)
    t, blk, topk, hkv = 40_000, 128, 16, 2
    nb = -(-t // blk)
    q = torch.arange(t)
    q2k = torch.randint(0, nb, (hkv, t, topk), generator=gen, dtype=torch.int32)
    q2k[:, :, 0] = 0
    q2k[:, :, 1] = (q // blk).to(torch.int32)
    cu = torch.tensor([0, t], dtype=torch.int32)
    assert_native_equals_reference(q2k, cu, cu, blk, t)


@pytest.mark.sanitize
@pytest.mark.gpu
@needs_cuda
@pytest.mark.kernels_ci
def test_native_token_major_view():
    gen = torch.Generator().manual_seed(11)
    q2k, cu_q, cu_k = random_case(gen, 5, 4, 16, 16, max_q=200, max_k=3000)
    view = q2k.permute(1, 0, 2).contiguous().permute(1, 0, 2).cuda()  # non-contiguous [Hkv, T, topK]
    total_k = int(cu_k[-1])
    want = csr_mod.build_k2q_csr(q2k, cu_q, cu_k, 16, total_k=total_k)
    got = csr_mod.build_k2q_csr(view, cu_q.cuda(), cu_k.cuda(), 16, total_k=total_k)
    assert all(torch.equal(x.cpu(), y) for x, y in zip(got, want))


@pytest.mark.gpu
@needs_cuda
def test_native_opcheck():
    if not msa.has_native_ops():
        pytest.skip("no compiled extension")
    backend = importlib.import_module(msa.__name__ + "._backend")
    gen = torch.Generator().manual_seed(2)
    q2k, cu_q, cu_k = random_case(gen, 3, 2, 4, 8, max_q=20, max_k=100)
    total_q, rows = q2k.shape[1], 40
    dev = "cuda"
    args = (
        q2k.cuda(), cu_q.cuda(), cu_k.cuda(), 8,
        torch.empty(2, rows + 1, dtype=torch.int32, device=dev),
        torch.empty(2, total_q * 4, dtype=torch.int32, device=dev),
        torch.empty(2, total_q * 4, dtype=torch.int32, device=dev),
        torch.empty(total_q, 2, dtype=torch.int32, device=dev),
        torch.empty(rows, dtype=torch.int32, device=dev),
        torch.empty(rows, dtype=torch.int32, device=dev),
    )
    torch.library.opcheck(backend.ops.build_k2q_csr.default, args)


@pytest.mark.gpu
@needs_cuda
def test_native_cuda_graph_capture():
    gen = torch.Generator().manual_seed(4)
    blk, topk = 16, 8
    q2k, cu_q, cu_k = random_case(gen, 4, 2, topk, blk, max_q=100, max_k=1000)
    total_k = int(cu_k[-1])
    total_rows = int(ref_mod.blocks_per_request(cu_k.long(), blk).sum())
    q2k_d, cu_q_d, cu_k_d = q2k.cuda(), cu_q.cuda(), cu_k.cuda()
    kw = dict(total_k=total_k, total_rows=total_rows, return_schedule=True)
    csr_mod.build_k2q_csr(q2k_d, cu_q_d, cu_k_d, blk, **kw)  # warm up outside the graph
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        got = csr_mod.build_k2q_csr(q2k_d, cu_q_d, cu_k_d, blk, **kw)
    fresh = torch.randint(-1, total_rows, q2k.shape, generator=gen, dtype=torch.int32)
    q2k_d.copy_(fresh)
    graph.replay()
    torch.cuda.synchronize()
    want = csr_mod.build_k2q_csr(fresh, cu_q, cu_k, blk, **kw)
    assert torch.equal(got[0].cpu(), want[0]) and torch.equal(got[1].cpu(), want[1])
    assert torch.equal(got[2].qsplit_indices.cpu(), want[2].qsplit_indices)
