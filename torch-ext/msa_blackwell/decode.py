"""Sparse (and dense) paged decode: `sparse_decode_atten_func` and its plan/run wrapper.

Duplicated block ids in `q2k_indices` are deduplicated in the kernel (set semantics);
`-1` and ids past the request's last block are skipped; page-table entries outside the
cache are skipped. Workspace for split-K partials (`O_partial [S, rows, Hq, D]` and
`LSE_partial [S, rows, Hq]`, fp32) is allocated per call by the functional API (the
caching allocator makes that cheap) and once in `plan` by the wrapper.
"""
import math
import os
from typing import NamedTuple, Optional

import torch
from torch.library import triton_op, wrap_triton

from ._backend import add_op_namespace_prefix, cuda_properties, use_triton
from ._checks import FP8_DTYPES, HALF_DTYPES, check_float, check_int, check_int32_metadata, check_same_device, \
    check_shape, check_tensor
from .reference.attention import default_scale
from .reference.decode import sparse_decode_reference
from .triton_kernels import decode as kernels

LOG2E = 1.4426950408889634
MAX_SPLITS = 64
MAX_TOPK = kernels.TOPK_P2
SUPPORTED_HEAD_DIMS = (64, 128)
SUPPORTED_BLK_KV = (64, 128, 256)
_INTERPRETER_SM_COUNT = 8  # lets interpreter tests exercise the split path on small grids
_INTERPRETER_ARCH = 12  # the interpreter runs the SM12x tile config
# Split until the grid holds ~WAVES programs per SM. 2 from the H200 sweep (sweep_decode.py,
# benchmarks/results/sweeps): at B=64 (256 programs) no split ran 70 us against 90-94 us for the
# 3 splits WAVES=4 chose; B=16 was fastest at 4 splits and B=1/4 at 16, which WAVES=2 gives.
# On Hopper a grid that fits one program per SM instead pipelines 3 tiles deep and splits to
# one wave (see `one_wave`).
WAVES = 2
CONFIG_ENV = "MSA_DECODE_CONFIG"  # e.g. "splits=8,block_n=128,warps=4,stages=3,pdl=0" (benchmark sweeps)
_CONFIG_KEYS = ("splits", "block_n", "warps", "stages", "waves", "pdl")
_FLAG_KEYS = ("pdl",)  # 0 or 1


class LaunchConfig(NamedTuple):
    block_n: int
    num_warps: int
    num_stages: int
    fp8_cast: bool  # FP8 K/V converted by plain casts after shared-memory staging (else in registers)
    pdl: bool  # programmatic dependent launch of split + merge (used only when the grid splits)


def config_override():
    """Parse MSA_DECODE_CONFIG ("key=int,..." with keys splits, block_n, warps, stages, waves,
    pdl; pdl takes 0 or 1)."""
    text = os.environ.get(CONFIG_ENV, "").strip()
    if not text:
        return {}
    out = {}
    for item in text.split(","):
        key, _, value = item.partition("=")
        key = key.strip()
        lowest = 0 if key in _FLAG_KEYS else 1
        if key not in _CONFIG_KEYS or not value.strip().isdigit() or int(value) < lowest or \
                (key in _FLAG_KEYS and int(value) > 1):
            raise ValueError(f"{CONFIG_ENV}: bad item {item!r}; expected key=positive int (pdl: 0 or 1), "
                             f"keys {_CONFIG_KEYS}")
        out[key] = int(value)
    if out.get("block_n", 64) not in (64, 128, 256):
        raise ValueError(f"{CONFIG_ENV}: block_n must be 64, 128 or 256")
    return out


def _arch_major(device):
    if device.type != "cuda":
        return _INTERPRETER_ARCH
    return cuda_properties(device.index)[0]


def one_wave(device, programs):
    """Hopper, and the unsplit grid fits one program per SM: a 16-bit launch pipelines 3 tiles
    deep (139 KB of shared memory, one program per SM) and splits to one wave. H200 sweep: B=16
    (64 programs) 2 splits x 3 stages 27 us against 30 us for 4 x 2; B=4 8 x 3 15.2 against 15.6.
    FP8 (3 stages anyway, 2 programs per SM) kept WAVES: 4 splits 26.4 us against 29.9 for 2."""
    return device.type == "cuda" and _arch_major(device) == 9 and 0 < programs <= _sm_count(device)


def split_waves(device, programs, kv_fp8):
    return 1 if one_wave(device, programs) and not kv_fp8 else WAVES


def launch_config(device, group, blk_kv, kv_fp8, override=None, programs=0):
    """Tile config for this device and unsplit grid size; MSA_DECODE_CONFIG entries replace the defaults."""
    override = config_override() if override is None else override
    block_g = kernels.block_g_for(group, kv_fp8)
    arch = _arch_major(device)
    block_n, warps, stages = kernels.default_config(arch, block_g, blk_kv, kv_fp8, one_wave(device, programs))
    block_n = min(override.get("block_n", block_n), blk_kv)
    # The interpreter has no griddepcontrol; torch.compile's Triton wrapper takes no launch_pdl.
    pdl = device.type == "cuda" and kernels.pdl_supported(arch) and not torch.compiler.is_compiling()
    # The interpreter runs no inline asm: it takes the plain casts (the same exact e4m3 values).
    fp8_cast = kernels.fp8_cast_supported(arch) or device.type != "cuda"
    return LaunchConfig(block_n, override.get("warps", warps), override.get("stages", stages), fp8_cast,
                        pdl and bool(override.get("pdl", 1)))


def plan_launch(device, group, programs, blk_kv, kv_fp8, topk, max_seqlen_k, *, max_splits=MAX_SPLITS,
                max_grid_size=None, override=None):
    """(LaunchConfig, split count) for an unsplit grid of `programs`."""
    override = config_override() if override is None else override
    cfg = launch_config(device, group, blk_kv, kv_fp8, override, programs)
    work = split_work(topk, max_seqlen_k, blk_kv, cfg.block_n)
    splits = choose_num_splits(programs, work, _sm_count(device), max_splits=max_splits, max_grid_size=max_grid_size,
                               waves=split_waves(device, programs, kv_fp8), override=override)
    return cfg, splits


def split_work(topk, max_seqlen_k, blk_kv, block_n):
    """Work items one (row, head) program walks: K/V tiles of the selected blocks (sparse,
    `topk` slots) or of the whole visible length (dense, `topk is None`)."""
    if topk is not None:
        return topk * (blk_kv // block_n)
    return math.ceil(max_seqlen_k / block_n)


def _sm_count(device):
    if device.type != "cuda":
        return _INTERPRETER_SM_COUNT
    return cuda_properties(device.index)[1]


def out_dtype_for(q_dtype):
    return torch.bfloat16 if q_dtype in FP8_DTYPES else q_dtype


def head_blocks(num_kv_heads, group, kv_fp8=False):
    """Programs per query row along the head axis: one per KV head and head chunk."""
    block_g = kernels.block_g_for(group, kv_fp8)
    return num_kv_heads * math.ceil(group / block_g)


def choose_num_splits(programs, work_items, sm_count, *, max_splits=MAX_SPLITS, max_grid_size=None, waves=WAVES,
                      override=None):
    """Split the K/V tiles of each (row, head) program until the grid holds up to `waves`
    programs per SM (decode is bound by loads in flight).

    `work_items` = K/V tiles one program walks (`split_work`). Splits are rounded so every
    split gets the same number of tiles. MSA_DECODE_CONFIG's splits/waves replace the heuristic.
    """
    override = config_override() if override is None else override
    waves = override.get("waves", waves)
    if "splits" in override:
        splits = min(override["splits"], max(work_items, 1), max_splits)
    elif programs <= 0 or work_items <= 1:
        splits = 1
    else:
        splits = max(1, min(waves * sm_count // programs, work_items, max_splits))
    if max_grid_size is not None and max_grid_size > 0:
        splits = max(1, min(splits, max_grid_size // max(programs, 1)))
    per_split = math.ceil(work_items / splits) if work_items > 0 else 1
    return max(1, math.ceil(work_items / per_split)) if work_items > 0 else 1


def workspace_bytes(num_splits, rows, num_heads_q, head_dim):
    if num_splits <= 1:
        return 0
    return num_splits * rows * num_heads_q * (head_dim + 1) * 4


def _pdl_launch(pdl):
    # Only passed when on: torch.compile's kernel wrapper does not know the option (and gets pdl=False).
    return {"launch_pdl": True} if pdl else {}


@triton_op(add_op_namespace_prefix("sparse_decode_fwd"), mutates_args={"out", "lse", "o_partial", "lse_partial"})
def sparse_decode_fwd(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, q2k_indices: Optional[torch.Tensor], seqused_k: torch.Tensor,
    table: torch.Tensor, req_rows: Optional[torch.Tensor], sink: Optional[torch.Tensor],
    k_scale: Optional[torch.Tensor], v_scale: Optional[torch.Tensor], out: torch.Tensor, lse: torch.Tensor,
    o_partial: Optional[torch.Tensor], lse_partial: Optional[torch.Tensor],
    seqlen_q: int, blk_kv: int, causal: bool, softmax_scale: float, num_splits: int,
    block_n: int, num_warps: int, num_stages: int, fp8_cast: bool, pdl: bool,
) -> None:
    """Launch: `req_rows is None` selects the paged layout (`table` = page_table), else the
    token-slot layout (`table` = req_to_token, `req_rows` = slot_ids as int32)."""
    rows, num_heads_q, head_dim = q.shape
    paged = req_rows is None
    num_kv_heads = k.shape[1]
    group = num_heads_q // num_kv_heads
    kv_fp8 = k.dtype in FP8_DTYPES
    block_g = kernels.block_g_for(group, kv_fp8)
    split = num_splits > 1
    pdl = pdl and split  # a lone kernel has no dependent of ours to overlap
    qk_scale_log2 = softmax_scale * LOG2E
    if paged:
        k_strides = (k.stride(0), k.stride(1), k.stride(2))
        v_strides = (v.stride(0), v.stride(1), v.stride(2))
    else:
        k_strides = (k.stride(0), k.stride(1), 0)
        v_strides = (v.stride(0), v.stride(1), 0)
    topk = 0 if q2k_indices is None else q2k_indices.shape[2]
    idx_strides = (0, 0) if q2k_indices is None else (q2k_indices.stride(0), q2k_indices.stride(1))
    grid = (rows, head_blocks(num_kv_heads, group, kv_fp8), num_splits)
    wrap_triton(kernels.sparse_decode_kernel)[grid](
        q, k, v, seqused_k if q2k_indices is None else q2k_indices, seqused_k, table,
        seqused_k if paged else req_rows,
        lse if sink is None else sink, lse if k_scale is None else k_scale, lse if v_scale is None else v_scale,
        out, lse, o_partial if split else lse, lse_partial if split else lse,
        qk_scale_log2,
        rows, seqlen_q, num_heads_q, group, topk, blk_kv, num_splits,
        k.shape[0], table.shape[1], table.shape[0],
        q.stride(0), q.stride(1),
        *k_strides, *v_strides, *idx_strides,
        table.stride(0),
        int(causal), int(sink is not None and not split), int(k_scale is not None), int(v_scale is not None),
        HEAD_DIM=head_dim, BLOCK_G=block_g, BLOCK_N=block_n, TOPK_P2=kernels.TOPK_P2,
        PAGED=paged, SPARSE=q2k_indices is not None, FP8_CAST=fp8_cast, USE_PDL=pdl,
        num_warps=num_warps, num_stages=num_stages, **_pdl_launch(pdl),
    )
    if split:
        wrap_triton(kernels.split_merge_kernel)[(rows, num_heads_q)](
            o_partial, lse_partial, q, lse if sink is None else sink, out, lse,
            qk_scale_log2, rows, num_heads_q, num_splits, q.stride(0), q.stride(1), int(sink is not None),
            HEAD_DIM=head_dim, BLOCK_S=kernels.merge_block_s(num_splits), USE_PDL=pdl, num_warps=4, num_stages=1,
            **_pdl_launch(pdl),
        )


# ---------------------------------------------------------------------------------------------
# Validation


def check_decode_q(q):
    check_tensor("q", q, dtypes=HALF_DTYPES + FP8_DTYPES, ndim=3)
    if q.shape[2] not in SUPPORTED_HEAD_DIMS:
        raise ValueError(f"q head dim must be one of {SUPPORTED_HEAD_DIMS}, got {q.shape[2]}")
    if q.stride(2) != 1:
        raise ValueError("q must be contiguous in its last dim")


def check_kv_dtype(name, t, q):
    allowed = FP8_DTYPES if q.dtype in FP8_DTYPES else (q.dtype,) + FP8_DTYPES
    check_tensor(name, t, dtypes=allowed)
    if t.stride(-1) != 1:
        raise ValueError(f"{name} must be contiguous in its last dim")
    # The kernel promises 16-element-aligned rows to the compiler (16-byte vector loads).
    if any(st % 16 for st in t.stride()[:-1]):
        raise ValueError(f"{name} strides must be multiples of 16 elements, got {t.stride()}")


def check_scale(name, t, device):
    if t is None:
        return None
    check_tensor(name, t, dtypes=(torch.float32,), device=device)
    if t.numel() != 1:
        raise ValueError(f"{name} must hold exactly one element, got shape {list(t.shape)}")
    return t.reshape(1)


def check_selection(name, t, num_kv_heads, rows, device):
    if t is None:
        return None
    check_int32_metadata(name, t, ndim=3)
    check_tensor(name, t, device=device)
    check_shape(name, t, (num_kv_heads, rows, None))
    check_int(name + ".shape[2] (topK)", t.shape[2], lo=1, hi=MAX_TOPK)
    if t.stride(2) != 1:
        raise ValueError(f"{name} must be contiguous in its last dim")
    return t


def check_paged_metadata(page_table, seqused_k, device):
    """`device` (q's) when known; the plan, which has no q, takes seqused_k's."""
    check_int32_metadata("seqused_k", seqused_k, ndim=1)
    check_int32_metadata("page_table", page_table, ndim=2)
    if device is not None:
        check_tensor("seqused_k", seqused_k, device=device)
        check_tensor("page_table", page_table, device=device)
    else:
        check_same_device(seqused_k=seqused_k, page_table=page_table)
    if page_table.shape[0] != seqused_k.shape[0]:  # either one may be the wrong one: name both
        raise ValueError(f"seqused_k has {seqused_k.shape[0]} entries but page_table has {page_table.shape[0]} "
                         "rows; both must be the batch size B")
    if page_table.stride(1) != 1:
        raise ValueError("page_table must be contiguous in its last dim")


def check_output(name, t, shape, dtype, device):
    if t is None:
        return None
    check_tensor(name, t, dtypes=(dtype,), device=device, contiguous=True)
    check_shape(name, t, shape)
    return t


def check_partials(o_partial, lse_partial, rows, num_heads_q, head_dim, device):
    if (o_partial is None) != (lse_partial is None):
        raise ValueError("O_partial and LSE_partial must be given together")
    if o_partial is None:
        return None
    check_tensor("O_partial", o_partial, dtypes=(torch.float32,), device=device, contiguous=True)
    check_tensor("LSE_partial", lse_partial, dtypes=(torch.float32,), device=device, contiguous=True)
    check_shape("O_partial", o_partial, (None, rows, num_heads_q, head_dim))
    check_shape("LSE_partial", lse_partial, (o_partial.shape[0], rows, num_heads_q))
    if o_partial.shape[0] < 1:
        raise ValueError("O_partial must hold at least one split")
    return o_partial.shape[0]


def _finish(out, lse, return_softmax_lse):
    return (out, lse) if return_softmax_lse else out


# ---------------------------------------------------------------------------------------------
# Public API


def sparse_decode_atten_func(q, k, v, q2k_indices=None, *, page_table, seqused_k, seqlen_q, max_seqlen_k, blk_kv=128,
                             causal=True, softmax_scale=None, return_softmax_lse=False, schedule=None, O_partial=None,
                             LSE_partial=None, k_scale=None, v_scale=None, out=None):
    """Paged sparse decode (dense over all visible tokens when `q2k_indices is None`).

    q [B*seqlen_q, Hq, D]; k, v [num_pages, Hkv, blk_kv, D]; page_table [B, max_pages];
    seqused_k [B] (KV length including the new tokens); q2k_indices [Hkv, B*seqlen_q, topK].
    `schedule` is accepted and unused (the split is chosen from the grid size).
    `O_partial [S, rows, Hq, D]` / `LSE_partial [S, rows, Hq]` (fp32) cap the split count at S.
    Returns out (BF16 for FP8 q, else q.dtype) or (out, lse fp32 [B*seqlen_q, Hq]).
    """
    del schedule
    check_decode_q(q)
    rows, num_heads_q, head_dim = q.shape
    check_tensor("k", k, ndim=4)
    check_tensor("v", v, ndim=4)
    check_kv_dtype("k", k, q)
    check_kv_dtype("v", v, q)
    if v.dtype != k.dtype:
        raise TypeError(f"v must have the dtype of k ({k.dtype}), got {v.dtype}")
    check_same_device(q=q, k=k, v=v, page_table=page_table, seqused_k=seqused_k)
    check_int("blk_kv", blk_kv)
    if blk_kv not in SUPPORTED_BLK_KV:
        raise ValueError(f"blk_kv must be one of {SUPPORTED_BLK_KV}, got {blk_kv}")
    check_shape("k", k, (None, None, blk_kv, head_dim))
    check_shape("v", v, tuple(k.shape))
    num_kv_heads = k.shape[1]
    if num_kv_heads < 1 or num_heads_q % num_kv_heads:
        raise ValueError(f"q heads ({num_heads_q}) must be a multiple of the KV heads ({num_kv_heads})")
    check_paged_metadata(page_table, seqused_k, q.device)
    batch = seqused_k.shape[0]
    check_int("seqlen_q", seqlen_q, lo=1)
    if rows != batch * seqlen_q:
        raise ValueError(f"q.shape[0] must be B*seqlen_q = {batch}*{seqlen_q}, got {rows}")
    check_int("max_seqlen_k", max_seqlen_k, lo=0)
    q2k_indices = check_selection("q2k_indices", q2k_indices, num_kv_heads, rows, q.device)
    k_scale = check_scale("k_scale", k_scale, q.device)
    v_scale = check_scale("v_scale", v_scale, q.device)
    odt = out_dtype_for(q.dtype)
    check_output("out", out, (rows, num_heads_q, head_dim), odt, q.device)
    max_splits = check_partials(O_partial, LSE_partial, rows, num_heads_q, head_dim, q.device)
    scale = default_scale(head_dim, check_float("softmax_scale", softmax_scale, allow_none=True))

    if not use_triton(q):
        ref_out, ref_lse = sparse_decode_reference(q, k, v, q2k_indices, page_table, seqused_k, seqlen_q, blk_kv,
                                                   causal=causal, softmax_scale=scale, k_scale=k_scale,
                                                   v_scale=v_scale)
        if out is None:
            out = ref_out.to(odt)
        else:
            out.copy_(ref_out)
        return _finish(out, ref_lse, return_softmax_lse)

    out = torch.empty(rows, num_heads_q, head_dim, dtype=odt, device=q.device) if out is None else out
    lse = torch.empty(rows, num_heads_q, dtype=torch.float32, device=q.device)
    if rows == 0:
        return _finish(out, lse, return_softmax_lse)
    kv_fp8 = k.dtype in FP8_DTYPES
    group = num_heads_q // num_kv_heads
    cfg, num_splits = plan_launch(q.device, group, rows * head_blocks(num_kv_heads, group, kv_fp8), blk_kv, kv_fp8,
                                  None if q2k_indices is None else q2k_indices.shape[2], max_seqlen_k,
                                  max_splits=max_splits or MAX_SPLITS)
    if num_splits > 1 and O_partial is None:
        O_partial = torch.empty(num_splits, rows, num_heads_q, head_dim, dtype=torch.float32, device=q.device)
        LSE_partial = torch.empty(num_splits, rows, num_heads_q, dtype=torch.float32, device=q.device)
    sparse_decode_fwd(q, k, v, q2k_indices, seqused_k, page_table, None, None, k_scale, v_scale, out, lse,
                      O_partial if num_splits > 1 else None, LSE_partial if num_splits > 1 else None,
                      seqlen_q, blk_kv, bool(causal), scale, num_splits, *cfg)
    return _finish(out, lse, return_softmax_lse)


class SparseDecodePagedAttentionWrapper:
    """Plan once (host work + workspace), run many times (no host sync; CUDA-graph capturable).

    The planned `page_table`, `seqused_k` and `q2k_indices` tensors are read at every run,
    so their values may change in place between runs (or graph replays); their shapes may not.
    Pass `num_qo_heads` (and `num_kv_heads` for dense decode) to plan so the workspace is
    allocated there; otherwise it is allocated at the first run (do that run before capture).
    """

    def __init__(self, *, blk_kv=128, causal=True):
        check_int("blk_kv", blk_kv)
        if blk_kv not in SUPPORTED_BLK_KV:
            raise ValueError(f"blk_kv must be one of {SUPPORTED_BLK_KV}, got {blk_kv}")
        self.blk_kv = blk_kv
        self.causal = bool(causal)
        self._planned = False

    def plan(self, *, page_table, seqused_k, seqlen_q, max_seqlen_k, q2k_indices=None, num_qo_heads=None,
             num_kv_heads=None, head_dim=128, enable_cuda_graph=False, max_grid_size=None, fixed_split_size=None,
             disable_split_kv=False):
        del enable_cuda_graph  # every plan is graph-ready
        check_paged_metadata(page_table, seqused_k, None)
        device = seqused_k.device
        check_int("seqlen_q", seqlen_q, lo=1)
        check_int("max_seqlen_k", max_seqlen_k, lo=0)
        check_int("head_dim", head_dim)
        if head_dim not in SUPPORTED_HEAD_DIMS:
            raise ValueError(f"head_dim must be one of {SUPPORTED_HEAD_DIMS}, got {head_dim}")
        rows = seqused_k.shape[0] * seqlen_q
        if num_kv_heads is not None:
            check_int("num_kv_heads", num_kv_heads, lo=1)
        if q2k_indices is not None:
            check_int32_metadata("q2k_indices", q2k_indices, ndim=3)
            if num_kv_heads is None:
                num_kv_heads = q2k_indices.shape[0]
                if num_kv_heads < 1:
                    raise ValueError(f"q2k_indices must have at least one KV head, got shape {list(q2k_indices.shape)}")
            elif q2k_indices.shape[0] != num_kv_heads:  # either one may be the wrong one: name both
                raise ValueError(f"num_kv_heads ({num_kv_heads}) differs from the KV heads of q2k_indices "
                                 f"(shape {list(q2k_indices.shape)})")
            check_selection("q2k_indices", q2k_indices, num_kv_heads, rows, device)
        if num_qo_heads is not None:
            check_int("num_qo_heads", num_qo_heads, lo=1)
            if num_kv_heads is not None and num_qo_heads % num_kv_heads:
                raise ValueError(f"num_qo_heads ({num_qo_heads}) must be a multiple of num_kv_heads ({num_kv_heads})")
        if fixed_split_size is not None:
            check_int("fixed_split_size", fixed_split_size, lo=1)
        if max_grid_size is not None:
            check_int("max_grid_size", max_grid_size, lo=1)
        self.page_table = page_table
        self.seqused_k = seqused_k
        self.q2k_indices = q2k_indices
        self.seqlen_q = seqlen_q
        self.max_seqlen_k = max_seqlen_k
        self.rows = rows
        self.head_dim = head_dim
        self.num_qo_heads = num_qo_heads
        self.num_kv_heads = num_kv_heads
        self._split_options = (max_grid_size, fixed_split_size, bool(disable_split_kv))
        self.num_splits = None
        self.o_partial = self.lse_partial = self.lse_buffer = None
        self._planned = True
        if num_qo_heads is not None and num_kv_heads is not None:
            self._allocate(num_qo_heads, num_kv_heads, device)
        return self

    def _allocate(self, num_qo_heads, num_kv_heads, device):
        max_grid_size, fixed_split_size, disable_split_kv = self._split_options
        override = config_override()
        group = num_qo_heads // num_kv_heads
        topk = None if self.q2k_indices is None else self.q2k_indices.shape[2]
        # The KV dtype is known at run: plan both, and size the workspace for the larger split.
        self.configs, self.splits = {}, {}
        for fp8 in (False, True):
            programs = self.rows * head_blocks(num_kv_heads, group, fp8)
            cfg, splits = plan_launch(device, group, programs, self.blk_kv, fp8, topk, self.max_seqlen_k,
                                      max_grid_size=max_grid_size, override=override)
            work = split_work(topk, self.max_seqlen_k, self.blk_kv, cfg.block_n)
            if disable_split_kv or work == 0:
                splits = 1
            elif fixed_split_size is not None:  # KV blocks per split
                per_split = fixed_split_size * (self.blk_kv // cfg.block_n)
                splits = min(math.ceil(work / per_split), MAX_SPLITS)
                if max_grid_size is not None:
                    splits = max(1, min(splits, max_grid_size // max(programs, 1)))
            self.configs[fp8], self.splits[fp8] = cfg, splits
        self.num_splits = self.splits[False]  # the BF16/FP16 plan
        self.num_qo_heads, self.num_kv_heads = num_qo_heads, num_kv_heads
        self.lse_buffer = torch.empty(self.rows, num_qo_heads, dtype=torch.float32, device=device)
        most = max(self.splits.values())
        if most > 1:
            self.o_partial = torch.empty(most, self.rows, num_qo_heads, self.head_dim, dtype=torch.float32,
                                         device=device)
            self.lse_partial = torch.empty(most, self.rows, num_qo_heads, dtype=torch.float32, device=device)

    @property
    def workspace_bytes(self):
        if not self._planned or self.num_splits is None:
            return 0
        return workspace_bytes(max(self.splits.values()), self.rows, self.num_qo_heads, self.head_dim)

    def run(self, q, k, v, *, softmax_scale=None, return_softmax_lse=False, out=None, lse=None,
            k_scale=None, v_scale=None):
        if not self._planned:
            raise RuntimeError("SparseDecodePagedAttentionWrapper.run() called before plan()")
        check_decode_q(q)
        rows, num_heads_q, head_dim = q.shape
        if rows != self.rows or head_dim != self.head_dim:
            raise ValueError(f"q must have shape [{self.rows}, Hq, {self.head_dim}] as planned, got {list(q.shape)}")
        check_tensor("k", k, ndim=4)
        check_kv_dtype("k", k, q)
        check_kv_dtype("v", v, q)
        if v.dtype != k.dtype:
            raise TypeError(f"v must have the dtype of k ({k.dtype}), got {v.dtype}")
        check_shape("k", k, (None, None, self.blk_kv, head_dim))
        check_shape("v", v, tuple(k.shape))
        check_same_device(q=q, k=k, v=v, seqused_k=self.seqused_k)
        num_kv_heads = k.shape[1]
        if num_heads_q % num_kv_heads:
            raise ValueError(f"q heads ({num_heads_q}) must be a multiple of the KV heads ({num_kv_heads})")
        if self.num_splits is None:
            self._allocate(num_heads_q, num_kv_heads, q.device)
        elif num_heads_q != self.num_qo_heads or num_kv_heads != self.num_kv_heads:
            raise ValueError(f"q/k heads ({num_heads_q}/{num_kv_heads}) differ from the planned "
                             f"({self.num_qo_heads}/{self.num_kv_heads})")
        odt = out_dtype_for(q.dtype)
        check_output("out", out, (rows, num_heads_q, head_dim), odt, q.device)
        check_output("lse", lse, (rows, num_heads_q), torch.float32, q.device)
        k_scale = check_scale("k_scale", k_scale, q.device)
        v_scale = check_scale("v_scale", v_scale, q.device)
        scale = default_scale(head_dim, check_float("softmax_scale", softmax_scale, allow_none=True))
        if not use_triton(q):
            ref_out, ref_lse = sparse_decode_reference(q, k, v, self.q2k_indices, self.page_table, self.seqused_k,
                                                       self.seqlen_q, self.blk_kv, causal=self.causal,
                                                       softmax_scale=scale, k_scale=k_scale, v_scale=v_scale)
            out = ref_out.to(odt) if out is None else out.copy_(ref_out)
            lse = ref_lse if lse is None else lse.copy_(ref_lse)
            return _finish(out, lse, return_softmax_lse)
        out = torch.empty(rows, num_heads_q, head_dim, dtype=odt, device=q.device) if out is None else out
        lse = self.lse_buffer if lse is None else lse
        if rows:
            sparse_decode_fwd(q, k, v, self.q2k_indices, self.seqused_k, self.page_table, None, None, k_scale,
                              v_scale, out, lse, self.o_partial, self.lse_partial, self.seqlen_q, self.blk_kv,
                              self.causal, scale, self.splits[k.dtype in FP8_DTYPES],
                              *self.configs[k.dtype in FP8_DTYPES])
        return _finish(out, lse, return_softmax_lse)
