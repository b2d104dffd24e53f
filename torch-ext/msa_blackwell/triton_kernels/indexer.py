"""Index-branch kernels: FP4 dequantization, the dense/paged proxy FMHA (block-max scorer), the decode block scorer.

Every scorer computes raw q·k maxima per key block. A program covers up to 16 query heads of one
KV head group, so a key tile is loaded once for all of them. Rows of a program are
(token, head-in-chunk) pairs: row m = token m // heads_per_prog, head m % heads_per_prog; the
rows-per-program count M is the only shape constexpr, so any group size maps onto a fixed,
gate-listed set of specialisations.

`TUNING` overrides launcher defaults for benchmark sweeps only (benchmarks/sweep_indexer.py);
production launches never set it, so `gate_cases()` lists exactly the default configs.
"""
import triton
import triton.language as tl

from .gate import GateCase

SCORE_BLOCK = 128  # key tokens per scored block / max_score tile
MAX_HEADS_PER_PROGRAM = 16
HEAD_DIMS = (32, 64, 128)  # fmha_sm12x / fp4 scorer head dims (validated by the public functions)
DECODE_HEAD_DIMS = (16, 32, 64, 128, 256)
TUNING = {}


def _next_pow2(x):
    return 1 << max(0, int(x) - 1).bit_length()


def heads_per_program(group_size, min_rows=1):
    """Query heads of one group handled by a program: a power of two <= 16 (larger groups split)."""
    return max(min_rows, min(_next_pow2(group_size), MAX_HEADS_PER_PROGRAM))


def _tuned(name, default):
    return TUNING.get(name, default)


# --------------------------------------------------------------------------- FP4 dequantization


@triton.jit
def _e2m1_value(code):
    """4-bit E2M1 code (int32) -> float32 built from its bits: magnitude m >= 2 is 2^(m//2-1)*(1+(m&1)/2),
    i.e. bits (m << 22) + (126 << 23); m = 1 is 0.5 (126 << 23); m = 0 is 0; bit 3 is the sign."""
    mag = code & 7
    bits = tl.where(mag >= 2, (mag << 22) + 0x3F000000, mag * 0x3F000000) | ((code & 8) << 28)
    return bits.to(tl.float32, bitcast=True)


@triton.jit
def _scale_value(code, MXFP4: tl.constexpr):
    """Scale code (int32 of a uint8) -> float32: E8M0 2^(e-127) or E4M3 (bit exact, no fp8 type needed)."""
    if MXFP4:
        bits = code << 23
        # e = 0 is the subnormal 2^-127, which the shift would turn into 0
        value = tl.where(code == 0, 5.877471754111438e-39, bits.to(tl.float32, bitcast=True))
    else:
        exp = (code >> 3) & 15
        mant = code & 7
        normal_bits = ((exp + 120) << 23) | (mant << 20)
        normal = normal_bits.to(tl.float32, bitcast=True)
        value = tl.where(exp == 0, mant.to(tl.float32) * 0.001953125, normal)
        value = tl.where((code & 128) != 0, -value, value)
    return value


@triton.jit
def _scale_offset(flat_row, l_idx, row, grp, row_tiles, NG: tl.constexpr, PREORDERED: tl.constexpr):
    """Flat position (int64) of the scale of (operand l, row, group).

    public: [flat rows, NG]; preordered_mma: (L, row_tiles, ceil(NG/4), 32, 4, 4) at
    [l, row//128, grp//4, row%32, (row//32)%4, grp%4].
    """
    if PREORDERED:
        col_tiles: tl.constexpr = (NG + 3) // 4
        tile = (l_idx * row_tiles + row // 128) * col_tiles + grp // 4
        return tile * 512 + (row % 32) * 16 + ((row // 32) % 4) * 4 + grp % 4
    else:
        return flat_row * NG + grp


@triton.jit
def fp4_dequant_kernel(
    src_ptr, scale_ptr, dst_ptr, num_rows, num_heads, row_tiles,
    HALF_D: tl.constexpr, GROUP: tl.constexpr, MXFP4: tl.constexpr, PREORDERED: tl.constexpr,
    IS_Q: tl.constexpr, BLOCK_R: tl.constexpr,
):
    """Packed E2M1 rows [num_rows, HALF_D] -> dequantized rows [num_rows, 2*HALF_D] (element 2i = low nibble).

    Q rows are (token, head) = (r // num_heads, r % num_heads) with scale operand l = head;
    K rows are (page*Hkv + hkv, slot) = (r // 128, r % 128) with l = page*Hkv + hkv.
    """
    NG: tl.constexpr = 2 * HALF_D // GROUP
    GB: tl.constexpr = GROUP // 2  # packed bytes per scale group
    rows = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    ok = rows < num_rows
    if IS_Q:
        l_idx = rows % num_heads
        srow = rows // num_heads
    else:
        l_idx = rows // 128
        srow = rows % 128
    grp = tl.arange(0, NG)
    byte = tl.arange(0, GB)
    col = grp[:, None] * GB + byte[None, :]
    packed = tl.load(src_ptr + rows[:, None, None] * HALF_D + col[None, :, :], mask=ok[:, None, None], other=0)
    packed = packed.to(tl.int32)
    s_off = _scale_offset(rows[:, None], l_idx[:, None], srow[:, None], grp[None, :], row_tiles, NG, PREORDERED)
    scale = _scale_value(tl.load(scale_ptr + s_off, mask=ok[:, None], other=0).to(tl.int32), MXFP4)[:, :, None]
    lo = _e2m1_value(packed & 15) * scale
    hi = _e2m1_value(packed >> 4) * scale
    vals = tl.reshape(tl.join(lo, hi), (BLOCK_R, 2 * HALF_D))
    dcols = tl.arange(0, 2 * HALF_D)
    tl.store(dst_ptr + rows[:, None] * (2 * HALF_D) + dcols[None, :], vals.to(dst_ptr.dtype.element_ty),
             mask=ok[:, None])


def dequant_block_rows(half_d):
    return max(8, 4096 // half_d)


def launch_fp4_dequant(wrap, src, scale, dst, num_heads, row_tiles, group, mxfp4, preordered, is_q):
    half_d = src.shape[-1]
    num_rows = src.numel() // half_d
    block_r = dequant_block_rows(half_d)
    wrap(fp4_dequant_kernel)[(triton.cdiv(num_rows, block_r),)](
        src, scale, dst, num_rows, num_heads, row_tiles,
        HALF_D=half_d, GROUP=group, MXFP4=mxfp4, PREORDERED=preordered, IS_Q=is_q, BLOCK_R=block_r,
        num_warps=4, num_stages=1,
    )


# --------------------------------------------------------------------------- FP8 page widening


WIDEN_BLOCK = 4096  # elements per program


@triton.jit
def widen_pages_kernel(src_ptr, page_ids_ptr, dst_ptr, num_src_pages, page_stride, page_elems, BLOCK: tl.constexpr):
    """dst page i = src page page_ids[i] converted to dst's dtype (zeros for an out-of-range id);
    each page's elements are contiguous, pages `page_stride` apart."""
    i = tl.program_id(0)
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    page = tl.load(page_ids_ptr + i)
    ok = (page >= 0) & (page < num_src_pages)
    src = src_ptr + tl.where(ok, page, 0).to(tl.int64) * page_stride
    x = tl.load(src + offs, mask=(offs < page_elems) & ok, other=0.0)
    tl.store(dst_ptr + i.to(tl.int64) * page_elems + offs, x.to(dst_ptr.dtype.element_ty), mask=offs < page_elems)


def launch_widen_pages(wrap, src, page_ids, dst):
    """src [P, ...] with contiguous pages, page_ids [N] int32, dst [N, ...] contiguous (the wider dtype)."""
    page_elems = src[0].numel()
    wrap(widen_pages_kernel)[(page_ids.shape[0], triton.cdiv(page_elems, WIDEN_BLOCK))](
        src, page_ids, dst, src.shape[0], src.stride(0), page_elems, BLOCK=WIDEN_BLOCK, num_warps=4, num_stages=1)


# --------------------------------------------------------------------------- proxy FMHA / block-max scorer


@triton.jit
def _kv_rows(pos, k_start, page_base, kv_idx_ptr, num_kv_idx, num_pages, page_size, ok, PAGED: tl.constexpr):
    """(row, slot, readable) of key positions `pos` of request b: the element offset is
    row * stride_token + slot * stride_slot for both K and V (one page-table lookup for both).

    dense: rows [total_k, Hkv, D] from k_start; paged: pages [P, Hkv, page_size, D] through kv_indices.
    """
    if PAGED:
        idx = page_base + pos // page_size
        page = tl.load(kv_idx_ptr + idx, mask=ok & (idx < num_kv_idx), other=-1).to(tl.int64)
        return page, (pos % page_size).to(tl.int64), ok & (page >= 0) & (page < num_pages)
    else:
        return (k_start + pos).to(tl.int64), (pos * 0).to(tl.int64), ok


@triton.jit
def _emit_tile_max(tile_max, s_max, n, ms_ptr, ms_row, total_q, row_ok, SUBS: tl.constexpr):
    """Folds sub-tile n's row maxima into the 128-key tile's and stores it after the tile's last sub-tile."""
    tile_max = tl.maximum(tile_max, s_max)
    last = n % SUBS == SUBS - 1
    tl.store(ms_ptr + ms_row + tl.cast(n // SUBS, tl.int64) * total_q, tile_max, mask=row_ok & last)
    return tl.where(last, float("-inf"), tile_max)


@triton.jit
def proxy_fmha_kernel(
    q_ptr, k_ptr, v_ptr, o_ptr, ms_ptr, cu_q_ptr, cu_k_ptr, cu_p_ptr, kv_idx_ptr, qo_off_ptr,
    total_q, num_tiles_out, num_kv_idx, num_pages, page_size, group_size, heads_per_prog, num_head_chunks, causal,
    sm_scale, qk_scale, v_scale,
    stride_qt, stride_qh, stride_kt, stride_kh, stride_ks, stride_vt, stride_vh, stride_vs, stride_ot, stride_oh,
    D: tl.constexpr, PAGED: tl.constexpr, OUTPUT_O: tl.constexpr, OUTPUT_MS: tl.constexpr,
    M: tl.constexpr, BLOCK_N: tl.constexpr, DOT_DTYPE: tl.constexpr, SCALE_AFTER_MAX: tl.constexpr,
):
    """Rows (token, head) x keys in BLOCK_N sub-tiles of the 128-key max_score tiles; optional online softmax."""
    SUBS: tl.constexpr = 128 // BLOCK_N
    block_t = M // heads_per_prog
    pid_t = tl.num_programs(0) - 1 - tl.program_id(0)  # causal: the longest query tiles start first
    b = tl.program_id(1)
    g = tl.program_id(2) // num_head_chunks
    chunk = tl.program_id(2) % num_head_chunks
    q_start = tl.load(cu_q_ptr + b)
    q_len = tl.load(cu_q_ptr + b + 1) - q_start
    k_start = tl.load(cu_k_ptr + b)
    k_len = tl.load(cu_k_ptr + b + 1) - k_start
    page_base = tl.load(cu_p_ptr + b).to(tl.int64)
    t0 = pid_t * block_t
    if t0 >= q_len:
        return

    rows = tl.arange(0, M)
    t_local = t0 + rows // heads_per_prog
    head_in_group = chunk * heads_per_prog + rows % heads_per_prog
    head = g * group_size + head_in_group
    row_ok = (t_local < q_len) & (head_in_group < group_size)
    t_glob = (q_start + t_local).to(tl.int64)
    dims = tl.arange(0, D)
    q = tl.load(q_ptr + (t_glob * stride_qt + head * stride_qh)[:, None] + dims[None, :],
                mask=row_ok[:, None], other=0.0).to(DOT_DTYPE)

    n_tiles = tl.cdiv(k_len, 128)
    j_end = n_tiles
    key_limit = t_local * 0 + 2147483647  # last visible key position per row
    qo_off = 0
    if causal:
        qo_off = tl.load(qo_off_ptr + b)
        last_pos = tl.minimum(t0 + block_t, q_len) - 1 + qo_off
        j_end = tl.where(last_pos >= 0, tl.minimum(n_tiles, last_pos // 128 + 1), 0)
        key_limit = t_local + qo_off
    log2_scale = sm_scale * 1.4426950408889634
    m_i = tl.full([M], float("-inf"), tl.float32)
    l_i = tl.zeros([M], tl.float32)
    acc = tl.zeros([M, D], tl.float32)
    tile_max = tl.full([M], float("-inf"), tl.float32)
    ms_row = head.to(tl.int64) * num_tiles_out * total_q + t_glob
    cols = tl.arange(0, BLOCK_N)

    # Scores only: the sub-tiles every row of the program sees whole (all but the causal edge and the
    # last, partial one) run without per-element masks. A sub-tile inside one page has one page id,
    # so a bad page blanks the whole sub-tile; a positive scale is applied to the row max (the same
    # fp32 product as scaling every element).
    n_whole = 0
    if not OUTPUT_O:
        n_whole = k_len // BLOCK_N
        if causal:
            n_whole = tl.minimum(n_whole, tl.maximum(t0 + qo_off + 1, 0) // BLOCK_N)
        if PAGED:
            n_whole = tl.where(page_size % BLOCK_N == 0, n_whole, 0)
        n_whole = tl.minimum(n_whole, j_end * SUBS)
    for n in range(0, n_whole):
        pos = n * BLOCK_N + cols
        if PAGED:
            idx = page_base + (n * BLOCK_N) // page_size
            page = tl.load(kv_idx_ptr + idx, mask=idx < num_kv_idx, other=-1).to(tl.int64)
            page_ok = (page >= 0) & (page < num_pages)
            k_off = page * stride_kt + (pos % page_size).to(tl.int64) * stride_ks
            k = tl.load(k_ptr + (k_off + g * stride_kh)[:, None] + dims[None, :], mask=page_ok, other=0.0)
        else:
            k_off = (k_start + pos).to(tl.int64) * stride_kt
            k = tl.load(k_ptr + (k_off + g * stride_kh)[:, None] + dims[None, :])
        s = tl.dot(q, tl.trans(k.to(DOT_DTYPE)))
        if SCALE_AFTER_MAX:
            s_max = tl.max(s, axis=1) * qk_scale
        else:
            s_max = tl.max(s * qk_scale, axis=1)
        if PAGED:
            s_max = tl.where(page_ok, s_max, float("-inf"))
        tile_max = _emit_tile_max(tile_max, s_max, n, ms_ptr, ms_row, total_q, row_ok, SUBS)

    for n in range(n_whole, j_end * SUBS):
        pos = n * BLOCK_N + cols
        kv_row, kv_slot, key_ok = _kv_rows(pos, k_start, page_base, kv_idx_ptr, num_kv_idx, num_pages, page_size,
                                           pos < k_len, PAGED)
        k_off = kv_row * stride_kt + kv_slot * stride_ks
        k = tl.load(k_ptr + (k_off + g * stride_kh)[:, None] + dims[None, :], mask=key_ok[:, None], other=0.0)
        s = tl.dot(q, tl.trans(k.to(DOT_DTYPE))) * qk_scale
        s = tl.where(key_ok[None, :] & (pos[None, :] <= key_limit[:, None]), s, float("-inf"))
        s_max = tl.max(s, axis=1)
        if OUTPUT_MS:
            tile_max = _emit_tile_max(tile_max, s_max, n, ms_ptr, ms_row, total_q, row_ok, SUBS)
        if OUTPUT_O:
            m_new = tl.maximum(m_i, s_max)
            m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
            p = tl.exp2((s - m_safe[:, None]) * log2_scale)
            alpha = tl.exp2((m_i - m_safe) * log2_scale)
            v_off = kv_row * stride_vt + kv_slot * stride_vs
            v = tl.load(v_ptr + (v_off + g * stride_vh)[:, None] + dims[None, :], mask=key_ok[:, None], other=0.0)
            acc = acc * alpha[:, None] + tl.dot(p.to(DOT_DTYPE), v.to(DOT_DTYPE))
            l_i = l_i * alpha + tl.sum(p, axis=1)
            m_i = m_new
    if OUTPUT_MS:
        for j in range(j_end, num_tiles_out):
            tl.store(ms_ptr + ms_row + tl.cast(j, tl.int64) * total_q, tl.full([M], float("-inf"), tl.float32),
                     mask=row_ok)
    if OUTPUT_O:
        out = acc * (v_scale / tl.where(l_i > 0, l_i, 1.0))[:, None]
        tl.store(o_ptr + (t_glob * stride_ot + head * stride_oh)[:, None] + dims[None, :],
                 out.to(o_ptr.dtype.element_ty), mask=row_ok[:, None])


def check_strides_aligned(**tensors):
    """The gate compiles with every stride divisible by 16 (Triton's launch specialisation): keep it true."""
    for name, t in tensors.items():
        for dim, st in enumerate(t.stride()[:-1]):
            if st % 16 and t.shape[dim] > 1:
                raise ValueError(f"{name} stride {st} of dim {dim} must be a multiple of 16 elements")


def proxy_fmha_config(d, output_o):
    """(M rows, BLOCK_N keys, num_warps, num_stages) per head dim and variant (every value is gate-listed)."""
    if output_o:
        return _tuned("proxy_o", (64, 32 if d <= 64 else 64, 4 if d <= 32 else 8, 2))
    # Scores only: 256-row tiles halve the K reloads per query. H200 sweep (FP4 scorer hot shape,
    # results/sweeps/sweep_indexer): 4473 us against 8289 for (128, 128, 8, 2); (128, 128, 4, 2)
    # ran 4339 but spills for FP8 K at D=128 on SM12x.
    return _tuned("proxy_ms", (256, 64, 8, 2))


def launch_proxy_fmha(wrap, q, k, v, out, max_score, cu_q, cu_k, cu_p, kv_indices, qo_offset, max_seqlen_q,
                      page_size, causal, output_o, output_ms, sm_scale, qk_scale, v_scale, dot_dtype):
    """k, v: dense [total_k, Hkv, D] (page_size 0) or paged [P, Hkv, page_size, D]."""
    total_q, hq, d = q.shape
    hkv = k.shape[1]
    batch = cu_q.shape[0] - 1
    group = hq // hkv
    check_strides_aligned(q=q, k=k, v=v, out=out)
    m, block_n, warps, stages = proxy_fmha_config(d, output_o)
    heads = heads_per_program(group)
    chunks = triton.cdiv(group, heads)
    block_t = m // heads
    grid = (triton.cdiv(max(max_seqlen_q, 1), block_t), batch, hkv * chunks)
    slot_k = k.stride(2) if page_size else 0
    slot_v = v.stride(2) if page_size else 0
    wrap(proxy_fmha_kernel)[grid](
        q, k, v, out, max_score, cu_q, cu_k, cu_p, kv_indices, qo_offset,
        total_q, max_score.shape[1], kv_indices.shape[0], k.shape[0], max(page_size, 1), group, heads, chunks,
        int(bool(causal)), sm_scale, qk_scale, v_scale,
        q.stride(0), q.stride(1), k.stride(0), k.stride(1), slot_k, v.stride(0), v.stride(1), slot_v,
        out.stride(0), out.stride(1),
        D=d, PAGED=page_size > 0, OUTPUT_O=output_o, OUTPUT_MS=output_ms,
        M=m, BLOCK_N=block_n, DOT_DTYPE=dot_dtype, SCALE_AFTER_MAX=not output_o and qk_scale > 0,
        num_warps=warps, num_stages=stages,
    )


# --------------------------------------------------------------------------- decode block scorer


@triton.jit
def _clamp_to_dot_range(x, DOT_DTYPE: tl.constexpr):
    if DOT_DTYPE == tl.float16:
        x = tl.minimum(tl.maximum(x, -65504.0), 65504.0)
    return x


@triton.jit
def decode_block_score_kernel(
    q_ptr, k_ptr, r2t_ptr, slot_ids_ptr, seq_lens_ptr, out_ptr,
    batch, max_blocks, r2t_width, num_slots, num_reqs, k_scale, group_size, block_size, blocks_per_prog,
    init_blocks, local_blocks, num_head_chunks,
    stride_qb, stride_qh, stride_ks, stride_kh, stride_r2t,
    D: tl.constexpr, BLOCK_N: tl.constexpr, HEADS_P2: tl.constexpr, DOT_DTYPE: tl.constexpr,
):
    """out [H, B, max_blocks]: block max of q·k over one request's token slots; `+inf` for the forced
    blocks (the first init_blocks and last local_blocks of the request), `-inf` past its end.

    Keys are the dot's A operand (s^T = k q^T): the K tile needs no transpose, so 8-bit caches
    convert in registers without a shared-memory shuffle."""
    b = tl.program_id(0)
    g = tl.program_id(1) // num_head_chunks
    head_chunk = tl.program_id(1) % num_head_chunks
    chunk = tl.program_id(2)
    seq_len = tl.maximum(tl.minimum(tl.load(seq_lens_ptr + b), r2t_width), 0)
    req = tl.load(slot_ids_ptr + b).to(tl.int64)
    req_ok = (req >= 0) & (req < num_reqs)
    n_blocks = tl.cdiv(seq_len, block_size)
    head_in_group = head_chunk * HEADS_P2 + tl.arange(0, HEADS_P2)
    head = g * group_size + head_in_group
    head_ok = head_in_group < group_size
    dims = tl.arange(0, D)
    q = tl.load(q_ptr + b.to(tl.int64) * stride_qb + head[:, None] * stride_qh + dims[None, :],
                mask=head_ok[:, None], other=0.0).to(tl.float32)
    # fp16 dots (FP8 caches) need Q inside the fp16 range; every E4M3 key is exact in fp16
    q_t = tl.trans(_clamp_to_dot_range(q, DOT_DTYPE).to(DOT_DTYPE))
    cols = tl.arange(0, BLOCK_N)
    out_row = (head.to(tl.int64) * batch + b) * max_blocks
    subs = block_size // BLOCK_N
    j0 = chunk * blocks_per_prog
    j_stop = tl.minimum(j0 + blocks_per_prog, n_blocks)
    tok0 = j0 * block_size
    best = tl.full([HEADS_P2], float("-inf"), tl.float32)
    for n in range(0, tl.maximum(j_stop - j0, 0) * subs):
        pos = tok0 + n * BLOCK_N + cols
        tok_ok = (pos < seq_len) & req_ok
        slot = tl.load(r2t_ptr + req * stride_r2t + pos, mask=tok_ok, other=-1).to(tl.int64)
        tok_ok = tok_ok & (slot >= 0) & (slot < num_slots)
        k = tl.load(k_ptr + (slot * stride_ks + g * stride_kh)[:, None] + dims[None, :],
                    mask=tok_ok[:, None], other=0.0)
        s = tl.dot(k.to(DOT_DTYPE), q_t) * k_scale
        best = tl.maximum(best, tl.max(tl.where(tok_ok[:, None], s, float("-inf")), axis=0))
        last = n % subs == subs - 1
        blk = j0 + n // subs
        forced = (blk < init_blocks) | (blk >= n_blocks - local_blocks)
        tl.store(out_ptr + out_row + blk, tl.where(forced, float("inf"), best), mask=head_ok & last)
        best = tl.where(last, float("-inf"), best)
    for j in range(tl.maximum(j_stop, j0), tl.minimum(j0 + blocks_per_prog, max_blocks)):
        tl.store(out_ptr + out_row + j, tl.full([HEADS_P2], float("-inf"), tl.float32), mask=head_ok)


def decode_block_n(block_size, d):
    return min(_tuned("decode_block_n", 64 if d <= 128 else 32), block_size)


def decode_scorer_config(block_size, d, max_blocks, batch, hkv, num_sms):
    """(BLOCK_N, blocks_per_prog, num_warps, num_stages).

    Memory bound: about `waves` programs per SM, each streaming whole blocks (a longer loop keeps
    more loads in flight), but never fewer programs than that (B=1 long contexts split finely)."""
    waves = _tuned("decode_waves", 8)
    work = max(batch * hkv * max_blocks, 1)
    per_prog = 1
    while per_prog < _tuned("decode_max_blocks_per_prog", 16) and work // (per_prog * 2) >= waves * num_sms:
        per_prog *= 2
    warps, stages = _tuned("decode_warps_stages", (4, 3))
    return decode_block_n(block_size, d), per_prog, warps, stages


def launch_decode_block_scores(wrap, q, k_cache, req_to_token, slot_ids, seq_lens, out, block_size, k_scale,
                               init_blocks, local_blocks, dot_dtype, num_sms):
    batch, hq, d = q.shape
    hkv = k_cache.shape[1]
    group = hq // hkv
    max_blocks = out.shape[2]
    check_strides_aligned(q=q, k_cache=k_cache)
    block_n, per_prog, warps, stages = decode_scorer_config(block_size, d, max_blocks, batch, hkv, num_sms)
    heads = heads_per_program(group, min_rows=16)
    # groups above 16 heads: one program per 16-head chunk (grid axis 1 enumerates head chunks)
    chunks = triton.cdiv(group, heads)
    grid = (batch, hkv * chunks, triton.cdiv(max_blocks, per_prog))
    wrap(decode_block_score_kernel)[grid](
        q, k_cache, req_to_token, slot_ids, seq_lens, out,
        batch, max_blocks, req_to_token.shape[1], k_cache.shape[0], req_to_token.shape[0], k_scale, group,
        block_size, per_prog, init_blocks, local_blocks, chunks,
        q.stride(0), q.stride(1), k_cache.stride(0), k_cache.stride(1), req_to_token.stride(0),
        D=d, BLOCK_N=block_n, HEADS_P2=heads, DOT_DTYPE=dot_dtype, num_warps=warps, num_stages=stages,
    )


# --------------------------------------------------------------------------- compile gate

_I32 = "*i32"


def _sig(ptrs, ints, floats=(), constexprs=()):
    sig = dict(ptrs)
    sig.update({n: "i32" for n in ints})
    sig.update({n: "fp32" for n in floats})
    sig.update({n: "constexpr" for n in constexprs})
    return sig


def _dequant_cases():
    cases = []
    for fmt, group in (("mxfp4", 32), ("nvfp4", 16)):
        for preordered in (False, True):
            for is_q in (True, False):
                for d in HEAD_DIMS:
                    constexprs = dict(HALF_D=d // 2, GROUP=group, MXFP4=fmt == "mxfp4", PREORDERED=preordered,
                                      IS_Q=is_q, BLOCK_R=dequant_block_rows(d // 2))
                    sig = _sig({"src_ptr": "*u8", "scale_ptr": "*u8", "dst_ptr": "*bf16"},
                               ("num_rows", "num_heads", "row_tiles"), constexprs=constexprs)
                    tag = f"fp4_dequant[{fmt},{'pre' if preordered else 'pub'},{'q' if is_q else 'k'},D{d}]"
                    cases.append(GateCase(tag, fp4_dequant_kernel, sig, constexprs, 4, 1))
    return cases


# (q, k/v, o) pointer dtypes fmha_sm12x / the FP4 scorer (bf16 workspace) can launch
_PROXY_DTYPES = (("bf16", "bf16", "bf16"), ("fp16", "fp16", "fp16"), ("bf16", "fp8e4nv", "bf16"),
                 ("fp16", "fp8e4nv", "fp16"), ("fp8e4nv", "fp8e4nv", "bf16"))


_PROXY_STRIDES = ("stride_qt", "stride_qh", "stride_kt", "stride_kh", "stride_ks", "stride_vt", "stride_vh",
                  "stride_vs", "stride_ot", "stride_oh")
_DECODE_STRIDES = ("stride_qb", "stride_qh", "stride_ks", "stride_kh")


def _proxy_dot_dtype(q_t, output_o):
    """What fmha's launcher passes: fp16 for fp16 Q and for FP8 Q scores only, else bf16."""
    return tl.float16 if q_t == "fp16" or (q_t == "fp8e4nv" and not output_o) else tl.bfloat16


def _proxy_cases():
    cases = []
    for q_t, kv_t, o_t in _PROXY_DTYPES:
        for d in HEAD_DIMS:
            # scores only: SCALE_AFTER_MAX for qk_scale > 0, the per-element scale otherwise
            for output_o, output_ms, after_max in ((True, True, False), (True, False, False), (False, True, True),
                                                   (False, True, False)):
                for paged in (True, False):
                    m, block_n, warps, stages = proxy_fmha_config(d, output_o)
                    constexprs = dict(D=d, PAGED=paged, OUTPUT_O=output_o, OUTPUT_MS=output_ms, M=m, BLOCK_N=block_n,
                                      DOT_DTYPE=_proxy_dot_dtype(q_t, output_o), SCALE_AFTER_MAX=after_max)
                    ptrs = {"q_ptr": "*" + q_t, "k_ptr": "*" + kv_t, "v_ptr": "*" + kv_t, "o_ptr": "*" + o_t,
                            "ms_ptr": "*fp32", "cu_q_ptr": _I32, "cu_k_ptr": _I32, "cu_p_ptr": _I32,
                            "kv_idx_ptr": _I32, "qo_off_ptr": _I32}
                    ints = ("total_q", "num_tiles_out", "num_kv_idx", "num_pages", "page_size", "group_size",
                            "heads_per_prog", "num_head_chunks", "causal")
                    sig = _sig(ptrs, ints, ("sm_scale", "qk_scale", "v_scale"))
                    sig.update({n: "i32" for n in _PROXY_STRIDES})
                    sig.update({n: "constexpr" for n in constexprs})
                    variant = "o+ms" if output_o and output_ms else ("o" if output_o else
                                                                     ("ms" if after_max else "ms,scaled"))
                    tag = f"proxy_fmha[{q_t}/{kv_t},D{d},{variant},{'paged' if paged else 'dense'}]"
                    cases.append(GateCase(tag, proxy_fmha_kernel, sig, constexprs, warps, stages,
                                          aligned_ints=_PROXY_STRIDES))
    return cases


def _decode_cases():
    cases = []
    for q_t, k_t in (("bf16", "bf16"), ("fp16", "fp16"), ("bf16", "fp8e4nv"), ("fp16", "fp8e4nv")):
        for d in DECODE_HEAD_DIMS:
            for block_n in sorted({decode_block_n(bs, d) for bs in (16, 32, 64, 128, 256)}):
                _, _, warps, stages = decode_scorer_config(block_n, d, 1, 1, 1, 1)
                dot = tl.bfloat16 if (q_t, k_t) == ("bf16", "bf16") else tl.float16
                constexprs = dict(D=d, BLOCK_N=block_n, HEADS_P2=MAX_HEADS_PER_PROGRAM, DOT_DTYPE=dot)
                ptrs = {"q_ptr": "*" + q_t, "k_ptr": "*" + k_t, "r2t_ptr": _I32, "slot_ids_ptr": "*i64",
                        "seq_lens_ptr": _I32, "out_ptr": "*fp32"}
                ints = ("batch", "max_blocks", "r2t_width", "num_slots", "num_reqs")
                sig = _sig(ptrs, ints, ("k_scale",))
                sig.update({n: "i32" for n in ("group_size", "block_size", "blocks_per_prog", "init_blocks",
                                               "local_blocks", "num_head_chunks") + _DECODE_STRIDES + ("stride_r2t",)})
                sig.update({n: "constexpr" for n in constexprs})
                tag = f"decode_block_score[{q_t}/{k_t},D{d},N{block_n}]"
                cases.append(GateCase(tag, decode_block_score_kernel, sig, constexprs, warps, stages,
                                      aligned_ints=_DECODE_STRIDES))
    return cases


def _widen_cases():
    # launched on Hopper only (fmha's FP8 scores path); gated like every kernel
    cases = []
    for dst in ("fp16", "bf16"):
        sig = _sig({"src_ptr": "*fp8e4nv", "page_ids_ptr": _I32, "dst_ptr": "*" + dst},
                   ("num_src_pages", "page_stride", "page_elems"), constexprs=dict(BLOCK=WIDEN_BLOCK))
        cases.append(GateCase(f"widen_pages[fp8e4nv->{dst}]", widen_pages_kernel, sig, dict(BLOCK=WIDEN_BLOCK), 4, 1))
    return cases


def gate_cases():
    """Every specialisation the launchers can pick: dtypes x head dims x variants x tile constexprs.

    Group size, page size, block size, causal flag and blocks-per-program are runtime arguments,
    and heads per program only changes runtime row indexing (M is fixed per variant)."""
    return _dequant_cases() + _proxy_cases() + _decode_cases() + _widen_cases()
