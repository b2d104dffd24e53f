"""KV pools of more than 2^31 elements: every touched page/slot sits past element 2^31.

A kernel that forms element offsets in 32 bits wraps there. Each test runs the kernel twice,
once on a small pool and once on a huge FP8 pool (~2 GiB each for K and V) holding the same
pages at its end in shuffled order, with the table remapped: the outputs must be bitwise
equal (same kernel and launch config, only the page ids differ). The reference is built from
the small pool only, never from the huge one.
"""
import importlib

import pytest
import test_decode as td
import test_flashrt as tf
import test_prefill as tp
import torch
from _pkg import msa, needs_cuda

prefill = importlib.import_module(msa.__name__ + ".prefill")
flashrt = importlib.import_module(msa.__name__ + ".flashrt")

LIMIT = 1 << 31  # elements: an offset at or past this overflows int32
GIB = 1 << 30
FP8 = torch.float8_e4m3fn
K_FILL, V_FILL = 0x38, 0xB8  # E4M3 bit patterns of +1.0 and -1.0: reading a wrong row changes the result

pytestmark = [pytest.mark.gpu, needs_cuda]
DEVICE = "cuda"  # one name, so the bodies can be dry-run on the CPU reference path


def _round16(n):
    # Triton specializes integer arguments on divisibility by 16: keep the row counts of both
    # pools multiples of 16 so both runs use the same compiled kernel.
    return -(-n // 16) * 16


def _pad_rows(t, fill):
    """Append filler rows up to a multiple of 16 rows."""
    extra = _round16(t.shape[0]) - t.shape[0]
    if not extra:
        return t.contiguous()
    pad = torch.empty((extra, *t.shape[1:]), dtype=t.dtype, device=t.device)
    pad.view(torch.uint8).fill_(fill)
    return torch.cat([t, pad]).contiguous()


def _embed_at_end(small_k, small_v, seed):
    """Copy the small pools' rows to the end of pools of > 2^31 elements, shuffled.

    Returns (big_k, big_v, dest) with dest[i] = the big-pool row of small row i; every dest row
    starts at or past element 2^31. Skips when the GPU lacks the memory.
    """
    rows = small_k.shape[0]
    row_elems = small_k[0].numel()
    total = _round16(LIMIT // row_elems + rows + 1)
    need = 2 * total * row_elems * small_k.element_size() + GIB  # + slack for the kernels' own buffers
    free, _ = torch.cuda.mem_get_info()
    if free < need:
        pytest.skip(f"needs {need / GIB:.1f} GiB of free GPU memory, {free / GIB:.1f} GiB free")
    dest = (total - rows + torch.randperm(rows, generator=torch.Generator().manual_seed(seed))).to(DEVICE)
    assert int(dest.min()) * row_elems >= LIMIT and total * row_elems > LIMIT
    big = []
    for small, fill in ((small_k, K_FILL), (small_v, V_FILL)):
        t = torch.empty((total, *small.shape[1:]), dtype=small.dtype, device=DEVICE)
        t.view(torch.uint8).fill_(fill)
        t.view(torch.uint8).index_copy_(0, dest, small.view(torch.uint8))
        big.append(t)
    return big[0], big[1], dest


def _remap(table, dest):
    """Small-pool ids -> big-pool ids; ids that are invalid in the small pool become -1."""
    rows = dest.numel()
    ok = (table >= 0) & (table < rows)
    return torch.where(ok, dest[table.long().clamp(0, rows - 1)], -1).to(table.dtype)


def _release():
    """Hand the freed big pools back to the driver so later tests see the memory free."""
    torch.cuda.synchronize()
    torch.cuda.empty_cache()


def _fp8_kv_check(out, lse, ref_out, ref_lse):
    # Same bounds as test_decode.test_gpu_fp8_kv_with_scales (FP8 K/V, BF16 output).
    assert (out.float().cpu() - ref_out.bfloat16().float()).abs().max().item() <= 0.125
    finite = torch.isfinite(ref_lse)
    assert torch.equal(torch.isfinite(lse.cpu()), finite)
    assert torch.allclose(lse.cpu()[finite], ref_lse[finite], atol=2e-3, rtol=0)


@pytest.mark.parametrize("sparse", [True, False])
def test_paged_decode_pages_past_2g_elements(sparse):
    # [pages, Hkv=2, 128, 128]: 32768 elements a page, ~65.7K pages in the big pool.
    small = td._m3_case(4, 2, [5000, 300, 2049, 129], torch.bfloat16, hq=16, hkv=2, topk=16, seed=21)
    if not sparse:
        small["q2k_indices"] = None
    small["k"] = _pad_rows(small["k"].to(FP8), K_FILL)
    small["v"] = _pad_rows(small["v"].to(FP8), V_FILL)
    out_small, lse_small = td.run_case(small)

    big_k, big_v, dest = _embed_at_end(small["k"], small["v"], seed=21)
    big = dict(small, k=big_k, v=big_v, page_table=_remap(small["page_table"], dest))
    out_big, lse_big = td.run_case(big)
    del big, big_k, big_v
    _release()

    assert torch.equal(out_big, out_small)
    assert torch.equal(lse_big, lse_small)
    _fp8_kv_check(out_big, lse_big, *td.reference_of(small))


@pytest.mark.usefixtures("prefill_kernel")
def test_paged_prefill_pages_past_2g_elements():
    c = tp.make_case([(300, 1500), (200, 700), (64, 64)], 16, 2, 128, 128, 16, torch.bfloat16, DEVICE, seed=23)
    kp, vp, table = tp.to_paged(c, 128, seed=23)
    kp = _pad_rows(kp.to(FP8), K_FILL)
    vp = _pad_rows(vp.to(FP8), V_FILL)
    seqused = torch.tensor([1400, 700, 64], dtype=torch.int32, device=DEVICE)

    def call(k, v, page_table):
        return prefill.sparse_atten_func(
            c.q, k, v, c.row_ptr, c.q_idx, c.topk, cu_seqlens_q=c.cu_q, cu_seqlens_k=c.cu_k,
            max_seqlen_q=c.max_q, max_seqlen_k=c.max_k, blk_kv=128, causal=True, return_softmax_lse=True,
            page_table=page_table, seqused_k=seqused)

    out_small, lse_small = call(kp, vp, table)
    big_k, big_v, dest = _embed_at_end(kp, vp, seed=23)
    out_big, lse_big = call(big_k, big_v, _remap(table, dest))
    del big_k, big_v
    _release()

    assert torch.equal(out_big, out_small)
    assert torch.equal(lse_big, lse_small)
    # FP8 K/V upcast to BF16 exactly (CONTRACT §3): the BF16 bounds of test_prefill apply.
    ro, rl, _ = tp.reference(c, k=kp, v=vp, causal=True, page_table=table, seqused_k=seqused)
    tp.assert_out_close(out_big, ro, torch.bfloat16)
    tp.assert_lse_close(lse_big, rl)


def test_token_slot_decode_slots_past_2g_elements():
    # [slots, Hkv=2, 128]: 256 elements a slot, ~8.4M slots in the big cache.
    small = tf.make_slot_case(lens=[5000, 17, 2000, 1], hq=16, hkv=2, d=128, block=128, topk=16,
                              dtype=torch.bfloat16, device=DEVICE, seed=25)
    small["k_cache"] = _pad_rows(small["k_cache"].to(FP8), K_FILL)
    small["v_cache"] = _pad_rows(small["v_cache"].to(FP8), V_FILL)
    out_small, lse_small = flashrt.token_slot_decode(**small, return_softmax_lse=True)
    fast_small = flashrt.flash_decode_with_gqa_share_sparse(**small)

    big_k, big_v, dest = _embed_at_end(small["k_cache"], small["v_cache"], seed=25)
    big = dict(small, k_cache=big_k, v_cache=big_v, req_to_token=_remap(small["req_to_token"], dest))
    out_big, lse_big = flashrt.token_slot_decode(**big, return_softmax_lse=True)
    fast_big = flashrt.flash_decode_with_gqa_share_sparse(**big)
    del big, big_k, big_v
    _release()

    assert torch.equal(out_big, out_small)
    assert torch.equal(lse_big, lse_small)
    assert torch.equal(fast_big, fast_small)
    _fp8_kv_check(out_big, lse_big, *tf.reference_of(small))
