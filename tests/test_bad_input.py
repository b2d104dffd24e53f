"""Table-driven bad input (CONTRACT §6): for every public function, valid baseline arguments with
exactly one argument corrupted (wrong dtype, rank, shape, device, a list for a tensor, or a bad
value) must raise ValueError or TypeError whose message names that argument.

The per-module tests (test_prefill.py, test_decode.py, ...) hold the first cases of each
function; this table fills the gaps. Baselines are CPU tensors (the checks run before any
kernel); a 'meta' tensor stands for a tensor on another device. Known validation gaps are
strict xfails: fixing one makes its row fail until the `gap=` note is removed.
"""
import dataclasses
import re
from types import SimpleNamespace

import pytest
import torch
from _pkg import msa
from test_decode import make_case as make_decode_case
from test_decode_indexer import make_cache
from test_fmha import make_inputs as make_fmha_inputs
from test_flashrt import make_slot_case
from test_indexer import make_case as make_fp4_case
from test_prefill import make_case as make_prefill_case
from test_prefill import reversed_slot_schedule, to_paged

F16, BF16, F32, F64, I32, I64, FP8 = (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int32,
                                      torch.int64, torch.float8_e4m3fn)

# ----------------------------------------------------------------------------- baselines
# Each returns (callable, kwargs): valid arguments, all passed by name.

BASELINES = {}


def baseline(key):
    def register(fn):
        BASELINES[key] = fn
        return fn

    return register


def _prefill_case():
    return make_prefill_case([(3, 100), (2, 70)], 4, 2, 64, 64, 2, F16, "cpu")


def _prefill_kwargs(c):
    return dict(q=c.q, k=c.k, v=c.v, k2q_row_ptr=c.row_ptr, k2q_q_indices=c.q_idx, topK=c.topk,
                cu_seqlens_q=c.cu_q, cu_seqlens_k=c.cu_k, max_seqlen_q=c.max_q, max_seqlen_k=c.max_k, blk_kv=c.blk)


@baseline("sparse_atten_func")
def _prefill():
    c = _prefill_case()
    return msa.sparse_atten_func, dict(_prefill_kwargs(c), out=torch.empty_like(c.q))


@baseline("sparse_atten_func/paged")
def _prefill_paged():
    c = _prefill_case()
    kp, vp, table = to_paged(c, 64)
    return msa.sparse_atten_func, dict(_prefill_kwargs(c), k=kp, v=vp, page_table=table,
                                       seqused_k=torch.tensor([90, 70], dtype=I32))


@baseline("sparse_atten_func/schedule")
def _prefill_schedule():
    c = _prefill_case()
    return msa.sparse_atten_func, dict(_prefill_kwargs(c), schedule=reversed_slot_schedule(c))


@baseline("sparse_atten_nvfp4_kv_func")
def _prefill_nvfp4():
    c = _prefill_case()
    qk, qv = msa.quantize_kv_bf16_to_nvfp4_128x4(c.k, c.v)
    return msa.sparse_atten_nvfp4_kv_func, dict(
        _prefill_kwargs(c), k=qk.data, v=qv.data, k_scale_128x4=qk.scale_128x4, v_scale_128x4=qv.scale_128x4,
        k_global_scale=qk.global_scale, v_global_scale=qv.global_scale)


def _decode_case():
    return make_decode_case(lens=[100, 30], seqlen_q=2, hq=4, hkv=2, d=64, blk=64, topk=2, dtype=F16, device="cpu")


@baseline("sparse_decode_atten_func")
def _decode():
    case = _decode_case()
    return msa.sparse_decode_atten_func, dict(case, out=torch.empty_like(case["q"]))


@baseline("sparse_decode_atten_func/fp8")
def _decode_fp8():
    case = _decode_case()
    case["k"], case["v"] = case["k"].to(FP8), case["v"].to(FP8)
    return msa.sparse_decode_atten_func, dict(case, k_scale=torch.ones(1), v_scale=torch.ones(1))


@baseline("SparseDecodePagedAttentionWrapper")
def _wrapper_init():
    return msa.SparseDecodePagedAttentionWrapper, dict(blk_kv=64, causal=True)


def _plan_kwargs(case):
    return dict(page_table=case["page_table"], seqused_k=case["seqused_k"], seqlen_q=case["seqlen_q"],
                max_seqlen_k=case["max_seqlen_k"], q2k_indices=case["q2k_indices"], num_qo_heads=4,
                num_kv_heads=2, head_dim=64)


@baseline("SparseDecodePagedAttentionWrapper.plan")
def _wrapper_plan():
    return msa.SparseDecodePagedAttentionWrapper(blk_kv=64).plan, _plan_kwargs(_decode_case())


@baseline("SparseDecodePagedAttentionWrapper.run")
def _wrapper_run():
    case = _decode_case()
    wrapper = msa.SparseDecodePagedAttentionWrapper(blk_kv=64).plan(**_plan_kwargs(case))
    rows = case["q"].shape[0]
    return wrapper.run, dict(q=case["q"], k=case["k"], v=case["v"], out=torch.empty_like(case["q"]),
                             lse=torch.empty(rows, 4, dtype=F32))


def _csr_kwargs():
    return dict(q2k_indices=torch.tensor([[[0, 1], [1, -1], [0, 0]]], dtype=I32),
                cu_seqlens_q=torch.tensor([0, 2, 3], dtype=I32), cu_seqlens_k=torch.tensor([0, 4, 6], dtype=I32),
                total_k=6)


@baseline("build_k2q_csr")
def _csr():
    return msa.build_k2q_csr, dict(_csr_kwargs(), kv_block_size=2)


@baseline("SparseK2qCsrBuilderSm100")
def _csr_builder():
    return msa.SparseK2qCsrBuilderSm100(), dict(_csr_kwargs(), blk_kv=2)


def _fp4(layout):
    (q, k, qs, ks, cu_q, cu_k, cu_p), kw = make_fp4_case("nvfp4", layout, [3, 2], [100, 200])
    return dict(q_fp4=q, k_fp4=k, q_scale=qs, k_scale=ks, cu_seqlens_q=cu_q, cu_seqlens_k=cu_k, cu_page_offsets=cu_p,
                **kw)


@baseline("fp4_indexer_block_scores")
def _fp4_public():
    return msa.fp4_indexer_block_scores, dict(_fp4("public"), causal=True, qo_offset=torch.tensor([97, 198],
                                                                                                 dtype=I32))


@baseline("fp4_indexer_block_scores/preordered")
def _fp4_preordered():
    return msa.fp4_indexer_block_scores, _fp4("preordered_mma")


@baseline("quantize_bf16_to_nvfp4_128x4")
def _quantize():
    return msa.quantize_bf16_to_nvfp4_128x4, dict(x=torch.randn(4, 32).to(BF16))


@baseline("quantize_kv_bf16_to_nvfp4_128x4")
def _quantize_kv():
    return msa.quantize_kv_bf16_to_nvfp4_128x4, dict(k=torch.randn(4, 2, 32).to(BF16),
                                                     v=torch.randn(4, 2, 32).to(BF16))


@baseline("dequantize_nvfp4_128x4_to_bf16")
def _dequantize():
    return msa.dequantize_nvfp4_128x4_to_bf16, dict(qx=msa.quantize_bf16_to_nvfp4_128x4(torch.randn(4, 32).to(BF16)))


@baseline("swizzle_nvfp4_scale_to_128x4")
def _swizzle():
    return msa.swizzle_nvfp4_scale_to_128x4, dict(scale=torch.ones(3, 4, dtype=torch.uint8), rows=3, cols=4)


@baseline("unswizzle_nvfp4_scale_from_128x4")
def _unswizzle():
    return msa.unswizzle_nvfp4_scale_from_128x4, dict(scale_128x4=torch.ones(512, dtype=torch.uint8), rows=3,
                                                      cols=4)


@baseline("nvfp4_global_scale_from_amax")
def _global_scale():
    return msa.nvfp4_global_scale_from_amax, dict(amax=torch.tensor(3.0))


@baseline("sparse_topk_select")
def _topk_select():
    return msa.sparse_topk_select, dict(max_score=torch.randn(2, 10, 3), topk=4,
                                        num_valid_pages=torch.tensor([10, 5, 0], dtype=I32),
                                        output=torch.empty(3, 2, 4, dtype=I32), force_begin_blocks=1,
                                        force_end_blocks=1)


@baseline("native_topk_from_scores")
def _topk_scores():
    return msa.native_topk_from_scores, dict(score=torch.randn(2, 3, 10), seq_lens=torch.tensor([5, 0, 600]),
                                             block_size=64, topk=4)


def _slot_case():
    return make_slot_case(lens=[70, 5], hq=4, hkv=2, d=64, block=64, topk=2, dtype=F16, device="cpu")


@baseline("flash_decode_with_gqa_share_sparse")
def _gqa_share():
    return msa.flash_decode_with_gqa_share_sparse, _slot_case()


@baseline("naive_flash_decode_with_gqa_share_sparse")
def _gqa_share_naive():
    return msa.naive_flash_decode_with_gqa_share_sparse, _slot_case()


def _indexer_kwargs():
    return dict(make_cache([100, 40], hq=4, hkv=2, d=64), topk=2, init_blocks=0, local_blocks=1)


@baseline("flash_decode_with_topk_idx")
def _topk_idx():
    return msa.flash_decode_with_topk_idx, _indexer_kwargs()


@baseline("flash_decode_with_topk_idx/scores_only_d32")
def _topk_idx_scores_d32():
    """Scores only: any head dim in 16..256 (the index value needs 64 or 128)."""
    return msa.flash_decode_with_topk_idx, dict(make_cache([100, 40], hq=4, hkv=2, d=32), topk=2, init_blocks=0,
                                                local_blocks=1, disable_index_value=True)


@baseline("flash_decode_with_topk_idx/scores_only_block16")
def _topk_idx_scores_block16():
    """Scores only: blocks of 16 (the index value needs 64 or more)."""
    return msa.flash_decode_with_topk_idx, dict(make_cache([100, 40], hq=4, hkv=2, d=64, block_size=16), topk=2,
                                                init_blocks=0, local_blocks=1, disable_index_value=True)


@baseline("naive_flash_decode_with_topk_idx")
def _topk_idx_naive():
    return msa.naive_flash_decode_with_topk_idx, _indexer_kwargs()


@baseline("fmha_sm12x_plan")
def _fmha_plan():
    return msa.fmha_sm12x_plan, dict(qo_segment_lens=[4, 1], kv_segment_lens=[40, 3], num_qo_heads=4, num_kv_heads=2,
                                     qo_offset=[36, 2], page_size=16, output_maxscore=True, device="cpu")


def _fmha_kwargs(page_size, d):
    plan = msa.fmha_sm12x_plan([4, 1], [40, 3], 4, 2, page_size=page_size, output_maxscore=True, device="cpu")
    q, k, v, kv_indices = make_fmha_inputs(plan, d, F16, "cpu")
    return plan, dict(q=q, k=k, v=v, plan=plan, kv_indices=kv_indices)


@baseline("fmha_sm12x")
def _fmha():
    plan, kw = _fmha_kwargs(16, 32)
    ms = torch.empty(4, plan.num_kv_tiles, plan.total_q)
    return msa.fmha_sm12x, dict(kw, out=torch.empty_like(kw["q"]), max_score=ms,
                                q_offset_override=torch.tensor([36, 2], dtype=I32))


@baseline("fmha_sm12x/sparse")
def _fmha_sparse():
    _, kw = _fmha_kwargs(-1, 64)  # the sparse pass runs sparse_atten_func: D 64 or 128
    del kw["kv_indices"]
    return msa.fmha_sm12x, dict(kw, kv_block_indexes=torch.zeros(5, 2, 1, dtype=I32))


@baseline("get_cu_seqblocks")
def _cu_seqblocks():
    return msa.get_cu_seqblocks, dict(seq_lens=torch.tensor([0, 64, 65]), block_size=64)


# ----------------------------------------------------------------------------- corruption


def _grow(t, dim):
    """One more entry along `dim` (a shape no longer matching the others)."""
    return torch.cat([t, t.narrow(dim, 0, 1)], dim=dim)


def corrupt(value, kind, param):
    if kind == "dtype":
        return value.to(param)
    if kind == "rank":
        return value.unsqueeze(0)
    if kind == "shape":
        return _grow(value, param)
    if kind == "device":
        return value.to("meta")
    if kind == "list":  # not a tensor at all
        return value.tolist()
    if kind == "value":  # replaced outright (wrong Python type, out-of-range int, ...)
        return param
    raise AssertionError(kind)


def corrupted_kwargs(kwargs, arg, kind, param):
    kw = dict(kwargs)
    if "." not in arg:
        kw[arg] = param if kind == "value" else corrupt(kw[arg], kind, param)
        return kw
    base, field = arg.split(".")
    obj = kw[base]
    new = corrupt(getattr(obj, field), kind, param)
    if dataclasses.is_dataclass(obj):
        kw[base] = dataclasses.replace(obj, **{field: new})
    else:
        kw[base] = SimpleNamespace(**{**vars(obj), field: new})
    return kw


def case(key, arg, kind, param=None, word=None, gap=None):
    """One table row. `word`: the name the message must hold (default: `arg`). `gap`: a known
    validation gap, run as a strict xfail so that fixing it turns the row into a failure to update."""
    marks = [pytest.mark.xfail(strict=True, reason="validation gap: " + gap)] if gap else []
    return pytest.param(key, arg, kind, param, word or arg, id=f"{key}-{arg}-{kind}", marks=marks)


SHAPE_LAST, SHAPE_FIRST = -1, 0

CASES = [
    # ---- sparse_atten_func (test_prefill.py covers q dtype/head dim, k dtype, topK range, blk_kv,
    #      cu_seqlens_q dtype/value, k2q_row_ptr heads, page_table range, schedule type)
    case("sparse_atten_func", "q", "rank"),
    case("sparse_atten_func", "q", "list"),
    case("sparse_atten_func", "q", "device"),
    case("sparse_atten_func", "k", "rank"),
    case("sparse_atten_func", "k", "shape", SHAPE_LAST),
    case("sparse_atten_func", "k", "device"),
    case("sparse_atten_func", "v", "dtype", F32),
    case("sparse_atten_func", "v", "rank"),
    case("sparse_atten_func", "v", "shape", SHAPE_FIRST),
    case("sparse_atten_func", "v", "device"),
    case("sparse_atten_func", "k2q_row_ptr", "dtype", I64),
    case("sparse_atten_func", "k2q_row_ptr", "rank"),
    case("sparse_atten_func", "k2q_row_ptr", "device"),
    case("sparse_atten_func", "k2q_q_indices", "dtype", I64),
    case("sparse_atten_func", "k2q_q_indices", "rank"),
    case("sparse_atten_func", "k2q_q_indices", "shape", SHAPE_FIRST),
    case("sparse_atten_func", "k2q_q_indices", "device"),
    case("sparse_atten_func", "topK", "value", 2.0),
    case("sparse_atten_func", "cu_seqlens_q", "rank"),
    case("sparse_atten_func", "cu_seqlens_q", "device"),
    case("sparse_atten_func", "cu_seqlens_k", "dtype", I64),
    case("sparse_atten_func", "cu_seqlens_k", "rank"),
    case("sparse_atten_func", "cu_seqlens_k", "shape", SHAPE_FIRST),
    case("sparse_atten_func", "cu_seqlens_k", "device"),
    case("sparse_atten_func", "max_seqlen_q", "value", 3.0),
    case("sparse_atten_func", "max_seqlen_k", "value", -1),
    case("sparse_atten_func", "blk_kv", "value", "64"),
    case("sparse_atten_func", "causal", "value", "yes"),
    case("sparse_atten_func", "softmax_scale", "value", "0.1"),
    case("sparse_atten_func", "softmax_scale", "value", True),
    case("sparse_atten_func", "cu_seqlens_q", "value", torch.tensor([0, 6, 5], dtype=I32)),  # decreasing
    case("sparse_atten_func", "cu_seqlens_k", "value", torch.tensor([0, 170, 100], dtype=I32)),
    case("sparse_atten_func", "cu_seqlens_k", "value", torch.tensor([-1, 100, 170], dtype=I32)),
    case("sparse_atten_func", "cu_seqlens_k", "value", torch.tensor([0, 100, 171], dtype=I32)),  # past k
    case("sparse_atten_func", "lse_temperature_scale", "value", 0.0),
    case("sparse_atten_func", "return_softmax_lse", "value", 1),
    case("sparse_atten_func", "partial_dtype", "value", "bf16"),
    case("sparse_atten_func", "qk_dtype", "value", "bf16"),
    case("sparse_atten_func", "pv_dtype", "value", 8),
    case("sparse_atten_func", "usable_SM_count", "value", 1.5),
    case("sparse_atten_func", "out", "dtype", BF16),
    case("sparse_atten_func", "out", "rank"),
    case("sparse_atten_func", "out", "shape", SHAPE_FIRST),
    case("sparse_atten_func", "out", "device"),
    case("sparse_atten_func/paged", "k", "rank"),
    case("sparse_atten_func/paged", "page_table", "dtype", I64),
    case("sparse_atten_func/paged", "page_table", "rank"),
    case("sparse_atten_func/paged", "page_table", "shape", SHAPE_FIRST),
    case("sparse_atten_func/paged", "page_table", "device"),
    case("sparse_atten_func/paged", "seqused_k", "dtype", I64),
    case("sparse_atten_func/paged", "seqused_k", "rank"),
    case("sparse_atten_func/paged", "seqused_k", "shape", SHAPE_FIRST),
    case("sparse_atten_func/paged", "seqused_k", "device"),
    case("sparse_atten_func/schedule", "schedule.qsplit_indices", "dtype", I64),
    case("sparse_atten_func/schedule", "schedule.qsplit_indices", "shape", SHAPE_LAST),
    case("sparse_atten_func/schedule", "schedule.qsplit_indices", "device", word="qsplit_indices"),
    # ---- sparse_atten_nvfp4_kv_func (test_prefill.py covers non-uint8 K)
    case("sparse_atten_nvfp4_kv_func", "q", "dtype", FP8),
    case("sparse_atten_nvfp4_kv_func", "v", "dtype", F16),
    case("sparse_atten_nvfp4_kv_func", "k", "shape", SHAPE_LAST),
    case("sparse_atten_nvfp4_kv_func", "k_scale_128x4", "dtype", F32),
    case("sparse_atten_nvfp4_kv_func", "k_scale_128x4", "value", torch.zeros(64, dtype=torch.uint8)),
    case("sparse_atten_nvfp4_kv_func", "k_scale_128x4", "device"),
    case("sparse_atten_nvfp4_kv_func", "v_scale_128x4", "dtype", I32),
    case("sparse_atten_nvfp4_kv_func", "v_scale_128x4", "value", torch.zeros(64, dtype=torch.uint8)),
    case("sparse_atten_nvfp4_kv_func", "v_scale_128x4", "device"),
    case("sparse_atten_nvfp4_kv_func", "k_global_scale", "dtype", F64),
    case("sparse_atten_nvfp4_kv_func", "k_global_scale", "value", torch.zeros(0)),
    case("sparse_atten_nvfp4_kv_func", "k_global_scale", "device"),
    case("sparse_atten_nvfp4_kv_func", "v_global_scale", "dtype", F16),
    case("sparse_atten_nvfp4_kv_func", "v_global_scale", "device"),
    # ---- sparse_decode_atten_func (test_decode.py covers q dtype/head dim/rows/heads, k dtype,
    #      v block size, blk_kv, seqused_k dtype, page_table batch, q2k heads/topK/dtype, seqlen_q,
    #      k_scale size, out dtype)
    case("sparse_decode_atten_func", "q", "rank"),
    case("sparse_decode_atten_func", "q", "device"),
    case("sparse_decode_atten_func", "k", "rank"),
    case("sparse_decode_atten_func", "k", "shape", SHAPE_LAST),
    case("sparse_decode_atten_func", "k", "device"),
    case("sparse_decode_atten_func", "v", "dtype", FP8),
    case("sparse_decode_atten_func", "v", "rank"),
    case("sparse_decode_atten_func", "v", "device"),
    case("sparse_decode_atten_func", "q2k_indices", "rank"),
    case("sparse_decode_atten_func", "q2k_indices", "device"),
    case("sparse_decode_atten_func", "page_table", "dtype", I64),
    case("sparse_decode_atten_func", "page_table", "rank"),
    case("sparse_decode_atten_func", "page_table", "device"),
    case("sparse_decode_atten_func", "page_table", "list"),
    case("sparse_decode_atten_func", "seqused_k", "rank"),
    case("sparse_decode_atten_func", "seqused_k", "shape", SHAPE_FIRST),
    case("sparse_decode_atten_func", "seqused_k", "device"),
    case("sparse_decode_atten_func", "seqused_k", "list"),
    case("sparse_decode_atten_func", "seqlen_q", "value", 2.0),
    case("sparse_decode_atten_func", "max_seqlen_k", "value", -5),
    case("sparse_decode_atten_func", "softmax_scale", "value", "abc"),
    case("sparse_decode_atten_func", "softmax_scale", "value", "0.1"),
    case("sparse_decode_atten_func", "softmax_scale", "value", True),
    case("sparse_decode_atten_func", "out", "rank"),
    case("sparse_decode_atten_func", "out", "shape", SHAPE_FIRST),
    case("sparse_decode_atten_func", "out", "device"),
    case("sparse_decode_atten_func", "O_partial", "value", torch.zeros(2, 4, 4, 64)),
    case("sparse_decode_atten_func/fp8", "k_scale", "dtype", F64),
    case("sparse_decode_atten_func/fp8", "k_scale", "device"),
    case("sparse_decode_atten_func/fp8", "v_scale", "dtype", F16),
    case("sparse_decode_atten_func/fp8", "v_scale", "shape", SHAPE_FIRST),
    case("sparse_decode_atten_func/fp8", "v_scale", "device"),
    # ---- SparseDecodePagedAttentionWrapper (test_decode.py covers run before plan)
    case("SparseDecodePagedAttentionWrapper", "blk_kv", "value", 96),
    case("SparseDecodePagedAttentionWrapper", "blk_kv", "value", 64.0),
    case("SparseDecodePagedAttentionWrapper.plan", "page_table", "dtype", I64),
    case("SparseDecodePagedAttentionWrapper.plan", "page_table", "rank"),
    case("SparseDecodePagedAttentionWrapper.plan", "page_table", "shape", SHAPE_FIRST),
    case("SparseDecodePagedAttentionWrapper.plan", "page_table", "device"),
    case("SparseDecodePagedAttentionWrapper.plan", "seqused_k", "list"),
    case("SparseDecodePagedAttentionWrapper.plan", "seqused_k", "dtype", I64),
    case("SparseDecodePagedAttentionWrapper.plan", "seqused_k", "rank"),
    case("SparseDecodePagedAttentionWrapper.plan", "seqlen_q", "value", 0),
    case("SparseDecodePagedAttentionWrapper.plan", "max_seqlen_k", "value", -1),
    case("SparseDecodePagedAttentionWrapper.plan", "head_dim", "value", 96),
    case("SparseDecodePagedAttentionWrapper.plan", "q2k_indices", "dtype", I64),
    case("SparseDecodePagedAttentionWrapper.plan", "q2k_indices", "shape", SHAPE_FIRST),
    case("SparseDecodePagedAttentionWrapper.plan", "q2k_indices", "device"),
    case("SparseDecodePagedAttentionWrapper.plan", "num_qo_heads", "value", 0),
    case("SparseDecodePagedAttentionWrapper.plan", "num_kv_heads", "value", 3),
    case("SparseDecodePagedAttentionWrapper.plan", "fixed_split_size", "value", 0),
    case("SparseDecodePagedAttentionWrapper.plan", "max_grid_size", "value", 0),
    case("SparseDecodePagedAttentionWrapper.run", "q", "dtype", F32),
    case("SparseDecodePagedAttentionWrapper.run", "q", "shape", SHAPE_FIRST),
    case("SparseDecodePagedAttentionWrapper.run", "q", "device"),
    case("SparseDecodePagedAttentionWrapper.run", "k", "dtype", BF16),
    case("SparseDecodePagedAttentionWrapper.run", "k", "rank"),
    case("SparseDecodePagedAttentionWrapper.run", "k", "device"),
    case("SparseDecodePagedAttentionWrapper.run", "v", "dtype", F32),
    case("SparseDecodePagedAttentionWrapper.run", "v", "shape", SHAPE_LAST),
    case("SparseDecodePagedAttentionWrapper.run", "out", "dtype", BF16),
    case("SparseDecodePagedAttentionWrapper.run", "out", "shape", SHAPE_FIRST),
    case("SparseDecodePagedAttentionWrapper.run", "lse", "dtype", F16),
    case("SparseDecodePagedAttentionWrapper.run", "lse", "shape", SHAPE_LAST),
    case("SparseDecodePagedAttentionWrapper.run", "lse", "device"),
    case("SparseDecodePagedAttentionWrapper.run", "softmax_scale", "value", "0.1"),
    # ---- build_k2q_csr (test_csr.py covers total_k, q2k rank/dtype/topK, cu dtypes/lengths,
    #      kv_block_size, total_rows, qhead_per_kv, max_seqlen_k type)
    case("build_k2q_csr", "q2k_indices", "device"),
    case("build_k2q_csr", "q2k_indices", "list"),
    case("build_k2q_csr", "cu_seqlens_q", "rank"),
    case("build_k2q_csr", "cu_seqlens_q", "device"),
    case("build_k2q_csr", "cu_seqlens_k", "dtype", F32),
    case("build_k2q_csr", "cu_seqlens_k", "rank"),
    case("build_k2q_csr", "cu_seqlens_k", "device"),
    case("build_k2q_csr", "kv_block_size", "value", 2.0),
    case("build_k2q_csr", "total_k", "value", 6.0),
    case("build_k2q_csr", "max_seqlen_q", "value", -1),
    case("build_k2q_csr", "total_rows", "value", "4"),
    case("SparseK2qCsrBuilderSm100", "blk_kv", "value", 0),
    case("SparseK2qCsrBuilderSm100", "total_k", "value", None),
    case("SparseK2qCsrBuilderSm100", "q2k_indices", "dtype", F32),
    # ---- fp4_indexer_block_scores (test_indexer.py covers qo_offset without causal, fp4_format,
    #      scale_layout, q_scale layout, q_fp4 dtype, k_fp4 page size, kv_indices dtype)
    case("fp4_indexer_block_scores", "q_fp4", "rank"),
    case("fp4_indexer_block_scores", "q_fp4", "device"),
    case("fp4_indexer_block_scores", "k_fp4", "dtype", I32),
    case("fp4_indexer_block_scores", "k_fp4", "rank"),
    case("fp4_indexer_block_scores", "k_fp4", "shape", SHAPE_LAST),
    case("fp4_indexer_block_scores", "k_fp4", "device"),
    case("fp4_indexer_block_scores", "q_scale", "dtype", F32),
    case("fp4_indexer_block_scores", "q_scale", "shape", SHAPE_FIRST),
    case("fp4_indexer_block_scores", "q_scale", "device"),
    case("fp4_indexer_block_scores", "k_scale", "dtype", F32),
    case("fp4_indexer_block_scores", "k_scale", "shape", SHAPE_LAST),
    case("fp4_indexer_block_scores", "k_scale", "device"),
    case("fp4_indexer_block_scores", "cu_seqlens_q", "dtype", I64),
    case("fp4_indexer_block_scores", "cu_seqlens_q", "rank"),
    case("fp4_indexer_block_scores", "cu_seqlens_q", "device"),
    case("fp4_indexer_block_scores", "cu_seqlens_k", "dtype", I64),
    case("fp4_indexer_block_scores", "cu_seqlens_k", "shape", SHAPE_FIRST),
    case("fp4_indexer_block_scores", "cu_seqlens_k", "device"),
    case("fp4_indexer_block_scores", "cu_page_offsets", "dtype", I64),
    case("fp4_indexer_block_scores", "cu_page_offsets", "shape", SHAPE_FIRST),
    case("fp4_indexer_block_scores", "cu_page_offsets", "device"),
    case("fp4_indexer_block_scores", "kv_indices", "rank"),
    case("fp4_indexer_block_scores", "kv_indices", "device"),
    case("fp4_indexer_block_scores", "kv_indices", "list"),
    case("fp4_indexer_block_scores", "qo_offset", "dtype", I64),
    case("fp4_indexer_block_scores", "qo_offset", "shape", SHAPE_FIRST),
    case("fp4_indexer_block_scores", "qo_offset", "device"),
    case("fp4_indexer_block_scores", "max_seqlen_q", "value", 5.0),
    case("fp4_indexer_block_scores", "max_seqlen_k", "value", -1),
    case("fp4_indexer_block_scores/preordered", "q_scale", "shape", SHAPE_FIRST),
    case("fp4_indexer_block_scores/preordered", "k_scale", "shape", 1),
    case("fp4_indexer_block_scores/preordered", "k_scale", "dtype", I64),
    # ---- NVFP4 helpers (test_nvfp4.py covers quantize dtype/rank/last dim/non-tensor, quantize_kv
    #      v dtype, dequantize qx type/scale size/logical shape/data dtype, swizzle size/dtype/rows type,
    #      unswizzle size)
    case("quantize_kv_bf16_to_nvfp4_128x4", "k", "dtype", F32),
    case("quantize_kv_bf16_to_nvfp4_128x4", "k", "value", torch.zeros(32, dtype=BF16)),
    case("quantize_kv_bf16_to_nvfp4_128x4", "k", "value", torch.zeros(4, 24, dtype=BF16)),
    case("quantize_kv_bf16_to_nvfp4_128x4", "v", "value", torch.zeros(4, 2, 8, dtype=BF16)),
    case("dequantize_nvfp4_128x4_to_bf16", "qx.data", "shape", SHAPE_LAST),
    case("dequantize_nvfp4_128x4_to_bf16", "qx.scale_128x4", "dtype", torch.int8),
    case("dequantize_nvfp4_128x4_to_bf16", "qx.scale_128x4", "device"),
    case("dequantize_nvfp4_128x4_to_bf16", "qx.global_scale", "dtype", F64),
    case("dequantize_nvfp4_128x4_to_bf16", "qx.global_scale", "shape", SHAPE_FIRST),
    case("dequantize_nvfp4_128x4_to_bf16", "qx.global_scale", "device"),
    case("dequantize_nvfp4_128x4_to_bf16", "qx.original_shape", "value", (4, 30), word="qx.data"),
    case("swizzle_nvfp4_scale_to_128x4", "scale", "value", [[1, 2, 3, 4]] * 3),
    case("swizzle_nvfp4_scale_to_128x4", "rows", "value", -1),
    case("swizzle_nvfp4_scale_to_128x4", "cols", "value", 4.0),
    case("unswizzle_nvfp4_scale_from_128x4", "scale_128x4", "dtype", F32),
    case("unswizzle_nvfp4_scale_from_128x4", "rows", "value", "3"),
    case("unswizzle_nvfp4_scale_from_128x4", "cols", "value", -4),
    case("nvfp4_global_scale_from_amax", "amax", "value", "abc"),
    case("nvfp4_global_scale_from_amax", "amax", "value", None),
    case("nvfp4_global_scale_from_amax", "amax", "value", True),
    # ---- sparse_topk_select (test_topk.py covers max_score rank/dtype, topk range/type, forced
    #      blocks, num_valid_pages value/length/dtype, output dtype/shape)
    case("sparse_topk_select", "max_score", "device", word="num_valid_pages"),
    case("sparse_topk_select", "num_valid_pages", "rank"),
    case("sparse_topk_select", "num_valid_pages", "device"),
    case("sparse_topk_select", "num_valid_pages", "value", 2.5),
    case("sparse_topk_select", "output", "rank"),
    case("sparse_topk_select", "output", "device"),
    case("sparse_topk_select", "topk", "value", True),
    case("sparse_topk_select", "force_begin_blocks", "value", 1.0),
    # ---- native_topk_from_scores (test_topk.py covers score rank, seq_lens length/dtype,
    #      block_size 0, topk 0)
    case("native_topk_from_scores", "score", "dtype", F16),
    case("native_topk_from_scores", "score", "device"),
    case("native_topk_from_scores", "seq_lens", "rank"),
    case("native_topk_from_scores", "seq_lens", "device"),
    case("native_topk_from_scores", "block_size", "value", 64.0),
    case("native_topk_from_scores", "topk", "value", 65),
    # ---- flash_decode_with_gqa_share_sparse (test_flashrt.py covers topk_idx heads, sink shape,
    #      req_to_token dtype, slot_ids length)
    case("flash_decode_with_gqa_share_sparse", "q", "dtype", F32),
    case("flash_decode_with_gqa_share_sparse", "q", "rank"),
    case("flash_decode_with_gqa_share_sparse", "q", "shape", SHAPE_LAST, word="q head dim"),
    case("flash_decode_with_gqa_share_sparse", "q", "device"),
    case("flash_decode_with_gqa_share_sparse", "sink", "dtype", I32),
    case("flash_decode_with_gqa_share_sparse", "sink", "rank"),
    case("flash_decode_with_gqa_share_sparse", "sink", "device"),
    case("flash_decode_with_gqa_share_sparse", "k_cache", "dtype", BF16),
    case("flash_decode_with_gqa_share_sparse", "k_cache", "rank"),
    case("flash_decode_with_gqa_share_sparse", "k_cache", "shape", SHAPE_LAST),
    case("flash_decode_with_gqa_share_sparse", "k_cache", "device"),
    case("flash_decode_with_gqa_share_sparse", "v_cache", "dtype", FP8),
    case("flash_decode_with_gqa_share_sparse", "v_cache", "rank"),
    case("flash_decode_with_gqa_share_sparse", "v_cache", "shape", SHAPE_FIRST),
    case("flash_decode_with_gqa_share_sparse", "v_cache", "device"),
    case("flash_decode_with_gqa_share_sparse", "req_to_token", "rank"),
    case("flash_decode_with_gqa_share_sparse", "req_to_token", "device"),
    case("flash_decode_with_gqa_share_sparse", "seq_lens", "dtype", F32),
    case("flash_decode_with_gqa_share_sparse", "seq_lens", "rank"),
    case("flash_decode_with_gqa_share_sparse", "seq_lens", "device"),
    case("flash_decode_with_gqa_share_sparse", "slot_ids", "dtype", F32),
    case("flash_decode_with_gqa_share_sparse", "slot_ids", "rank"),
    case("flash_decode_with_gqa_share_sparse", "slot_ids", "device"),
    case("flash_decode_with_gqa_share_sparse", "block_size", "value", 0),
    case("flash_decode_with_gqa_share_sparse", "block_size", "value", 64.0),
    case("flash_decode_with_gqa_share_sparse", "topk_idx", "dtype", I64),
    case("flash_decode_with_gqa_share_sparse", "topk_idx", "rank"),
    case("flash_decode_with_gqa_share_sparse", "topk_idx", "shape", 1),
    case("flash_decode_with_gqa_share_sparse", "topk_idx", "device"),
    case("flash_decode_with_gqa_share_sparse", "topk_idx", "list"),
    case("flash_decode_with_gqa_share_sparse", "sm_scale", "value", "abc"),
    case("flash_decode_with_gqa_share_sparse", "sm_scale", "value", "0.1"),
    case("flash_decode_with_gqa_share_sparse", "block_size", "value", 32),  # the kernel's rule, on every device
    case("flash_decode_with_gqa_share_sparse", "block_size", "value", 96),
    case("naive_flash_decode_with_gqa_share_sparse", "q", "dtype", F32),
    case("naive_flash_decode_with_gqa_share_sparse", "k_cache", "shape", SHAPE_LAST),
    case("naive_flash_decode_with_gqa_share_sparse", "topk_idx", "shape", SHAPE_FIRST),
    case("naive_flash_decode_with_gqa_share_sparse", "seq_lens", "device"),
    case("naive_flash_decode_with_gqa_share_sparse", "topk_idx", "list"),
    case("naive_flash_decode_with_gqa_share_sparse", "sm_scale", "value", "0.1"),
    # ---- flash_decode_with_topk_idx (test_decode_indexer.py covers init+local > topk, score_type,
    #      req_to_token dtype, seq_lens length, k_cache heads)
    case("flash_decode_with_topk_idx", "q", "dtype", F32),
    case("flash_decode_with_topk_idx", "q", "rank"),
    case("flash_decode_with_topk_idx", "q", "shape", SHAPE_LAST, word="q head dim"),
    case("flash_decode_with_topk_idx", "q", "device"),
    case("flash_decode_with_topk_idx", "sink", "dtype", I32),
    case("flash_decode_with_topk_idx", "sink", "shape", SHAPE_FIRST),
    case("flash_decode_with_topk_idx", "sink", "device"),
    case("flash_decode_with_topk_idx", "k_cache", "dtype", BF16),
    case("flash_decode_with_topk_idx", "k_cache", "rank"),
    case("flash_decode_with_topk_idx", "k_cache", "shape", SHAPE_LAST),
    case("flash_decode_with_topk_idx", "k_cache", "device"),
    case("flash_decode_with_topk_idx", "v_cache", "dtype", F32),
    case("flash_decode_with_topk_idx", "v_cache", "shape", SHAPE_FIRST),
    case("flash_decode_with_topk_idx", "v_cache", "device"),
    case("flash_decode_with_topk_idx", "req_to_token", "rank"),
    case("flash_decode_with_topk_idx", "req_to_token", "device"),
    case("flash_decode_with_topk_idx", "req_to_token", "list"),
    case("flash_decode_with_topk_idx", "seq_lens", "dtype", F32),
    case("flash_decode_with_topk_idx", "seq_lens", "device"),
    case("flash_decode_with_topk_idx", "slot_ids", "dtype", F32),
    case("flash_decode_with_topk_idx", "slot_ids", "shape", SHAPE_FIRST),
    case("flash_decode_with_topk_idx", "slot_ids", "device"),
    case("flash_decode_with_topk_idx", "max_seqlen", "value", -1),
    case("flash_decode_with_topk_idx", "block_size", "value", 0),
    case("flash_decode_with_topk_idx", "topk", "value", 0),
    case("flash_decode_with_topk_idx", "local_blocks", "value", -1),
    case("flash_decode_with_topk_idx", "page_size", "value", 0),
    case("flash_decode_with_topk_idx", "sm_scale", "value", "abc"),
    case("flash_decode_with_topk_idx", "sm_scale", "value", True),
    # the kernels' limits, on every device
    case("flash_decode_with_topk_idx", "topk", "value", 65),
    case("flash_decode_with_topk_idx", "block_size", "value", 32),
    case("flash_decode_with_topk_idx/scores_only_d32", "disable_index_value", "value", False, word="q head dim"),
    case("flash_decode_with_topk_idx/scores_only_block16", "disable_index_value", "value", False,
         word="block_size"),
    case("flash_decode_with_topk_idx/scores_only_block16", "block_size", "value", 24),
    case("flash_decode_with_topk_idx/scores_only_block16", "block_size", "value", 8),
    case("naive_flash_decode_with_topk_idx", "q", "dtype", F32),
    case("naive_flash_decode_with_topk_idx", "k_cache", "shape", SHAPE_LAST),
    case("naive_flash_decode_with_topk_idx", "topk", "value", 0),
    case("naive_flash_decode_with_topk_idx", "slot_ids", "device"),
    case("naive_flash_decode_with_topk_idx", "sm_scale", "value", "abc"),
    # ---- fmha_sm12x_plan (test_fmha.py covers num_qo_heads % num_kv_heads, request counts)
    case("fmha_sm12x_plan", "qo_segment_lens", "value", "4,1"),
    case("fmha_sm12x_plan", "qo_segment_lens", "value", torch.tensor([4.0, 1.0])),
    case("fmha_sm12x_plan", "kv_segment_lens", "value", [40, -3], word="kv_segment_lens entries"),
    case("fmha_sm12x_plan", "kv_segment_lens", "value", torch.tensor([[40, 3]])),
    case("fmha_sm12x_plan", "num_qo_heads", "value", 0),
    case("fmha_sm12x_plan", "num_kv_heads", "value", -2),
    case("fmha_sm12x_plan", "page_size", "value", 0),
    case("fmha_sm12x_plan", "page_size", "value", 16.0),
    case("fmha_sm12x_plan", "qo_offset", "value", [36]),
    case("fmha_sm12x_plan", "qo_offset", "value", torch.tensor([36.0, 2.0])),
    # ---- fmha_sm12x (test_fmha.py covers kv_indices missing, q rows, v dtype, plan type,
    #      nothing to compute)
    case("fmha_sm12x", "q", "dtype", F32),
    case("fmha_sm12x", "q", "rank"),
    case("fmha_sm12x", "q", "device"),
    case("fmha_sm12x", "k", "dtype", BF16),
    case("fmha_sm12x", "k", "rank"),
    case("fmha_sm12x", "k", "shape", 2),
    case("fmha_sm12x", "k", "device"),
    case("fmha_sm12x", "v", "shape", SHAPE_FIRST),
    case("fmha_sm12x", "v", "device"),
    case("fmha_sm12x", "kv_indices", "dtype", I64),
    case("fmha_sm12x", "kv_indices", "rank"),
    case("fmha_sm12x", "kv_indices", "device"),
    case("fmha_sm12x", "kv_indices", "list"),
    case("fmha_sm12x", "out", "dtype", BF16),
    case("fmha_sm12x", "out", "shape", SHAPE_FIRST),
    case("fmha_sm12x", "out", "device"),
    case("fmha_sm12x", "max_score", "dtype", F16),
    case("fmha_sm12x", "max_score", "shape", 1),
    case("fmha_sm12x", "max_score", "device"),
    case("fmha_sm12x", "q_offset_override", "shape", SHAPE_FIRST),
    case("fmha_sm12x", "q_offset_override", "dtype", F32),
    case("fmha_sm12x", "sm_scale", "value", "abc"),
    case("fmha_sm12x", "sm_scale", "value", True),
    case("fmha_sm12x/sparse", "kv_block_indexes", "dtype", I64),
    case("fmha_sm12x/sparse", "kv_block_indexes", "rank"),
    case("fmha_sm12x/sparse", "kv_block_indexes", "shape", 1),
    case("fmha_sm12x/sparse", "kv_block_indexes", "device"),
    # ---- get_cu_seqblocks
    case("get_cu_seqblocks", "seq_lens", "dtype", F32),
    case("get_cu_seqblocks", "seq_lens", "rank"),
    case("get_cu_seqblocks", "block_size", "value", 0),
    case("get_cu_seqblocks", "block_size", "value", "64"),
]


@pytest.mark.parametrize("key", sorted(BASELINES))
def test_baseline_is_valid(key):
    """Every baseline runs as is: each row below fails because of its one corruption."""
    fn, kwargs = BASELINES[key]()
    fn(**kwargs)


@pytest.mark.parametrize("key,arg,kind,param,word", CASES)
def test_bad_argument_raises_naming_it(key, arg, kind, param, word):
    fn, kwargs = BASELINES[key]()
    bad = corrupted_kwargs(kwargs, arg, kind, param)
    with pytest.raises((ValueError, TypeError)) as info:
        fn(**bad)
    # the name as a whole identifier: "k" must not be satisfied by "k_scale" or "kv_indices"
    assert re.search(r"(?<![\w.])" + re.escape(word) + r"(?!\w)", str(info.value)), str(info.value)


NOT_VALIDATING = {
    "has_native_ops",  # no arguments
    "robust_allocator",  # CUDA-only Triton scratch allocator (size, alignment, stream)
    "Nvfp4QuantizedTensor",  # a plain record, validated where it is consumed (dequantize)
    "SparseK2qCsrBuilderSm12x",  # the same class as SparseK2qCsrBuilderSm100
    "reference",  # the reference module
}


def test_table_covers_every_public_function():
    covered = {key.split("/")[0].split(".")[0] for key in BASELINES}
    rows = {p.values[0].split("/")[0].split(".")[0] for p in CASES}
    public = set(msa.__all__) - NOT_VALIDATING
    assert public - covered == set()
    # quantize_bf16_to_nvfp4_128x4 is fully covered by test_nvfp4.py (dtype, rank, last dim, type)
    assert public - rows == {"quantize_bf16_to_nvfp4_128x4"}
