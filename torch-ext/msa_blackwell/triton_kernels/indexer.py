"""Index-branch kernels: the FP4 prefill block scorer, the dense proxy FMHA, the decode block scorer.

All three compute raw q·k block maxima; each program covers every query head of one KV
head group so a key tile is loaded (and, for FP4, decoded) once for the whole group.
Rows of a program are (token, head-in-group) pairs: row m = token (m // HEADS_P2), head (m % HEADS_P2).
"""
import triton
import triton.language as tl

from .gate import GateCase

SCORE_BLOCK = 128  # key tokens per scored block / max_score tile


def _next_pow2(x):
    return 1 << max(0, int(x) - 1).bit_length()


def heads_per_program(group_size, min_rows=1):
    return max(min_rows, _next_pow2(group_size))


# --------------------------------------------------------------------------- FP4 decoding


@triton.jit
def _e2m1_value(code):
    """4-bit E2M1 code (int32) -> float32: magnitudes 0, .5, 1, 1.5, 2, 3, 4, 6; bit 3 = sign."""
    mag = code & 7
    exp = mag >> 1
    mant = (mag & 1).to(tl.float32)
    normal = (1.0 + 0.5 * mant) * tl.where(exp == 3, 4.0, tl.where(exp == 2, 2.0, 1.0))
    value = tl.where(exp == 0, 0.5 * mant, normal)
    return tl.where((code & 8) != 0, -value, value)


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
def _scale_offset(l_idx, row, grp, row_tiles, NG: tl.constexpr, PREORDERED: tl.constexpr):
    """Flat position of scale (operand l, row, group) in its layout (int64).

    public: [L-major rows..., NG] with (l, row) flattened as l_idx (caller passes the flat row);
    preordered_mma: (L, row_tiles, ceil(NG/4), 32, 4, 4) at [l, row//128, grp//4, row%32, (row//32)%4, grp%4].
    """
    if PREORDERED:
        col_tiles: tl.constexpr = (NG + 3) // 4
        tile = (l_idx * row_tiles + row // 128) * col_tiles + grp // 4
        return tile * 512 + (row % 32) * 16 + ((row // 32) % 4) * 4 + grp % 4
    else:
        return l_idx * NG + grp


@triton.jit
def _load_fp4_operand(data_ptr, scale_ptr, data_row, scale_l, scale_row, row_tiles, mask,
                      HALF_D: tl.constexpr, GROUP: tl.constexpr, NG: tl.constexpr,
                      MXFP4: tl.constexpr, PREORDERED: tl.constexpr, DOT_DTYPE: tl.constexpr):
    """Decode rows of packed E2M1 into (low-nibble, high-nibble) halves [R, HALF_D] of DOT_DTYPE.

    Element 2i is the low nibble of byte i; both nibbles of a byte share scale group i // (GROUP/2).
    """
    cols = tl.arange(0, HALF_D)
    packed = tl.load(data_ptr + data_row[:, None] * HALF_D + cols[None, :], mask=mask[:, None], other=0)
    packed = packed.to(tl.int32)
    grp = cols // (GROUP // 2)
    s_off = _scale_offset(scale_l[:, None], scale_row[:, None], grp[None, :], row_tiles, NG, PREORDERED)
    scale = _scale_value(tl.load(scale_ptr + s_off, mask=mask[:, None], other=0).to(tl.int32), MXFP4)
    lo = (_e2m1_value(packed & 15) * scale).to(DOT_DTYPE)
    hi = (_e2m1_value(packed >> 4) * scale).to(DOT_DTYPE)
    return lo, hi


# --------------------------------------------------------------------------- FP4 prefill scorer


@triton.jit
def fp4_block_score_kernel(
    q_ptr, k_ptr, qs_ptr, ks_ptr, cu_q_ptr, cu_k_ptr, cu_p_ptr, kv_idx_ptr, qo_off_ptr, out_ptr,
    total_q, total_pages, num_kv_idx, num_blocks_out, q_row_tiles,
    HQ: tl.constexpr, HKV: tl.constexpr, G: tl.constexpr, HALF_D: tl.constexpr, GROUP: tl.constexpr,
    MXFP4: tl.constexpr, PREORDERED: tl.constexpr, CAUSAL: tl.constexpr, HAS_QO_OFFSET: tl.constexpr,
    BLOCK_T: tl.constexpr, HEADS_P2: tl.constexpr, DOT_DTYPE: tl.constexpr,
):
    NG: tl.constexpr = 2 * HALF_D // GROUP
    M: tl.constexpr = BLOCK_T * HEADS_P2
    pid_t = tl.program_id(0)
    b = tl.program_id(1)
    g = tl.program_id(2)
    q_start = tl.load(cu_q_ptr + b)
    q_len = tl.load(cu_q_ptr + b + 1) - q_start
    k_len = tl.load(cu_k_ptr + b + 1) - tl.load(cu_k_ptr + b)
    page_base = tl.load(cu_p_ptr + b).to(tl.int64)
    t0 = pid_t * BLOCK_T
    if t0 >= q_len:
        return
    if HAS_QO_OFFSET:
        qo_off = tl.load(qo_off_ptr + b)
    else:
        qo_off = k_len - q_len

    rows = tl.arange(0, M)
    t_local = t0 + rows // HEADS_P2
    head = g * G + rows % HEADS_P2
    row_ok = (t_local < q_len) & (rows % HEADS_P2 < G)
    t_glob = (q_start + t_local).to(tl.int64)
    q_row = t_glob * HQ + head
    if PREORDERED:
        q_lo, q_hi = _load_fp4_operand(q_ptr, qs_ptr, q_row, head, t_glob, q_row_tiles, row_ok,
                                       HALF_D, GROUP, NG, MXFP4, PREORDERED, DOT_DTYPE)
    else:
        q_lo, q_hi = _load_fp4_operand(q_ptr, qs_ptr, q_row, q_row, t_glob, q_row_tiles, row_ok,
                                       HALF_D, GROUP, NG, MXFP4, PREORDERED, DOT_DTYPE)

    n_blocks = tl.cdiv(k_len, 128)
    j_end = n_blocks
    if CAUSAL:
        last_pos = tl.minimum(t0 + BLOCK_T, q_len) - 1 + qo_off
        j_end = tl.where(last_pos >= 0, tl.minimum(n_blocks, last_pos // 128 + 1), 0)
    slots = tl.arange(0, 128)
    out_row = head.to(tl.int64) * num_blocks_out * total_q + t_glob
    for j in range(0, j_end):
        page = tl.load(kv_idx_ptr + page_base + j, mask=page_base + j < num_kv_idx, other=-1).to(tl.int64)
        page_ok = (page >= 0) & (page < total_pages)
        pos = j * 128 + slots
        key_ok = (pos < k_len) & page_ok
        k_l = (page * HKV + g) * 128 + slots
        if PREORDERED:
            k_lo, k_hi = _load_fp4_operand(k_ptr, ks_ptr, k_l, page * HKV + g + slots * 0, slots, 1, key_ok,
                                           HALF_D, GROUP, NG, MXFP4, PREORDERED, DOT_DTYPE)
        else:
            k_lo, k_hi = _load_fp4_operand(k_ptr, ks_ptr, k_l, k_l, slots, 1, key_ok,
                                           HALF_D, GROUP, NG, MXFP4, PREORDERED, DOT_DTYPE)
        s = tl.dot(q_lo, tl.trans(k_lo)) + tl.dot(q_hi, tl.trans(k_hi))
        visible = key_ok[None, :]
        if CAUSAL:
            visible = visible & (pos[None, :] <= (t_local + qo_off)[:, None])
        best = tl.max(tl.where(visible, s, float("-inf")), axis=1)
        tl.store(out_ptr + out_row + j * total_q, best, mask=row_ok)
    for j in range(j_end, num_blocks_out):
        tl.store(out_ptr + out_row + j * total_q, tl.full([M], float("-inf"), tl.float32), mask=row_ok)


def fp4_scorer_config(group_size):
    """(BLOCK_T, HEADS_P2, num_warps, num_stages): 128 rows of (token, head) per program."""
    heads = heads_per_program(group_size)
    block_t = max(128 // heads, 1)
    return block_t, heads, 8, 2


def launch_fp4_block_scores(wrap, q_fp4, k_fp4, q_scale, k_scale, cu_q, cu_k, cu_p, kv_indices, qo_offset,
                            out, max_seqlen_q, group, mxfp4, preordered, causal, dot_dtype):
    total_q, hq, half_d = q_fp4.shape
    total_pages, hkv = k_fp4.shape[0], k_fp4.shape[1]
    batch = cu_q.shape[0] - 1
    block_t, heads, warps, stages = fp4_scorer_config(hq // hkv)
    grid = (triton.cdiv(max(max_seqlen_q, 1), block_t), batch, hkv)
    wrap(fp4_block_score_kernel)[grid](
        q_fp4, k_fp4, q_scale, k_scale, cu_q, cu_k, cu_p, kv_indices,
        cu_q if qo_offset is None else qo_offset, out,
        total_q, total_pages, kv_indices.shape[0], out.shape[1], triton.cdiv(total_q, 128),
        HQ=hq, HKV=hkv, G=hq // hkv, HALF_D=half_d, GROUP=group,
        MXFP4=mxfp4, PREORDERED=preordered, CAUSAL=causal, HAS_QO_OFFSET=qo_offset is not None,
        BLOCK_T=block_t, HEADS_P2=heads, DOT_DTYPE=dot_dtype, num_warps=warps, num_stages=stages,
    )


# --------------------------------------------------------------------------- dense proxy FMHA


@triton.jit
def _kv_row_offsets(pos, k_start, page_base, kv_idx_ptr, num_kv_idx, num_pages, ok, stride_tok, stride_slot,
                    PAGE_SIZE: tl.constexpr):
    """int64 offsets of key positions `pos` of request b, and which are readable.

    PAGE_SIZE 0: dense [total_k, Hkv, D] rows from k_start; else pages [P, Hkv, PAGE_SIZE, D].
    """
    if PAGE_SIZE == 0:
        return (k_start + pos).to(tl.int64) * stride_tok, ok
    else:
        idx = page_base + pos // PAGE_SIZE
        page = tl.load(kv_idx_ptr + idx, mask=ok & (idx < num_kv_idx), other=-1).to(tl.int64)
        page_ok = ok & (page >= 0) & (page < num_pages)
        return page * stride_tok + (pos % PAGE_SIZE) * stride_slot, page_ok


@triton.jit
def proxy_fmha_kernel(
    q_ptr, k_ptr, v_ptr, o_ptr, ms_ptr, cu_q_ptr, cu_k_ptr, cu_p_ptr, kv_idx_ptr, qo_off_ptr,
    total_q, num_tiles_out, num_kv_idx, num_pages, sm_scale, qk_scale, v_scale,
    stride_qt, stride_qh, stride_kt, stride_kh, stride_ks, stride_vt, stride_vh, stride_vs, stride_ot, stride_oh,
    G: tl.constexpr, D: tl.constexpr, PAGE_SIZE: tl.constexpr, CAUSAL: tl.constexpr,
    OUTPUT_O: tl.constexpr, OUTPUT_MS: tl.constexpr,
    BLOCK_T: tl.constexpr, HEADS_P2: tl.constexpr, BLOCK_N: tl.constexpr, DOT_DTYPE: tl.constexpr,
):
    M: tl.constexpr = BLOCK_T * HEADS_P2
    pid_t = tl.program_id(0)
    b = tl.program_id(1)
    g = tl.program_id(2)
    q_start = tl.load(cu_q_ptr + b)
    q_len = tl.load(cu_q_ptr + b + 1) - q_start
    k_start = tl.load(cu_k_ptr + b)
    k_len = tl.load(cu_k_ptr + b + 1) - k_start
    page_base = tl.load(cu_p_ptr + b).to(tl.int64)
    qo_off = tl.load(qo_off_ptr + b)
    t0 = pid_t * BLOCK_T
    if t0 >= q_len:
        return

    rows = tl.arange(0, M)
    t_local = t0 + rows // HEADS_P2
    head = g * G + rows % HEADS_P2
    row_ok = (t_local < q_len) & (rows % HEADS_P2 < G)
    t_glob = (q_start + t_local).to(tl.int64)
    dims = tl.arange(0, D)
    q = tl.load(q_ptr + (t_glob * stride_qt + head * stride_qh)[:, None] + dims[None, :],
                mask=row_ok[:, None], other=0.0).to(DOT_DTYPE)

    n_tiles = tl.cdiv(k_len, 128)
    j_end = n_tiles
    if CAUSAL:
        last_pos = tl.minimum(t0 + BLOCK_T, q_len) - 1 + qo_off
        j_end = tl.where(last_pos >= 0, tl.minimum(n_tiles, last_pos // 128 + 1), 0)
    log2_scale = sm_scale * 1.4426950408889634
    m_i = tl.full([M], float("-inf"), tl.float32)
    l_i = tl.zeros([M], tl.float32)
    acc = tl.zeros([M, D], tl.float32)
    ms_row = head.to(tl.int64) * num_tiles_out * total_q + t_glob
    cols = tl.arange(0, BLOCK_N)
    for j in range(0, j_end):
        tile_max = tl.full([M], float("-inf"), tl.float32)
        for half in tl.static_range(128 // BLOCK_N):
            pos = j * 128 + half * BLOCK_N + cols
            k_off, key_ok = _kv_row_offsets(pos, k_start, page_base, kv_idx_ptr, num_kv_idx, num_pages, pos < k_len,
                                            stride_kt, stride_ks, PAGE_SIZE)
            k = tl.load(k_ptr + (k_off + g * stride_kh)[:, None] + dims[None, :], mask=key_ok[:, None], other=0.0)
            s = tl.dot(q, tl.trans(k.to(DOT_DTYPE))) * qk_scale
            visible = key_ok[None, :]
            if CAUSAL:
                visible = visible & (pos[None, :] <= (t_local + qo_off)[:, None])
            s = tl.where(visible, s, float("-inf"))
            tile_max = tl.maximum(tile_max, tl.max(s, axis=1))
            if OUTPUT_O:
                m_new = tl.maximum(m_i, tl.max(s, axis=1))
                m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
                p = tl.exp2((s - m_safe[:, None]) * log2_scale)
                alpha = tl.exp2((m_i - m_safe) * log2_scale)
                v_off, _ = _kv_row_offsets(pos, k_start, page_base, kv_idx_ptr, num_kv_idx, num_pages, pos < k_len,
                                           stride_vt, stride_vs, PAGE_SIZE)
                v = tl.load(v_ptr + (v_off + g * stride_vh)[:, None] + dims[None, :], mask=key_ok[:, None],
                            other=0.0)
                acc = acc * alpha[:, None] + tl.dot(p.to(DOT_DTYPE), v.to(DOT_DTYPE))
                l_i = l_i * alpha + tl.sum(p, axis=1)
                m_i = m_new
        if OUTPUT_MS:
            tl.store(ms_ptr + ms_row + j * total_q, tile_max, mask=row_ok)
    if OUTPUT_MS:
        for j in range(j_end, num_tiles_out):
            tl.store(ms_ptr + ms_row + j * total_q, tl.full([M], float("-inf"), tl.float32), mask=row_ok)
    if OUTPUT_O:
        out = acc * (v_scale / tl.where(l_i > 0, l_i, 1.0))[:, None]
        tl.store(o_ptr + (t_glob * stride_ot + head * stride_oh)[:, None] + dims[None, :],
                 out.to(o_ptr.dtype.element_ty), mask=row_ok[:, None])


def proxy_fmha_config(group_size):
    """(BLOCK_T, HEADS_P2, BLOCK_N, num_warps, num_stages): 64 rows, 64-key sub-tiles."""
    heads = heads_per_program(group_size)
    block_t = max(64 // heads, 1)
    return block_t, heads, 64, 4, 2


def launch_proxy_fmha(wrap, q, k, v, out, max_score, cu_q, cu_k, cu_p, kv_indices, qo_offset, max_seqlen_q,
                      page_size, causal, output_o, output_ms, sm_scale, qk_scale, v_scale, dot_dtype):
    """k, v: dense [total_k, Hkv, D] (page_size 0) or paged [P, Hkv, page_size, D]."""
    total_q, hq, d = q.shape
    hkv = k.shape[1]
    batch = cu_q.shape[0] - 1
    block_t, heads, block_n, warps, stages = proxy_fmha_config(hq // hkv)
    grid = (triton.cdiv(max(max_seqlen_q, 1), block_t), batch, hkv)
    slot_k = k.stride(2) if page_size else 0
    slot_v = v.stride(2) if page_size else 0
    wrap(proxy_fmha_kernel)[grid](
        q, k, v, out, max_score, cu_q, cu_k, cu_p, kv_indices, qo_offset,
        total_q, max_score.shape[1], kv_indices.shape[0], k.shape[0], sm_scale, qk_scale, v_scale,
        q.stride(0), q.stride(1), k.stride(0), k.stride(1), slot_k, v.stride(0), v.stride(1), slot_v,
        out.stride(0), out.stride(1),
        G=hq // hkv, D=d, PAGE_SIZE=page_size, CAUSAL=causal, OUTPUT_O=output_o, OUTPUT_MS=output_ms,
        BLOCK_T=block_t, HEADS_P2=heads, BLOCK_N=block_n, DOT_DTYPE=dot_dtype, num_warps=warps, num_stages=stages,
    )


# --------------------------------------------------------------------------- decode block scorer


@triton.jit
def decode_block_score_kernel(
    q_ptr, k_ptr, r2t_ptr, slot_ids_ptr, seq_lens_ptr, out_ptr,
    batch, max_blocks, r2t_width, num_slots, num_reqs, k_scale,
    stride_qb, stride_qh, stride_ks, stride_kh, stride_r2t,
    G: tl.constexpr, D: tl.constexpr, BLOCK_SIZE: tl.constexpr, BLOCK_N: tl.constexpr,
    BLOCKS_PER_PROG: tl.constexpr, HEADS_P2: tl.constexpr, DOT_DTYPE: tl.constexpr,
):
    """out [H, B, max_blocks]: block max of q·k over one request's token slots (-inf where none)."""
    b = tl.program_id(0)
    g = tl.program_id(1)
    chunk = tl.program_id(2)
    seq_len = tl.minimum(tl.load(seq_lens_ptr + b), r2t_width)
    req = tl.load(slot_ids_ptr + b).to(tl.int64)
    req_ok = (req >= 0) & (req < num_reqs)
    hh = tl.arange(0, HEADS_P2)
    head = g * G + hh
    head_ok = hh < G
    dims = tl.arange(0, D)
    q = tl.load(q_ptr + b.to(tl.int64) * stride_qb + head[:, None] * stride_qh + dims[None, :],
                mask=head_ok[:, None], other=0.0).to(DOT_DTYPE)
    cols = tl.arange(0, BLOCK_N)
    out_row = (head.to(tl.int64) * batch + b) * max_blocks
    for jj in range(BLOCKS_PER_PROG):
        j = chunk * BLOCKS_PER_PROG + jj
        best = tl.full([HEADS_P2], float("-inf"), tl.float32)
        for sub in tl.static_range(BLOCK_SIZE // BLOCK_N):
            pos = j * BLOCK_SIZE + sub * BLOCK_N + cols
            tok_ok = (pos < seq_len) & req_ok
            slot = tl.load(r2t_ptr + req * stride_r2t + pos, mask=tok_ok, other=-1).to(tl.int64)
            tok_ok = tok_ok & (slot >= 0) & (slot < num_slots)
            k = tl.load(k_ptr + (slot * stride_ks + g * stride_kh)[:, None] + dims[None, :],
                        mask=tok_ok[:, None], other=0.0)
            s = tl.dot(q, tl.trans(k.to(DOT_DTYPE))) * k_scale
            best = tl.maximum(best, tl.max(tl.where(tok_ok[None, :], s, float("-inf")), axis=1))
        tl.store(out_ptr + out_row + j, best, mask=head_ok & (j < max_blocks))


def decode_scorer_config(group_size, block_size, max_blocks, batch, hkv, num_sms):
    """(HEADS_P2, BLOCK_N, BLOCKS_PER_PROG, num_warps, num_stages).

    Memory bound: enough programs to fill the card ~4 times over, each streaming whole blocks.
    """
    heads = heads_per_program(group_size, min_rows=16)
    block_n = min(64, block_size)
    work = max(batch * hkv * max_blocks, 1)
    per_prog = 1
    while per_prog < 16 and work // (per_prog * 2) >= 4 * num_sms:
        per_prog *= 2
    return heads, block_n, per_prog, 4, 3


def launch_decode_block_scores(wrap, q, k_cache, req_to_token, slot_ids, seq_lens, out, block_size, k_scale,
                               dot_dtype, num_sms):
    batch, hq, d = q.shape
    hkv = k_cache.shape[1]
    max_blocks = out.shape[2]
    heads, block_n, per_prog, warps, stages = decode_scorer_config(
        hq // hkv, block_size, max_blocks, batch, hkv, num_sms)
    grid = (batch, hkv, triton.cdiv(max_blocks, per_prog))
    wrap(decode_block_score_kernel)[grid](
        q, k_cache, req_to_token, slot_ids, seq_lens, out,
        batch, max_blocks, req_to_token.shape[1], k_cache.shape[0], req_to_token.shape[0], k_scale,
        q.stride(0), q.stride(1), k_cache.stride(0), k_cache.stride(1), req_to_token.stride(0),
        G=hq // hkv, D=d, BLOCK_SIZE=block_size, BLOCK_N=block_n, BLOCKS_PER_PROG=per_prog, HEADS_P2=heads,
        DOT_DTYPE=dot_dtype, num_warps=warps, num_stages=stages,
    )


# --------------------------------------------------------------------------- compile gate


def gate_cases():
    cases = []
    ptr_i32 = "*i32"
    for fmt, group in (("mxfp4", 32), ("nvfp4", 16)):
        for preordered in (False, True):
            for g_size in (1, 4, 16):
                block_t, heads, warps, stages = fp4_scorer_config(g_size)
                sig = {
                    "q_ptr": "*u8", "k_ptr": "*u8", "qs_ptr": "*u8", "ks_ptr": "*u8",
                    "cu_q_ptr": ptr_i32, "cu_k_ptr": ptr_i32, "cu_p_ptr": ptr_i32, "kv_idx_ptr": ptr_i32,
                    "qo_off_ptr": ptr_i32, "out_ptr": "*fp32",
                    "total_q": "i32", "total_pages": "i32", "num_kv_idx": "i32", "num_blocks_out": "i32",
                    "q_row_tiles": "i32",
                }
                constexprs = dict(HQ=4 * g_size, HKV=4, G=g_size, HALF_D=64, GROUP=group, MXFP4=fmt == "mxfp4",
                                  PREORDERED=preordered, CAUSAL=True, HAS_QO_OFFSET=False,
                                  BLOCK_T=block_t, HEADS_P2=heads, DOT_DTYPE=tl.bfloat16)
                sig.update({k: "constexpr" for k in constexprs})
                tag = f"fp4_block_score[{fmt},{'pre' if preordered else 'pub'},G{g_size}]"
                cases.append(GateCase(tag, fp4_block_score_kernel, sig, constexprs, warps, stages))
    for dtype in ("bf16", "fp16", "fp8e4nv"):
        for d in (64, 128):
            for g_size in (1, 4, 16):
                for output_o in (True, False):
                    block_t, heads, block_n, warps, stages = proxy_fmha_config(g_size)
                    sig = {
                        "q_ptr": "*" + dtype, "k_ptr": "*" + dtype, "v_ptr": "*" + dtype,
                        "o_ptr": "*bf16" if dtype == "fp8e4nv" else "*" + dtype, "ms_ptr": "*fp32",
                        "cu_q_ptr": ptr_i32, "cu_k_ptr": ptr_i32, "cu_p_ptr": ptr_i32, "kv_idx_ptr": ptr_i32,
                        "qo_off_ptr": ptr_i32, "total_q": "i32", "num_tiles_out": "i32", "num_kv_idx": "i32",
                        "num_pages": "i32",
                        "sm_scale": "fp32", "qk_scale": "fp32", "v_scale": "fp32",
                    }
                    for name in ("stride_qt", "stride_qh", "stride_kt", "stride_kh", "stride_ks", "stride_vt",
                                 "stride_vh", "stride_vs", "stride_ot", "stride_oh"):
                        sig[name] = "i32"
                    constexprs = dict(G=g_size, D=d, PAGE_SIZE=64, CAUSAL=True, OUTPUT_O=output_o, OUTPUT_MS=True,
                                      BLOCK_T=block_t, HEADS_P2=heads, BLOCK_N=block_n,
                                      DOT_DTYPE=tl.float16 if dtype == "fp16" else tl.bfloat16)
                    sig.update({k: "constexpr" for k in constexprs})
                    tag = f"proxy_fmha[{dtype},D{d},G{g_size},{'o+ms' if output_o else 'ms'}]"
                    cases.append(GateCase(tag, proxy_fmha_kernel, sig, constexprs, warps, stages))
    for dtype in ("bf16", "fp16", "fp8e4nv"):
        for block_size in (64, 128):
            for per_prog in (1, 2, 4, 8, 16):
                heads, block_n, _, warps, stages = decode_scorer_config(4, block_size, 1, 1, 1, 1)
                sig = {
                    "q_ptr": "*fp16" if dtype == "fp16" else "*bf16", "k_ptr": "*" + dtype, "r2t_ptr": ptr_i32,
                    "slot_ids_ptr": "*i64", "seq_lens_ptr": ptr_i32, "out_ptr": "*fp32",
                    "batch": "i32", "max_blocks": "i32", "r2t_width": "i32", "num_slots": "i32", "num_reqs": "i32",
                    "k_scale": "fp32", "stride_qb": "i32", "stride_qh": "i32", "stride_ks": "i32",
                    "stride_kh": "i32", "stride_r2t": "i32",
                }
                constexprs = dict(G=4, D=128, BLOCK_SIZE=block_size, BLOCK_N=block_n, BLOCKS_PER_PROG=per_prog,
                                  HEADS_P2=heads, DOT_DTYPE=tl.float16 if dtype == "fp16" else tl.bfloat16)
                sig.update({k: "constexpr" for k in constexprs})
                tag = f"decode_block_score[{dtype},BS{block_size},P{per_prog}]"
                cases.append(GateCase(tag, decode_block_score_kernel, sig, constexprs, warps, stages))
    return cases
