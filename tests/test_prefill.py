"""sparse_atten_func / sparse_atten_nvfp4_kv_func vs the FP32 reference."""
import importlib
import random
from types import SimpleNamespace

import pytest
import torch
from _pkg import TRITON_DEVICE, TRITON_HALF, msa, needs_cuda, needs_triton

# Every test runs against both prefill kernels (see conftest.prefill_kernel).
pytestmark = pytest.mark.usefixtures("prefill_kernel")

prefill = importlib.import_module(msa.__name__ + ".prefill")
ref_prefill = importlib.import_module(msa.__name__ + ".reference.prefill")
ref_nvfp4 = importlib.import_module(msa.__name__ + ".reference.nvfp4")


# ----------------------------------------------------------------------------- case builders

def make_selection(lens, hkv, topk, blk, seed, local=True, holes=True):
    """q2k [Hkv, total_q, topK]: the query's local block (if visible) plus random blocks."""
    rng = random.Random(seed)
    rows = []
    for lq, lk in lens:
        nb = (lk + blk - 1) // blk
        for i in range(lq):
            pos = i + lk - lq
            rows.append((nb, pos // blk if 0 <= pos < lk else None))
    q2k = torch.full((hkv, len(rows), topk), -1, dtype=torch.int32)
    for g in range(hkv):
        for t, (nb, loc) in enumerate(rows):
            picks = [loc] if (local and loc is not None) else []
            others = [j for j in range(nb) if j not in picks]
            rng.shuffle(others)
            picks += others[: topk - len(picks)]
            if holes and len(picks) > 1 and rng.random() < 0.3:
                picks = picks[:-1]
            slots = list(range(topk))
            rng.shuffle(slots)  # any order, -1 anywhere
            for s, j in zip(slots, picks):
                q2k[g, t, s] = j
    return q2k


def make_case(lens, hq, hkv, d, blk, topk, dtype, device, seed=0, **sel_kw):
    torch.manual_seed(seed)
    cu_q = torch.tensor([0] + [sum(lq for lq, _ in lens[: i + 1]) for i in range(len(lens))], dtype=torch.int32)
    cu_k = torch.tensor([0] + [sum(lk for _, lk in lens[: i + 1]) for i in range(len(lens))], dtype=torch.int32)
    q2k = make_selection(lens, hkv, topk, blk, seed, **sel_kw)
    row_ptr, q_idx = ref_prefill.q2k_to_k2q_csr(q2k, cu_q, cu_k, blk)
    total_q, total_k = int(cu_q[-1]), int(cu_k[-1])
    q = torch.randn(total_q, hq, d).to(dtype)
    k = torch.randn(total_k, hkv, d).to(dtype)
    v = torch.randn(total_k, hkv, d).to(dtype)
    to = lambda t: t.to(device)  # noqa: E731
    return SimpleNamespace(
        q=to(q), k=to(k), v=to(v), row_ptr=to(row_ptr), q_idx=to(q_idx), cu_q=to(cu_q), cu_k=to(cu_k),
        topk=topk, blk=blk, max_q=max(lq for lq, _ in lens), max_k=max(lk for _, lk in lens),
    )


def to_paged(c, page_size, seed=0, spare_pages=3):
    """Scatter the dense K/V into a shuffled paged cache; returns (k_pages, v_pages, page_table)."""
    cu_k = c.cu_k.tolist()
    lens = [cu_k[i + 1] - cu_k[i] for i in range(len(cu_k) - 1)]
    npages = [(n + page_size - 1) // page_size for n in lens]
    total = sum(npages) + spare_pages
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(total, generator=gen).tolist()
    _, hkv, d = c.k.shape
    # Junk in the unused slots, from the case's own generator: a quantized paged cache takes its
    # global scale from every slot, so global-RNG junk would make a fuzz example unrepeatable.
    kp = torch.randn(total, hkv, page_size, d, generator=gen).to(c.k.device, c.k.dtype)
    vp = torch.randn(total, hkv, page_size, d, generator=gen).to(c.k.device, c.k.dtype)
    table = torch.zeros(len(lens), max(npages + [1]) + 1, dtype=torch.int32)
    nxt = 0
    for b in range(len(lens)):
        for p in range(npages[b]):
            page = perm[nxt]
            nxt += 1
            table[b, p] = page
            t0, t1 = cu_k[b] + p * page_size, min(cu_k[b] + (p + 1) * page_size, cu_k[b + 1])
            kp[page, :, : t1 - t0] = c.k[t0:t1].transpose(0, 1)
            vp[page, :, : t1 - t0] = c.v[t0:t1].transpose(0, 1)
    return kp, vp, table.to(c.k.device)


def run(c, fn=None, **kw):
    fn = fn or prefill.sparse_atten_func
    return fn(c.q, c.k, c.v, c.row_ptr, c.q_idx, c.topk, cu_seqlens_q=c.cu_q, cu_seqlens_k=c.cu_k,
              max_seqlen_q=c.max_q, max_seqlen_k=c.max_k, blk_kv=c.blk, **kw)


def reference(c, q=None, k=None, v=None, **kw):
    return ref_prefill.sparse_prefill_reference(
        c.q if q is None else q, c.k if k is None else k, c.v if v is None else v, c.row_ptr, c.q_idx,
        c.topk, cu_seqlens_q=c.cu_q, cu_seqlens_k=c.cu_k, blk_kv=c.blk, **kw)


def assert_out_close(out, ref, dtype, floor=2e-3):
    """CONTRACT §7: max|out-ref| <= 2*max|dtype(ref)-ref| + floor, cosine >= 0.9999."""
    out, ref = out.float(), ref.float()
    assert torch.isfinite(out).all()
    rounding = (ref.to(dtype).float() - ref).abs().max().item()
    err = (out - ref).abs().max().item()
    assert err <= 2 * rounding + floor, (err, rounding)
    if ref.abs().max() > 0:
        cos = torch.nn.functional.cosine_similarity(out.reshape(1, -1), ref.reshape(1, -1)).item()
        assert cos >= 0.9999, cos


def assert_lse_close(lse, ref, atol=1e-3):
    assert torch.equal(torch.isinf(lse), torch.isinf(ref))
    fin = torch.isfinite(ref)
    assert (lse[fin] - ref[fin]).abs().max().item() <= atol if fin.any() else True


# ----------------------------------------------------------------------------- interpreter-sized

TRITON_CASES = [
    # lens [(L_q, L_k)], Hq, Hkv, D, topK, causal
    ([(5, 200), (3, 3), (4, 70)], 4, 2, 64, 4, True),      # prefix-cached chunk, q=k, ragged
    ([(6, 130), (0, 64), (2, 0)], 2, 2, 64, 8, True),      # empty request (q=0) and k=0
    ([(4, 2), (3, 150)], 16, 1, 64, 4, True),              # L_q > L_k: early queries see nothing; G=16
    ([(3, 190)], 3, 1, 64, 4, False),                      # non-causal, G=3 (not a power of 2)
]


@pytest.mark.triton
@needs_triton
@pytest.mark.parametrize("lens,hq,hkv,d,topk,causal", TRITON_CASES)
def test_sparse_prefill_matches_reference(lens, hq, hkv, d, topk, causal):
    c = make_case(lens, hq, hkv, d, 64, topk, TRITON_HALF, TRITON_DEVICE)
    out, lse, tlse = run(c, causal=causal, return_softmax_lse=True, return_temperature_lse=True,
                         lse_temperature_scale=1.7)
    ro, rl, rt = reference(c, causal=causal, lse_temperature_scale=1.7)
    assert out.dtype == c.q.dtype and out.shape == c.q.shape
    assert_out_close(out, ro, c.q.dtype)
    assert_lse_close(lse, rl)
    assert_lse_close(tlse, rt)


@pytest.mark.sanitize
@pytest.mark.triton
@needs_triton
def test_sparse_prefill_paged_trimmed_seqused():
    c = make_case([(3, 200), (4, 140)], 4, 2, 64, 64, 4, TRITON_HALF, TRITON_DEVICE, seed=3)
    kp, vp, table = to_paged(c, 64, seed=3)
    # trimming drops whole blocks (ids >= ceil(seqused/blk) are ignored) and moves the causal end
    seqused = torch.tensor([100, 131], dtype=torch.int32, device=c.q.device)
    out, lse = prefill.sparse_atten_func(
        c.q, kp, vp, c.row_ptr, c.q_idx, c.topk, cu_seqlens_q=c.cu_q, cu_seqlens_k=c.cu_k,
        max_seqlen_q=c.max_q, max_seqlen_k=c.max_k, blk_kv=64, causal=True, return_softmax_lse=True,
        page_table=table, seqused_k=seqused)
    ro, rl, _ = reference(c, k=kp, v=vp, causal=True, page_table=table, seqused_k=seqused)
    assert_out_close(out, ro, c.q.dtype)
    assert_lse_close(lse, rl)


TABLE_PAGES = 5  # request 0 selects 7 blocks of 64 keys; its page table holds only 5 pages (320 keys)


def seqused_past_table_case(dtype, device):
    """Request 0: seqused_k 400 over a 5-page table (keys 320..399 have no page); request 1: seqused_k -3."""
    c = make_case([(3, 448), (2, 140)], 4, 2, 64, 64, 7, dtype, device, seed=5, holes=False)
    kp, vp, table = to_paged(c, 64, seed=5)
    table = table[:, :TABLE_PAGES].contiguous()
    seqused = torch.tensor([400, -3], dtype=torch.int32, device=device)
    kw = dict(causal=True, page_table=table, seqused_k=seqused)
    out, lse = prefill.sparse_atten_func(
        c.q, kp, vp, c.row_ptr, c.q_idx, c.topk, cu_seqlens_q=c.cu_q, cu_seqlens_k=c.cu_k, max_seqlen_q=c.max_q,
        max_seqlen_k=c.max_k, blk_kv=c.blk, return_softmax_lse=True, **kw)
    return c, kp, vp, kw, out, lse


@pytest.mark.triton
@needs_triton
def test_sparse_prefill_seqused_past_the_page_table_matches_reference():
    c, kp, vp, kw, out, lse = seqused_past_table_case(TRITON_HALF, TRITON_DEVICE)
    ro, rl, _ = reference(c, k=kp, v=vp, **kw)
    assert_out_close(out, ro, c.q.dtype)
    assert_lse_close(lse, rl)


def test_reference_skips_keys_past_the_page_table_and_clamps_negative_seqused():
    """As the kernel does: keys past the page table are skipped (seqused_k still sets the causal
    end), and a negative seqused_k counts as 0 (no key: out 0, LSE -inf)."""
    c, _, _, _, out, lse = seqused_past_table_case(torch.float16, "cpu")
    # every block is selected and the queries sit at 397..399: exactly the 320 paged keys are visible
    ref_attention = importlib.import_module(msa.__name__ + ".reference.attention")
    keys = TABLE_PAGES * 64
    visible = torch.ones(2, 3, keys, dtype=torch.bool)
    want, want_lse, _ = ref_attention.masked_attention(c.q[:3], c.k[:keys], c.v[:keys], visible)
    assert_out_close(out[:3], want, c.q.dtype)
    assert_lse_close(lse[:3], want_lse)
    assert (out[3:] == 0).all() and (lse[3:] == float("-inf")).all()


def corrupt_csr(c, seed=0):
    """Duplicate a listed query (counts once) and add queries past their request's length."""
    rng = random.Random(seed)
    row_ptr, q_idx = c.row_ptr.cpu().clone(), c.q_idx.cpu().clone()
    hkv, nrows = row_ptr.shape[0], row_ptr.shape[1] - 1
    new_ptr = torch.zeros_like(row_ptr)
    new_idx = torch.full((hkv, q_idx.shape[1] + 2 * nrows), -1, dtype=torch.int32)
    for g in range(hkv):
        n = 0
        for r in range(nrows):
            items = q_idx[g, row_ptr[g, r]: row_ptr[g, r + 1]].tolist()
            if items and rng.random() < 0.5:
                i = rng.randrange(len(items))
                items.insert(i, items[i])
            items.append(10_000)  # past every request's L_q: skipped
            new_idx[g, n: n + len(items)] = torch.tensor(items, dtype=torch.int32)
            n += len(items)
            new_ptr[g, r + 1] = n
    return new_ptr.to(c.row_ptr.device), new_idx.to(c.row_ptr.device)


def test_to_paged_is_a_function_of_its_seed():
    # Fuzz examples replay bit for bit only if the paged copy (junk slots included) ignores the global RNG.
    c = make_case([(3, 70), (2, 200)], 4, 2, 64, 64, 4, torch.float16, "cpu", seed=1)
    torch.manual_seed(1)
    first = to_paged(c, 64, seed=7)
    torch.manual_seed(2)
    second = to_paged(c, 64, seed=7)
    assert all(torch.equal(a, b) for a, b in zip(first, second))


@pytest.mark.sanitize
@pytest.mark.triton
@needs_triton
def test_sparse_prefill_duplicates_and_out_of_range_queries():
    c = make_case([(4, 150), (3, 90)], 4, 2, 64, 64, 4, TRITON_HALF, TRITON_DEVICE, seed=5)
    ro, rl, _ = reference(c, causal=True)
    c.row_ptr, c.q_idx = corrupt_csr(c, seed=5)
    out, lse = run(c, causal=True, return_softmax_lse=True)
    assert_out_close(out, ro, c.q.dtype)
    assert_lse_close(lse, rl)


def reversed_slot_schedule(c):
    """A schedule whose qsplit slots list each query's blocks in reverse row order."""
    cu_q = c.cu_q.tolist()
    rows = ref_prefill.csr_row_blocks(c.cu_k.cpu(), c.blk)
    row_ptr, q_idx = c.row_ptr.cpu(), c.q_idx.cpu()
    hkv = row_ptr.shape[0]
    counts = torch.zeros(hkv, cu_q[-1], dtype=torch.int64)
    edges = []
    for g in range(hkv):
        for r, (b, _) in enumerate(rows):
            for e in range(row_ptr[g, r], row_ptr[g, r + 1]):
                qg = cu_q[b] + int(q_idx[g, e])
                edges.append((g, e, qg, int(counts[g, qg])))
                counts[g, qg] += 1
    qsplit = torch.full_like(q_idx, -1)
    for g, e, qg, n in edges:
        qsplit[g, e] = int(q_idx[g, e]) | ((int(counts[g, qg]) - 1 - n) << 24)
    return SimpleNamespace(qsplit_indices=qsplit.to(c.q.device),
                           split_counts=counts.t().contiguous().to(torch.int32).to(c.q.device))


@pytest.mark.triton
@needs_triton
def test_sparse_prefill_schedule_and_out_buffer_bitwise():
    c = make_case([(5, 260), (2, 64)], 4, 1, 64, 64, 8, TRITON_HALF, TRITON_DEVICE, seed=7)
    plain = run(c, causal=True)
    buf = torch.full_like(c.q, float("nan"))
    got = run(c, causal=True, schedule=reversed_slot_schedule(c), out=buf)
    assert got is buf
    assert torch.equal(got, plain)  # block order is canonical: slot order cannot change bits
    ro, _, _ = reference(c, causal=True)
    assert_out_close(plain, ro, c.q.dtype)


@pytest.mark.sanitize
@pytest.mark.triton
@needs_triton
@pytest.mark.parametrize("paged", [False, True])
def test_sparse_prefill_padding_rows_stay_in_bounds(paged):
    """CSR rows past the requests' blocks (request and block -1 in the row map): their key tiles
    must stay unaddressed. The kv-outer kernel once loaded a padding row's tile at block -1, up
    to one block before the K/V cache or page_table[-1] (GPU fuzz with the SM12x launch
    configs, 2026-11-28); the interpreter's bounds checks catch it."""
    c = make_case([(3, 0), (2, 63), (3, 0)], 4, 1, 64, 64, 4, TRITON_HALF, TRITON_DEVICE, seed=1)
    c.row_ptr = torch.cat([c.row_ptr, c.row_ptr[:, -1:].expand(-1, 2)], dim=1).contiguous()
    kw = dict(causal=True)
    k, v = c.k, c.v
    if paged:
        k, v, kw["page_table"] = to_paged(c, 64, seed=1)
    out, lse = prefill.sparse_atten_func(
        c.q, k, v, c.row_ptr, c.q_idx, c.topk, cu_seqlens_q=c.cu_q, cu_seqlens_k=c.cu_k, max_seqlen_q=c.max_q,
        max_seqlen_k=c.max_k, blk_kv=c.blk, return_softmax_lse=True, **kw)
    ro, rl, _ = reference(c, k=k, v=v, **kw)
    assert_out_close(out, ro, c.q.dtype)
    assert_lse_close(lse, rl)


@pytest.mark.triton
@needs_triton
def test_sparse_prefill_empty_rows_are_zero_and_minus_inf():
    c = make_case([(3, 100), (2, 80)], 2, 1, 64, 64, 4, TRITON_HALF, TRITON_DEVICE, seed=9)
    c.row_ptr = torch.zeros_like(c.row_ptr)  # nothing selected anywhere
    out, lse = run(c, causal=True, return_softmax_lse=True)
    assert torch.equal(out, torch.zeros_like(out))
    assert torch.isinf(lse).all() and (lse < 0).all()


@pytest.mark.triton
@needs_triton
def test_sparse_prefill_nvfp4_kv_interpreter():
    c = make_case([(3, 150)], 4, 2, 64, 64, 4, TRITON_HALF, TRITON_DEVICE, seed=11)
    _nvfp4_check(c, atol=2e-2)


def _nvfp4_check(c, atol, paged_page_size=None):
    kq, ks, kg, _ = ref_nvfp4.quantize_nvfp4_reference(c.k)
    vq, vs, vg, _ = ref_nvfp4.quantize_nvfp4_reference(c.v)
    d = c.q.shape[-1]

    def deq(data, s, g):
        return ref_nvfp4.dequantize_nvfp4_reference(data, s, g, data.numel() // (d // 2), d // 16)

    kd, vd = deq(kq, ks, kg).to(c.q.dtype), deq(vq, vs, vg).to(c.q.dtype)
    out, lse = prefill.sparse_atten_nvfp4_kv_func(
        c.q, kq, vq, ks, vs, kg, vg, c.row_ptr, c.q_idx, c.topk, cu_seqlens_q=c.cu_q, cu_seqlens_k=c.cu_k,
        max_seqlen_q=c.max_q, max_seqlen_k=c.max_k, blk_kv=c.blk, causal=True, return_softmax_lse=True)
    ro, rl, _ = reference(c, k=kd, v=vd, causal=True)
    assert (out.float() - ro).abs().max().item() <= atol
    assert_lse_close(lse, rl, atol=2e-3)


# ----------------------------------------------------------------------------- CPU (reference path)

def test_k2q_csr_worked_example():
    q2k = torch.tensor([[[1], [-1], [0], [0]]], dtype=torch.int32)
    cu = torch.tensor([0, 2, 4], dtype=torch.int32)
    row_ptr, q_idx = ref_prefill.q2k_to_k2q_csr(q2k, cu, cu, 1)
    assert row_ptr.tolist() == [[0, 0, 2, 3, 3]]
    assert q_idx[0, :3].tolist() == [0, 1, 0] and (q_idx[0, 3:] == -1).all()
    back = ref_prefill.k2q_csr_to_q2k(row_ptr, q_idx, cu, cu, 1, 1)
    assert back[0, :, 0].tolist() == [1, -1, 0, 0]


def test_reference_with_every_block_selected_is_dense_causal_attention():
    lens = [(5, 9), (4, 4)]
    c = make_case(lens, 4, 2, 64, 64, 1, torch.float32, "cpu", local=False, holes=False)
    q2k = torch.zeros(2, 9, 1, dtype=torch.int32)  # block 0 covers every key
    c.row_ptr, c.q_idx = ref_prefill.q2k_to_k2q_csr(q2k, c.cu_q, c.cu_k, 64)
    out, lse, _ = reference(c, causal=True)
    q0, k0 = 0, 0
    for lq, lk in lens:
        qs = c.q[q0:q0 + lq].transpose(0, 1)
        ks = c.k[k0:k0 + lk].repeat_interleave(2, dim=1).transpose(0, 1)
        vs = c.v[k0:k0 + lk].repeat_interleave(2, dim=1).transpose(0, 1)
        mask = torch.ones(lq, lk, dtype=torch.bool).tril(lk - lq)
        want = torch.nn.functional.scaled_dot_product_attention(qs, ks, vs, attn_mask=mask).transpose(0, 1)
        assert torch.allclose(out[q0:q0 + lq], want, atol=1e-5)
        q0, k0 = q0 + lq, k0 + lk


def test_return_conventions_on_cpu():
    c = make_case([(3, 100)], 2, 1, 64, 64, 2, torch.float16, "cpu")
    out = run(c, causal=True)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float16
    out2, lse = run(c, causal=True, return_softmax_lse=True)
    assert torch.equal(out, out2) and lse.dtype == torch.float32 and lse.shape == (3, 2)
    _, lse3, tlse = run(c, causal=True, return_softmax_lse=True, return_temperature_lse=True)
    assert tlse is lse3
    _, lse4, tlse4 = run(c, causal=True, return_softmax_lse=True, return_temperature_lse=True,
                         lse_temperature_scale=2.0)
    assert not torch.equal(tlse4, lse4)
    with pytest.raises(ValueError, match="return_temperature_lse"):
        run(c, return_temperature_lse=True)


@pytest.mark.parametrize("change,exc,name", [
    (dict(q=torch.zeros(3, 2, 64, dtype=torch.float32)), TypeError, "q"),
    (dict(q=torch.zeros(3, 2, 48, dtype=torch.float16)), ValueError, "head dim"),
    (dict(k=torch.zeros(100, 1, 64, dtype=torch.bfloat16)), TypeError, "k"),
    (dict(topk=0), ValueError, "topK"),
    (dict(topk=65), ValueError, "topK"),
    (dict(blk=96), ValueError, "blk_kv"),
    (dict(cu_q=torch.tensor([0, 3], dtype=torch.int64)), TypeError, "cu_seqlens_q"),
    (dict(cu_q=torch.tensor([0, 2], dtype=torch.int32)), ValueError, "cu_seqlens_q"),
    (dict(row_ptr=torch.zeros(2, 3, dtype=torch.int32)), ValueError, "k2q_row_ptr"),
])
def test_bad_inputs_raise_naming_the_argument(change, exc, name):
    c = make_case([(3, 100)], 2, 1, 64, 64, 2, torch.float16, "cpu")
    for key, val in change.items():
        setattr(c, key, val)
    with pytest.raises(exc, match=name):
        run(c)


def test_bad_paged_and_nvfp4_inputs():
    c = make_case([(3, 100)], 2, 1, 64, 64, 2, torch.float16, "cpu")
    kp, vp, table = to_paged(c, 64)
    with pytest.raises(ValueError, match="page_table"):
        prefill.sparse_atten_func(c.q, kp, vp, c.row_ptr, c.q_idx, 2, cu_seqlens_q=c.cu_q, cu_seqlens_k=c.cu_k,
                                  max_seqlen_q=3, max_seqlen_k=100, blk_kv=64, page_table=table + 100)
    with pytest.raises(TypeError, match="NVFP4"):
        run(c, fn=lambda *a, **kw: prefill.sparse_atten_nvfp4_kv_func(
            a[0], a[1], a[2], torch.zeros(512, dtype=torch.uint8), torch.zeros(512, dtype=torch.uint8),
            None, None, *a[3:], **kw))
    with pytest.raises(TypeError, match="schedule"):
        run(c, schedule=object())


def test_nvfp4_global_scales_use_element_0():
    """A k/v_global_scale of several elements is accepted, and only element 0 counts (as in the kernel)."""
    c = make_case([(3, 100), (2, 70)], 4, 2, 64, 64, 2, torch.float16, "cpu")
    qk, qv = msa.quantize_kv_bf16_to_nvfp4_128x4(c.k, c.v)

    def call(k_global, v_global):
        return prefill.sparse_atten_nvfp4_kv_func(
            c.q, qk.data, qv.data, qk.scale_128x4, qv.scale_128x4, k_global, v_global, c.row_ptr, c.q_idx, c.topk,
            cu_seqlens_q=c.cu_q, cu_seqlens_k=c.cu_k, max_seqlen_q=c.max_q, max_seqlen_k=c.max_k, blk_kv=c.blk,
            causal=True, return_softmax_lse=True)

    want_out, want_lse = call(qk.global_scale, qv.global_scale)
    got_out, got_lse = call(torch.cat([qk.global_scale, torch.tensor([7.0])]),
                            torch.cat([qv.global_scale, torch.tensor([-3.0, 5.0])]))
    assert want_out.abs().max() > 0
    assert torch.equal(got_out, want_out) and torch.equal(got_lse, want_lse)


# ----------------------------------------------------------------------------- GPU

GPU_CASES = [
    # lens, Hq, Hkv, D, blk, topK
    ([(700, 2500), (300, 300), (64, 1400)], 32, 2, 128, 128, 16),
    ([(500, 900), (257, 1100)], 8, 8, 64, 64, 64),
    ([(400, 3000)], 16, 1, 128, 128, 32),
]


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("lens,hq,hkv,d,blk,topk", GPU_CASES)
def test_gpu_bf16_matches_reference_and_is_deterministic(lens, hq, hkv, d, blk, topk):
    c = make_case(lens, hq, hkv, d, blk, topk, torch.bfloat16, "cuda")
    out, lse = run(c, causal=True, return_softmax_lse=True)
    out2, lse2 = run(c, causal=True, return_softmax_lse=True)
    assert torch.equal(out, out2) and torch.equal(lse, lse2)
    ro, rl, _ = reference(c, causal=True)
    assert_out_close(out, ro, torch.bfloat16)
    assert_lse_close(lse, rl)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("q_dtype", [torch.bfloat16, torch.float16])
def test_gpu_fp8_kv_bit_exact_vs_upcast(q_dtype):
    c = make_case([(300, 1200), (129, 129)], 32, 2, 128, 128, 16, q_dtype, "cuda", seed=2)
    k8, v8 = c.k.to(torch.float8_e4m3fn), c.v.to(torch.float8_e4m3fn)
    got, lse = prefill.sparse_atten_func(
        c.q, k8, v8, c.row_ptr, c.q_idx, c.topk, cu_seqlens_q=c.cu_q, cu_seqlens_k=c.cu_k,
        max_seqlen_q=c.max_q, max_seqlen_k=c.max_k, blk_kv=c.blk, causal=True, return_softmax_lse=True)
    c.k, c.v = k8.to(q_dtype), v8.to(q_dtype)
    want, want_lse = run(c, causal=True, return_softmax_lse=True)
    assert torch.equal(got, want) and torch.equal(lse, want_lse)


@pytest.mark.gpu
@needs_cuda
def test_gpu_fp8_qkv_matches_reference():
    c = make_case([(300, 1200), (100, 700)], 32, 2, 128, 128, 16, torch.bfloat16, "cuda", seed=4)
    q8, k8, v8 = (t.to(torch.float8_e4m3fn) for t in (c.q, c.k, c.v))
    out, lse = prefill.sparse_atten_func(
        q8, k8, v8, c.row_ptr, c.q_idx, c.topk, cu_seqlens_q=c.cu_q, cu_seqlens_k=c.cu_k,
        max_seqlen_q=c.max_q, max_seqlen_k=c.max_k, blk_kv=c.blk, causal=True, return_softmax_lse=True)
    assert out.dtype == torch.bfloat16
    ro, rl, _ = reference(c, q=q8, k=k8, v=v8, causal=True)
    assert (out.float() - ro.bfloat16().float()).abs().max().item() <= 0.125
    assert_lse_close(lse, rl, atol=2e-3)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.kernels_ci
def test_gpu_paged_m3_shape():
    c = make_case([(600, 2000), (200, 700)], 64, 4, 128, 128, 16, torch.bfloat16, "cuda", seed=6)
    kp, vp, table = to_paged(c, 128, seed=6)
    seqused = torch.tensor([1900, 700], dtype=torch.int32, device="cuda")
    out, lse = prefill.sparse_atten_func(
        c.q, kp, vp, c.row_ptr, c.q_idx, c.topk, cu_seqlens_q=c.cu_q, cu_seqlens_k=c.cu_k,
        max_seqlen_q=c.max_q, max_seqlen_k=c.max_k, blk_kv=128, causal=True, return_softmax_lse=True,
        page_table=table, seqused_k=seqused)
    ro, rl, _ = reference(c, k=kp, v=vp, causal=True, page_table=table, seqused_k=seqused)
    assert_out_close(out, ro, torch.bfloat16)
    assert_lse_close(lse, rl)


@pytest.mark.gpu
@needs_cuda
def test_gpu_nvfp4_kv_vs_dequantized_bf16():
    c = make_case([(300, 1200), (64, 500)], 32, 2, 128, 128, 16, torch.bfloat16, "cuda", seed=8)
    _nvfp4_check(c, atol=2e-2)


@pytest.mark.gpu
@needs_cuda
def test_gpu_cuda_graph_replay_matches_eager():
    c = make_case([(200, 900), (50, 300)], 16, 1, 128, 128, 16, torch.bfloat16, "cuda", seed=10)
    eager = run(c, causal=True)
    out = torch.empty_like(eager)
    run(c, causal=True, out=out)  # warm up (compiles) outside the capture
    graph = torch.cuda.CUDAGraph()
    out.zero_()
    with torch.cuda.graph(graph):
        run(c, causal=True, out=out)
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(out, eager)


@pytest.mark.gpu
@needs_cuda
def test_gpu_torch_compile_matches_eager(prefill_kernel):
    torch._dynamo.reset()
    c = make_case([(200, 900), (50, 300)], 16, 1, 128, 128, 16, torch.bfloat16, "cuda", seed=10)
    eager, eager_lse = run(c, causal=True, return_softmax_lse=True)

    @torch.compile(fullgraph=True)
    def compiled(q, k, v, rp, qi, cu_q, cu_k):
        return prefill.sparse_atten_func(q, k, v, rp, qi, c.topk, cu_seqlens_q=cu_q, cu_seqlens_k=cu_k,
                                         max_seqlen_q=c.max_q, max_seqlen_k=c.max_k, blk_kv=c.blk,
                                         causal=True, return_softmax_lse=True)

    got, lse = compiled(c.q, c.k, c.v, c.row_ptr, c.q_idx, c.cu_q, c.cu_k)
    ro, rl, _ = reference(c, causal=True)
    assert_out_close(got, ro, torch.bfloat16)
    assert_lse_close(lse, rl)
    if prefill_kernel == "query_major" and not torch.equal(got, eager):
        # Seen on an H200 (2026-11-27): the inductor-compiled query-major path differs from
        # eager in the last bit of some outputs (both within tolerance); cause not found yet.
        pytest.xfail("compiled query-major prefill is not bitwise equal to eager")
    assert torch.equal(got, eager)
    assert torch.equal(lse, eager_lse)
