"""Pieces shared by the prefill kernels: key addressing (dense or paged), K/V tile loads
(16-bit, FP8, in-register NVFP4 dequantisation), request extents and the online-softmax step."""
import triton
import triton.language as tl


@triton.jit
def _pow2(e):
    """2**e for small integer e, exact (built from the float32 exponent bits)."""
    return ((e + 127) << 23).to(tl.float32, bitcast=True)


@triton.jit
def _e2m1_to_f32(nib):
    mag = nib & 7
    e = mag >> 1
    m = (mag & 1).to(tl.float32)
    val = tl.where(e == 0, m * 0.5, (2.0 + m) * _pow2(e - 2))
    return tl.where((nib & 8) != 0, -val, val)


@triton.jit
def _e4m3_to_f32(bits):
    e = (bits >> 3) & 15
    m = (bits & 7).to(tl.float32)
    val = tl.where(e == 0, m * 0.001953125, (8.0 + m) * _pow2(e - 10))
    return tl.where((bits & 128) != 0, -val, val)


@triton.jit
def _dtype_fence(x, FENCE: tl.constexpr):
    """Identity on a 16-bit tile that hides where it came from from the compiler.

    Triton picks the mma operand packing (kWidth) from the narrowest load feeding a dot:
    an FP8/NVFP4 K/V tile would get kWidth=4, which permutes k inside each mma.sync and so
    changes the fp32 summation order. Behind this side-effecting identity every K/V dtype
    reaches the dots as the same 16-bit tile, so all of them run the BF16/FP16 path's
    instructions (FP8 -> BF16 upcast is bit exact). The CPU interpreter has no inline asm.
    """
    if FENCE:
        x = tl.inline_asm_elementwise("mov.b32 $0, $1;", "=r,r", [x], dtype=x.dtype,
                                      is_pure=False, pack=2)
    return x


@triton.jit
def _kv_tile(Ptr, Scale, row_off, scale_row, tmask, scale_tiles_n,
             D: tl.constexpr, NVFP4: tl.constexpr, CDT: tl.constexpr, FENCE: tl.constexpr):
    """[BLOCK_N, D] K or V tile in the compute dtype; masked rows are 0."""
    offs_d = tl.arange(0, D)
    if NVFP4:
        byte = tl.load(Ptr + row_off[:, None] + (offs_d // 2)[None, :], mask=tmask[:, None], other=0)
        nib = (byte.to(tl.int32) >> ((offs_d & 1) * 4)[None, :]) & 15
        c = offs_d // 16
        sc_off = (((scale_row // 128) * scale_tiles_n)[:, None] + (c // 4)[None, :]) * 512 \
            + ((scale_row % 32) * 16 + ((scale_row % 128) // 32) * 4)[:, None] + (c % 4)[None, :]
        sbits = tl.load(Scale + sc_off, mask=tmask[:, None], other=0).to(tl.int32)
        x = _e2m1_to_f32(nib) * _e4m3_to_f32(sbits)
    else:
        x = tl.load(Ptr + row_off[:, None] + offs_d[None, :], mask=tmask[:, None], other=0.0)
    return _dtype_fence(x.to(CDT), FENCE)


@triton.jit
def _key_offsets(t, tmask, bs, g, k0, PageTable, stride_pt, max_pages, num_pages, page_size, Hkv,
                 k_head, v_head, stride_k0, stride_ks, stride_v0, stride_vs, PAGED: tl.constexpr):
    """(K offsets, V offsets, NVFP4 scale rows, valid) of the keys t of request bs."""
    if PAGED:
        pidx = t // page_size
        page = tl.load(PageTable + bs.to(tl.int64) * stride_pt + pidx,
                       mask=tmask & (pidx < max_pages), other=-1)
        tmask = tmask & (page >= 0) & (page < num_pages)
        page = page.to(tl.int64)
        slot = (t % page_size).to(tl.int64)
        k_off = page * stride_k0 + k_head + slot * stride_ks
        v_off = page * stride_v0 + v_head + slot * stride_vs
        scale_row = (page * Hkv + g) * page_size + slot
    else:
        tok = k0 + t
        k_off = tok * stride_k0 + k_head
        v_off = tok * stride_v0 + v_head
        scale_row = tok * Hkv + g
    return k_off, v_off, scale_row, tmask


@triton.jit
def _softmax_step(s, m_i, l_i, mt_i, lt_i, inv_temperature, WRITE_TLSE: tl.constexpr):
    """One online-softmax step over masked log2-domain logits s [M, N].

    Returns (p, alpha, m, l, mt, lt): the tile's probabilities, the factor that rescales the
    running output, and the updated running max/sum (and those of s / temperature).
    """
    m_new = tl.maximum(m_i, tl.max(s, axis=1))
    m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
    alpha = tl.exp2(m_i - m_safe)
    p = tl.exp2(s - m_safe[:, None])
    l_i = l_i * alpha + tl.sum(p, axis=1)
    if WRITE_TLSE:
        st = s * inv_temperature
        mt_new = tl.maximum(mt_i, tl.max(st, axis=1))
        mt_safe = tl.where(mt_new == float("-inf"), 0.0, mt_new)
        lt_i = lt_i * tl.exp2(mt_i - mt_safe) + tl.sum(tl.exp2(st - mt_safe[:, None]), axis=1)
        mt_i = mt_new
    return p, alpha, m_new, l_i, mt_i, lt_i


@triton.jit
def _request_extent(b, CuQ, CuK, SeqUsed, has_seqused, PAGED: tl.constexpr):
    """(first query row, query count, first key row, visible key count) of request b.

    Paged requests take their key count from seqused_k when given; dense ones are trimmed by it.
    """
    q0 = tl.load(CuQ + b)
    lq = tl.load(CuQ + b + 1) - q0
    k0 = tl.load(CuK + b).to(tl.int64)
    lk = tl.load(CuK + b + 1) - tl.load(CuK + b)
    if has_seqused != 0:
        used = tl.load(SeqUsed + b)
        if PAGED:
            lk = used
        else:
            lk = tl.minimum(lk, used)
    return q0, lq, k0, tl.maximum(lk, 0)
