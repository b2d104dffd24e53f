"""sparse_topk_select / native_topk_from_scores: reference vs brute force, validation, native vs reference."""
import importlib
import math

import pytest
import torch
from _pkg import msa, needs_cuda

topk_mod = importlib.import_module(msa.__name__ + ".topk")
ref_mod = importlib.import_module(msa.__name__ + ".reference.topk")


def _best(scores, ids, count):
    """Brute force: the `count` best (score desc, id asc) finite candidates."""
    cand = [(s, i) for s, i in zip(scores, ids) if not math.isnan(s) and s != -math.inf]
    cand.sort(key=lambda x: (-x[0], x[1]))
    return [i for _, i in cand[:count]]


def brute_sparse_topk(max_score, topk, nvp, fb, fe):
    h, k, t = max_score.shape
    out = torch.full((t, h, topk), -1, dtype=torch.int32)
    for ti in range(t):
        n = nvp[ti] if isinstance(nvp, list) else nvp
        n = min(max(n, 0), k)
        b_end = min(fb, n)
        e_start = max(n - fe, b_end)
        forced = list(range(b_end)) + list(range(e_start, n))
        for hi in range(h):
            row = max_score[hi, :, ti].tolist()
            picked = _best(row[b_end:e_start], range(b_end, e_start), topk - len(forced))
            ids = sorted(forced + picked)
            out[ti, hi, : len(ids)] = torch.tensor(ids, dtype=torch.int32)
    return out


def brute_topk_from_scores(score, seq_lens, block_size, topk):
    heads, batch, m = score.shape
    out = torch.full((heads, batch, topk), -1, dtype=torch.int32)
    for b in range(batch):
        nb = min(max(-(-int(seq_lens[b]) // block_size), 0), m)
        for h in range(heads):
            ids = _best(score[h, b, :nb].tolist(), range(nb), topk)
            out[h, b, : len(ids)] = torch.tensor(ids, dtype=torch.int32)
    return out


def make_scores(shape, gen, specials=True, ties=True):
    s = torch.randn(shape, generator=gen)
    if ties:
        s = torch.round(s * 2) / 2  # many equal scores: exercises the lower-id tie rule
    if specials:
        r = torch.rand(shape, generator=gen)
        s = torch.where(r < 0.05, torch.full_like(s, float("nan")), s)
        s = torch.where((r >= 0.05) & (r < 0.1), torch.full_like(s, -float("inf")), s)
        s = torch.where((r >= 0.1) & (r < 0.12), torch.full_like(s, float("inf")), s)
    return s


# ---------------------------------------------------------------- reference vs brute force (CPU)


@pytest.mark.parametrize("topk", [1, 4, 16])
@pytest.mark.parametrize("fb,fe", [(0, 0), (1, 0), (0, 2), (1, 2)])
def test_sparse_topk_reference_matches_brute_force(topk, fb, fe):
    if fb + fe > topk:
        pytest.skip("forced blocks exceed topk")
    gen = torch.Generator().manual_seed(topk * 10 + fb * 3 + fe)
    h, k, t = 2, 40, 6
    s = make_scores((h, k, t), gen)
    nvp = [40, 0, 1, 3, 17, 100]
    got = topk_mod.sparse_topk_select(s, topk, torch.tensor(nvp), force_begin_blocks=fb, force_end_blocks=fe)
    assert got.dtype == torch.int32 and got.shape == (t, h, topk)
    assert torch.equal(got, brute_sparse_topk(s, topk, nvp, fb, fe))
    got_int = topk_mod.sparse_topk_select(s, topk, 17, force_begin_blocks=fb, force_end_blocks=fe)
    assert torch.equal(got_int, brute_sparse_topk(s, topk, 17, fb, fe))


def test_sparse_topk_matches_torch_topk_multiset():
    gen = torch.Generator().manual_seed(0)
    s = torch.randn(3, 300, 5, generator=gen)
    got = topk_mod.sparse_topk_select(s, 16)
    want = torch.topk(s, 16, dim=1).indices.sort(dim=1).values.permute(2, 0, 1)
    assert torch.equal(got, want.to(torch.int32))
    assert bool((got[..., 1:] > got[..., :-1]).all())


def test_sparse_topk_never_selects_nan_and_pads():
    s = torch.full((1, 10, 2), float("nan"))
    s[0, 3, 0] = 1.0
    s[0, 7, 0] = -float("inf")
    s[0, 5, 1] = float("inf")
    got = topk_mod.sparse_topk_select(s, 4)
    assert got[0, 0].tolist() == [3, -1, -1, -1]
    assert got[1, 0].tolist() == [5, -1, -1, -1]


def test_sparse_topk_output_argument():
    s = torch.randn(2, 20, 3)
    out = torch.full((3, 2, 8), 12345, dtype=torch.int32)
    res = topk_mod.sparse_topk_select(s, 8, output=out)
    assert res is out
    assert torch.equal(out, ref_mod.sparse_topk_select(s, 8))


def test_sparse_topk_more_slots_than_blocks():
    s = torch.randn(1, 3, 2)
    got = topk_mod.sparse_topk_select(s, 8)
    assert got[:, 0, :3].tolist() == [[0, 1, 2]] * 2
    assert bool((got[:, 0, 3:] == -1).all())


def test_signed_zeros_tie_to_lower_id():
    # -0.0 == +0.0: the lower block id wins whatever the sign bit.
    row = torch.tensor([0.0, -0.0, 0.0, -0.0, -1.0, -0.0])
    got = topk_mod.native_topk_from_scores(row.view(1, 1, 6), torch.tensor([6]), 1, 4)
    assert got[0, 0].tolist() == [0, 1, 2, 3]
    got = topk_mod.sparse_topk_select(row.view(1, 6, 1), 3, 6)
    assert got[0, 0].tolist() == [0, 1, 2]


@pytest.mark.parametrize("topk", [1, 5, 32])
def test_topk_from_scores_reference_matches_brute_force(topk):
    gen = torch.Generator().manual_seed(topk)
    score = make_scores((3, 4, 50), gen)
    seq_lens = torch.tensor([0, 1, 130, 10_000])
    got = topk_mod.native_topk_from_scores(score, seq_lens, 16, topk)
    assert got.shape == (3, 4, topk) and got.dtype == torch.int32
    assert torch.equal(got, brute_topk_from_scores(score, seq_lens, 16, topk))


def test_topk_from_scores_matches_torch_topk():
    score = torch.randn(4, 2, 200, generator=torch.Generator().manual_seed(1))
    got = topk_mod.native_topk_from_scores(score, torch.tensor([200 * 64, 200 * 64], dtype=torch.int32), 64, 16)
    want = torch.topk(score, 16, dim=-1)
    assert torch.equal(torch.gather(score, -1, got.long()), want.values)


@pytest.mark.parametrize(
    "kwargs,exc,word",
    [
        (dict(max_score=torch.zeros(2, 3)), ValueError, "max_score"),
        (dict(max_score=torch.zeros(1, 3, 2, dtype=torch.float16)), TypeError, "max_score"),
        (dict(topk=0), ValueError, "topk"),
        (dict(topk=65), ValueError, "topk"),
        (dict(topk=2.0), TypeError, "topk"),
        (dict(force_begin_blocks=3, force_end_blocks=2), ValueError, "force_begin_blocks"),
        (dict(force_end_blocks=-1), ValueError, "force_end_blocks"),
        (dict(num_valid_pages=-1), ValueError, "num_valid_pages"),
        (dict(num_valid_pages=torch.zeros(3, dtype=torch.int32)), ValueError, "num_valid_pages"),
        (dict(num_valid_pages=torch.zeros(2)), TypeError, "num_valid_pages"),
        (dict(output=torch.zeros(2, 1, 4, dtype=torch.int64)), TypeError, "output"),
        (dict(output=torch.zeros(2, 1, 5, dtype=torch.int32)), ValueError, "output"),
    ],
)
def test_sparse_topk_bad_input(kwargs, exc, word):
    args = dict(max_score=torch.zeros(1, 3, 2), topk=4)
    args.update(kwargs)
    with pytest.raises(exc, match=word):
        topk_mod.sparse_topk_select(**args)


@pytest.mark.parametrize(
    "kwargs,exc,word",
    [
        (dict(score=torch.zeros(2, 3)), ValueError, "score"),
        (dict(seq_lens=torch.zeros(3, dtype=torch.int32)), ValueError, "seq_lens"),
        (dict(seq_lens=torch.zeros(2)), TypeError, "seq_lens"),
        (dict(block_size=0), ValueError, "block_size"),
        (dict(topk=0), ValueError, "topk"),
    ],
)
def test_topk_from_scores_bad_input(kwargs, exc, word):
    args = dict(score=torch.zeros(1, 2, 5), seq_lens=torch.zeros(2, dtype=torch.int32), block_size=4, topk=2)
    args.update(kwargs)
    with pytest.raises(exc, match=word):
        topk_mod.native_topk_from_scores(**args)


# ---------------------------------------------------------------- native vs reference (GPU)

GPU_GRID = [
    # (H, K, T, topk, fb, fe)
    (1, 1, 3, 1, 0, 0),
    (2, 37, 33, 4, 1, 1),
    (4, 300, 70, 16, 1, 2),
    (3, 1024, 129, 32, 0, 0),
    (4, 2500, 40, 64, 2, 3),
    (2, 16384, 24, 16, 1, 1),
    (1, 8, 9, 64, 0, 0),
]


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("h,k,t,topk,fb,fe", GPU_GRID)
@pytest.mark.parametrize("nvp_mode", ["none", "int", "tensor"])
def test_sparse_topk_native_matches_reference(h, k, t, topk, fb, fe, nvp_mode):
    gen = torch.Generator().manual_seed(h * 7 + k + t + topk)
    s = make_scores((h, k, t), gen, ties=k < 5000)
    if nvp_mode == "none":
        nvp = None
    elif nvp_mode == "int":
        nvp = max(k // 2, 1)
    else:
        nvp = torch.randint(-2, k + 5, (t,), generator=gen, dtype=torch.int32)
    want = ref_mod.sparse_topk_select(s, topk, nvp, fb, fe)
    nvp_dev = nvp.cuda() if isinstance(nvp, torch.Tensor) else nvp
    out = torch.full((t, h, topk), -7, dtype=torch.int32, device="cuda")  # poison: every element must be written
    got = topk_mod.sparse_topk_select(s.cuda(), topk, nvp_dev, output=out, force_begin_blocks=fb, force_end_blocks=fe)
    assert got is out
    assert torch.equal(got.cpu(), want)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.kernels_ci
def test_sparse_topk_native_monotone_rows():
    # Increasing scores: every block beats the floor, the worst case for the candidate buffer.
    h, k, t = 2, 5000, 16
    s = torch.arange(k, dtype=torch.float32).view(1, k, 1).expand(h, k, t).contiguous()
    got = topk_mod.sparse_topk_select(s.cuda(), 64)
    assert torch.equal(got.cpu(), ref_mod.sparse_topk_select(s, 64))


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("heads,batch,m,topk", [(1, 1, 1, 1), (2, 3, 100, 8), (64, 1, 8192, 16), (4, 5, 3000, 64)])
def test_topk_from_scores_native_matches_reference(heads, batch, m, topk):
    gen = torch.Generator().manual_seed(heads + batch + m + topk)
    score = make_scores((heads, batch, m), gen, ties=m < 5000)
    seq_lens = torch.randint(0, m * 16 + 40, (batch,), generator=gen)
    seq_lens[0] = m * 16
    want = ref_mod.native_topk_from_scores(score, seq_lens, 16, topk)
    for lens in (seq_lens, seq_lens.to(torch.int32)):
        got = topk_mod.native_topk_from_scores(score.cuda(), lens.cuda(), 16, topk)
        assert torch.equal(got.cpu(), want)


def signed_zero_scores(shape, gen):
    """Only +-0.0 and a few +-1: every cut falls inside a run of equal scores of mixed sign."""
    r = torch.rand(shape, generator=gen)
    s = torch.where(r < 0.5, torch.zeros(shape), -torch.zeros(shape))
    s = torch.where(r > 0.97, torch.ones(shape), s)
    return torch.where(r < 0.03, -torch.ones(shape), s)


@pytest.mark.sanitize
@pytest.mark.gpu
@needs_cuda
def test_native_signed_zero_ties():
    gen = torch.Generator().manual_seed(5)
    s = signed_zero_scores((3, 300, 40), gen)
    nvp = torch.randint(0, 305, (40,), generator=gen, dtype=torch.int32)
    want = ref_mod.sparse_topk_select(s, 16, nvp, 1, 1)
    assert torch.equal(topk_mod.sparse_topk_select(s.cuda(), 16, nvp.cuda(), None, 1, 1).cpu(), want)
    score = signed_zero_scores((4, 3, 9000), gen)
    lens = torch.tensor([9000 * 16, 3000 * 16, 77 * 16])
    want = ref_mod.native_topk_from_scores(score, lens, 16, 32)
    assert torch.equal(topk_mod.native_topk_from_scores(score.cuda(), lens.cuda(), 16, 32).cpu(), want)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("topk", [16, 32, 64])
def test_topk_from_scores_native_streaming_paths(topk):
    # Rows over 8192 blocks stream; a score that only depends on the block id mod 256 puts whole
    # per-thread strips above the register path's floor (over 512 candidates for topk >= 32), so
    # those rows fall back to streaming too. Short rows of the same batch take the register path.
    gen = torch.Generator().manual_seed(topk)
    m = 20_000
    score = torch.randn(2, 3, m, generator=gen)
    score[:, 1] = (torch.arange(m) % 256).float() * (1 + torch.arange(2).view(2, 1))
    lens = torch.tensor([m * 16, 8192 * 16, 5000 * 16])
    want = ref_mod.native_topk_from_scores(score, lens, 16, topk)
    assert torch.equal(topk_mod.native_topk_from_scores(score.cuda(), lens.cuda(), 16, topk).cpu(), want)


@pytest.mark.gpu
@needs_cuda
def test_topk_native_opcheck():
    if not msa.has_native_ops():
        pytest.skip("no compiled extension")
    backend = importlib.import_module(msa.__name__ + "._backend")
    s = torch.randn(2, 100, 9, device="cuda")
    out = torch.empty(9, 2, 8, dtype=torch.int32, device="cuda")
    nvp = torch.full((9,), 50, dtype=torch.int32, device="cuda")
    torch.library.opcheck(backend.ops.sparse_topk_select.default, (s, nvp, 100, 1, 1, out))
    torch.library.opcheck(backend.ops.sparse_topk_select.default, (s, None, 100, 0, 0, out))
    score = torch.randn(2, 3, 100, device="cuda")
    lens = torch.tensor([5, 500, 1000], dtype=torch.int32, device="cuda")
    out2 = torch.empty(2, 3, 8, dtype=torch.int32, device="cuda")
    torch.library.opcheck(backend.ops.native_topk_from_scores.default, (score, lens, 16, out2))


@pytest.mark.gpu
@needs_cuda
def test_topk_from_scores_cuda_graph():
    score = torch.randn(64, 1, 8192, device="cuda")
    lens = torch.tensor([8192 * 64], device="cuda")
    topk_mod.native_topk_from_scores(score, lens, 64, 16)  # warm up outside the graph
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        got = topk_mod.native_topk_from_scores(score, lens, 64, 16)
    score.copy_(torch.randn(64, 1, 8192, device="cuda"))
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(got.cpu(), ref_mod.native_topk_from_scores(score.cpu(), lens.cpu(), 64, 16))

