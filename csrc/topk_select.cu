// Block top-k selection: sparse_topk_select ([H, K, T] -> [T, H, topk], ascending ids) and
// native_topk_from_scores ([heads, batch, blocks] -> [heads, batch, topk], best first).
//
// Each row is streamed once. A warp keeps a shared-memory buffer of candidate keys that
// beat the current k-th best ("floor"); when the buffer fills it is bitonic-sorted and cut
// back to the best `need`, which raises the floor. A key packs the order-preserving bits of
// the score above the complemented block id, so one unsigned compare ranks by (score desc,
// id asc) and no two keys tie. NaN and -inf scores never become keys.
#include "common.cuh"

#include <climits>
#include <cmath>

namespace msa {
namespace {

constexpr int kMaxTopk = 64;
constexpr int kBufCap = 256;  // candidate keys a warp holds between cuts (power of two)
constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;

__device__ __forceinline__ uint64_t rank_key(float score, int block) {
  uint32_t bits = __float_as_uint(score);
  if ((bits << 1) == 0) bits = 0;  // -0.0 ties +0.0 (as in the reference), so the lower id must win
  bits = (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
  return (static_cast<uint64_t>(bits) << 32) | (0xffffffffu - static_cast<uint32_t>(block));
}

__device__ __forceinline__ int key_block(uint64_t key) {
  return static_cast<int>(0xffffffffu - static_cast<uint32_t>(key));
}

__device__ __forceinline__ bool selectable(float v) { return !isnan(v) && v != -INFINITY; }

// Smallest power of two >= max(n, 2): bitonic sorts only need to cover the filled part of a buffer.
__device__ __forceinline__ int pow2_at_least(int n) { return n <= 2 ? 2 : 1 << (32 - __clz(n - 1)); }

// Warp-cooperative running top-`need` (all fields warp-uniform; every lane calls every method).
struct WarpSelector {
  uint64_t* buf;
  int count;
  int need;
  uint64_t floor_key;  // a key must exceed this to enter

  __device__ void init(uint64_t* b, int n) {
    buf = b;
    count = 0;
    need = n;
    floor_key = 0;
  }

  // Descending bitonic sort of buf[0, n) (n a power of two); entries past `count` become 0.
  __device__ void sort_desc(int n, int lane) {
    for (int i = count + lane; i < n; i += 32) buf[i] = 0;
    __syncwarp();
    for (int size = 2; size <= n; size <<= 1) {
      for (int stride = size >> 1; stride > 0; stride >>= 1) {
        for (int i = lane; i < n / 2; i += 32) {
          const int lo = 2 * i - (i & (stride - 1));
          const int hi = lo + stride;
          const bool desc = (lo & size) == 0;
          const uint64_t a = buf[lo];
          const uint64_t b = buf[hi];
          if ((a < b) == desc) {
            buf[lo] = b;
            buf[hi] = a;
          }
        }
        __syncwarp();
      }
    }
  }

  __device__ void cut(int lane) {
    sort_desc(pow2_at_least(count), lane);
    if (count > need) count = need;
    if (count == need && need > 0) floor_key = buf[need - 1];
  }

  // Each lane offers one key (0 = none).
  __device__ void offer(uint64_t key, int lane) {
    unsigned take = __ballot_sync(kFullMask, key > floor_key);
    if (take == 0) return;
    if (count + __popc(take) > kBufCap) {
      cut(lane);
      take = __ballot_sync(kFullMask, key > floor_key);
      if (take == 0) return;
    }
    if (key > floor_key) buf[count + __popc(take & lanemask_lt())] = key;
    count += __popc(take);
    __syncwarp();
  }

  // Leaves the winners' block ids ascending in buf[0, count) as complemented keys.
  __device__ void winners_by_id(int lane) {
    cut(lane);
    for (int i = lane; i < count; i += 32) buf[i] = 0xffffffffu - static_cast<uint32_t>(key_block(buf[i]));
    __syncwarp();
    sort_desc(pow2_at_least(count), lane);
  }
};

// One CTA = one head x kWarps consecutive tokens, one warp per token. The CTA stages
// [kChunk blocks x kWarps tokens] tiles so each block row is one contiguous 32-byte read.
constexpr int kChunk = 256;
constexpr int kTileStride = kWarps + 1;  // padding keeps the per-warp column reads conflict-free
constexpr int kLoadsPerThread = kChunk * kWarps / kThreads;

__global__ void __launch_bounds__(kThreads) sparse_topk_select_kernel(
    const float* __restrict__ score, const int* __restrict__ nvp_per_token, int nvp_all, int num_heads,
    int num_blocks, int num_tokens, int topk, int force_begin, int force_end, int* __restrict__ out) {
  __shared__ float tile[kChunk * kTileStride];
  __shared__ uint64_t bufs[kWarps][kBufCap];
  __shared__ int tile_begin;
  __shared__ int tile_end;

  const int warp = threadIdx.x >> 5;
  const int lane = threadIdx.x & 31;
  const int head = blockIdx.y;
  const int t0 = blockIdx.x * kWarps;
  const int token = t0 + warp;
  const bool live = token < num_tokens;

  int nvp = live ? (nvp_per_token != nullptr ? nvp_per_token[token] : nvp_all) : 0;
  nvp = min(max(nvp, 0), num_blocks);
  const int begin_end = min(force_begin, nvp);              // forced [0, begin_end)
  const int end_start = max(nvp - force_end, begin_end);    // forced [end_start, nvp)
  const int need = live ? topk - begin_end - (nvp - end_start) : 0;

  if (threadIdx.x == 0) {
    tile_begin = INT_MAX;
    tile_end = 0;
  }
  __syncthreads();
  if (lane == 0 && need > 0 && end_start > begin_end) {
    atomicMin(&tile_begin, begin_end);
    atomicMax(&tile_end, end_start);
  }
  __syncthreads();
  const int kb = tile_begin;
  const int ke = tile_end;

  WarpSelector sel;
  sel.init(bufs[warp], need);
  const int64_t head_base = static_cast<int64_t>(head) * num_blocks * num_tokens;

  float staged[kLoadsPerThread];
  auto load_chunk = [&](int k0) {
#pragma unroll
    for (int i = 0; i < kLoadsPerThread; ++i) {
      const int e = threadIdx.x + i * kThreads;
      const int blk = k0 + e / kWarps;
      const int tok = t0 + e % kWarps;
      staged[i] = (blk < ke && tok < num_tokens)
                      ? __ldg(score + head_base + static_cast<int64_t>(blk) * num_tokens + tok)
                      : -INFINITY;
    }
  };

  if (kb < ke) load_chunk(kb);
  for (int k0 = kb; k0 < ke; k0 += kChunk) {
#pragma unroll
    for (int i = 0; i < kLoadsPerThread; ++i) {
      const int e = threadIdx.x + i * kThreads;
      tile[(e / kWarps) * kTileStride + e % kWarps] = staged[i];
    }
    __syncthreads();
    if (k0 + kChunk < ke) load_chunk(k0 + kChunk);  // in flight while this tile is ranked
    if (need > 0) {
#pragma unroll 1
      for (int s = 0; s < kChunk / 32; ++s) {
        const int kk = s * 32 + lane;
        const int blk = k0 + kk;
        const float v = tile[kk * kTileStride + warp];
        const bool cand = blk >= begin_end && blk < end_start && selectable(v);
        sel.offer(cand ? rank_key(v, blk) : 0, lane);
      }
    }
    __syncthreads();
  }
  if (!live) return;

  int n_sel = 0;
  if (need > 0) {
    sel.winners_by_id(lane);
    n_sel = sel.count;
  }
  const int n_end = nvp - end_start;
  int* row = out + (static_cast<int64_t>(token) * num_heads + head) * topk;
  for (int p = lane; p < topk; p += 32) {
    int v = -1;
    if (p < begin_end) {
      v = p;
    } else if (p < begin_end + n_sel) {
      v = static_cast<int>(0xffffffffu - static_cast<uint32_t>(sel.buf[p - begin_end]));
    } else if (p < begin_end + n_sel + n_end) {
      v = end_start + (p - begin_end - n_sel);
    }
    row[p] = v;
  }
}

// One CTA per (head, request) row.
//
// Rows of up to kThreads * kPer blocks are ranked from registers: every thread loads its share at
// once, the topk-th largest per-thread maximum is a floor that at least topk keys reach, the keys
// at or above it are compacted to shared memory and each one's output slot is its rank among them
// (typically ~topk candidates, so the ranking is short). Longer rows, or the rare layouts where too
// many keys pass the floor, stream through per-warp selectors that warp 0 merges.
constexpr int kRowUnroll = 4;
// kPer (blocks per thread) is a template argument picked from the row length: the register path is
// fully unrolled, so with kPer = 32 alone every row ran ~25 KB of straight-line code, fetched into an
// instruction cache that is cold at each launch. H200, graph-replayed: 10.5 -> 4.9 us per call for
// the decode indexer's rows (4 x 1024 and 64 x 256 blocks) with kPer = 4.
constexpr int kSmallPer = 4;
constexpr int kLargePer = 32;
constexpr int kCandidateCap = 512;
static_assert(kThreads + kCandidateCap <= kWarps * kBufCap, "lane maxima and candidates share the buffers");

// Block-wide exclusive scan of one int per thread; `total` gets the sum.
__device__ __forceinline__ int block_exclusive_scan(int v, int* warp_sums, int& total) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  int incl = v;
#pragma unroll
  for (int d = 1; d < 32; d <<= 1) {
    const int up = __shfl_up_sync(kFullMask, incl, d);
    if (lane >= d) incl += up;
  }
  if (lane == 31) warp_sums[warp] = incl;
  __syncthreads();
  int before = 0;
  total = 0;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) {
    const int s = warp_sums[w];
    if (w < warp) before += s;
    total += s;
  }
  return before + incl - v;
}

// Returns false (block-uniformly) when too many keys pass the floor; nothing is written then.
template <int kPer>
__device__ bool topk_from_registers(const float* __restrict__ src, int nb, int topk, uint64_t* smem,
                                    int* warp_sums, uint64_t* floor_slot, int* __restrict__ dst) {
  const int tid = threadIdx.x;
  float v[kPer];
#pragma unroll
  for (int i = 0; i < kPer; ++i) {
    const int blk = i * kThreads + tid;
    v[i] = blk < nb ? __ldg(src + blk) : -INFINITY;
  }
  uint64_t best = 0;
#pragma unroll
  for (int i = 0; i < kPer; ++i) {
    if (selectable(v[i])) best = max(best, rank_key(v[i], i * kThreads + tid));
  }
  uint64_t* thread_best = smem;
  uint64_t* cand = smem + kThreads;
  thread_best[tid] = best;
  if (tid == 0) *floor_slot = 0;
  __syncthreads();
  // Keys are unique, so exactly one thread holds the topk-th largest maximum (if topk threads have one).
  int greater = 0;
#pragma unroll 8
  for (int j = 0; j < kThreads; ++j) greater += thread_best[j] > best;
  if (best != 0 && greater == topk - 1) *floor_slot = best;
  __syncthreads();
  const uint64_t floor_key = *floor_slot;

  int mine = 0;
#pragma unroll
  for (int i = 0; i < kPer; ++i) {
    mine += selectable(v[i]) && rank_key(v[i], i * kThreads + tid) >= floor_key;
  }
  int total;
  int pos = block_exclusive_scan(mine, warp_sums, total);
  if (total > kCandidateCap) return false;
  if (mine > 0) {
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      const uint64_t key = selectable(v[i]) ? rank_key(v[i], i * kThreads + tid) : 0;
      if (key != 0 && key >= floor_key) cand[pos++] = key;
    }
  }
  __syncthreads();
  for (int c = tid; c < total; c += kThreads) {
    const uint64_t key = cand[c];
    int rank = 0;
    for (int j = 0; j < total; ++j) rank += cand[j] > key;
    if (rank < topk) dst[rank] = key_block(key);
  }
  for (int p = total + tid; p < topk; p += kThreads) dst[p] = -1;
  return true;
}

template <typename LenT, int kPer>
__global__ void __launch_bounds__(kThreads, 1) topk_from_scores_kernel(const float* __restrict__ score,
                                                                    const LenT* __restrict__ seq_lens, int batch,
                                                                    int max_blocks, int64_t block_size, int topk,
                                                                    int* __restrict__ out) {
  __shared__ uint64_t bufs[kWarps][kBufCap];
  __shared__ int counts[kWarps];
  __shared__ uint64_t floor_slot;

  const int warp = threadIdx.x >> 5;
  const int lane = threadIdx.x & 31;
  const int64_t row = blockIdx.x;
  const int b = static_cast<int>(row % batch);
  const int64_t len = max(static_cast<int64_t>(seq_lens[b]), static_cast<int64_t>(0));
  const int nb = static_cast<int>(min((len + block_size - 1) / block_size, static_cast<int64_t>(max_blocks)));
  const float* src = score + row * max_blocks;
  int* dst = out + row * topk;

  if (nb <= kThreads * kPer) {
    if (topk_from_registers<kPer>(src, nb, topk, &bufs[0][0], counts, &floor_slot, dst)) return;
    __syncthreads();  // the buffers are reused below
  }

  WarpSelector sel;
  sel.init(bufs[warp], topk);
  for (int base = warp * 32 + lane; base - lane < nb; base += kThreads * kRowUnroll) {
    float v[kRowUnroll];
#pragma unroll
    for (int u = 0; u < kRowUnroll; ++u) {
      const int blk = base + u * kThreads;
      v[u] = blk < nb ? __ldg(src + blk) : -INFINITY;
    }
#pragma unroll
    for (int u = 0; u < kRowUnroll; ++u) {
      const int blk = base + u * kThreads;
      sel.offer(selectable(v[u]) ? rank_key(v[u], blk) : 0, lane);
    }
  }
  sel.cut(lane);
  if (lane == 0) counts[warp] = sel.count;
  __syncthreads();
  if (warp != 0) return;
  for (int w = 1; w < kWarps; ++w) {
    for (int i = 0; i < counts[w]; i += 32) {
      sel.offer(i + lane < counts[w] ? bufs[w][i + lane] : 0, lane);
    }
  }
  sel.cut(lane);
  for (int p = lane; p < topk; p += 32) dst[p] = p < sel.count ? key_block(sel.buf[p]) : -1;
}

}  // namespace

void sparse_topk_select(const at::Tensor& max_score, const c10::optional<at::Tensor>& num_valid_pages,
                        int64_t default_num_valid_pages, int64_t force_begin_blocks, int64_t force_end_blocks,
                        at::Tensor& out) {
  check_cuda(max_score, "max_score");
  check_dtype(max_score, "max_score", at::kFloat);
  MSA_CHECK(max_score.dim() == 3 && max_score.is_contiguous(), "max_score must be a contiguous [H, K, T] tensor");
  const int64_t heads = max_score.size(0), blocks = max_score.size(1), tokens = max_score.size(2);
  MSA_CHECK(out.dim() == 3 && out.size(0) == tokens && out.size(1) == heads && out.is_contiguous(),
            "out must be a contiguous [T, H, topk] tensor");
  check_dtype(out, "out", at::kInt);
  check_same_device(max_score, out, "out");
  const int64_t topk = out.size(2);
  MSA_CHECK(topk >= 1 && topk <= kMaxTopk, "topk must be in [1, ", kMaxTopk, "]");
  MSA_CHECK(force_begin_blocks >= 0 && force_end_blocks >= 0 && force_begin_blocks + force_end_blocks <= topk,
            "force_begin_blocks + force_end_blocks must be in [0, topk]");
  MSA_CHECK(blocks < INT_MAX && tokens < INT_MAX, "max_score is too large");
  const int* nvp_ptr = nullptr;
  if (num_valid_pages.has_value()) {
    const at::Tensor& nvp = *num_valid_pages;
    check_dtype(nvp, "num_valid_pages", at::kInt);
    check_same_device(max_score, nvp, "num_valid_pages");
    MSA_CHECK(nvp.dim() == 1 && nvp.size(0) == tokens && nvp.is_contiguous(), "num_valid_pages must be [T]");
    nvp_ptr = nvp.data_ptr<int>();
  }
  if (tokens == 0 || heads == 0) return;
  const int nvp_all = static_cast<int>(std::min<int64_t>(std::max<int64_t>(default_num_valid_pages, 0), blocks));
  const c10::cuda::CUDAGuard guard(max_score.device());
  const dim3 grid(static_cast<unsigned>(ceil_div(tokens, kWarps)), static_cast<unsigned>(heads));
  sparse_topk_select_kernel<<<grid, kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
      max_score.data_ptr<float>(), nvp_ptr, nvp_all, static_cast<int>(heads), static_cast<int>(blocks),
      static_cast<int>(tokens), static_cast<int>(topk), static_cast<int>(force_begin_blocks),
      static_cast<int>(force_end_blocks), out.data_ptr<int>());
  check_launch();
}

void native_topk_from_scores(const at::Tensor& score, const at::Tensor& seq_lens, int64_t block_size,
                             at::Tensor& out) {
  check_cuda(score, "score");
  check_dtype(score, "score", at::kFloat);
  MSA_CHECK(score.dim() == 3 && score.is_contiguous(), "score must be a contiguous [heads, batch, max_blocks] tensor");
  const int64_t heads = score.size(0), batch = score.size(1), max_blocks = score.size(2);
  MSA_CHECK(seq_lens.dim() == 1 && seq_lens.size(0) == batch && seq_lens.is_contiguous(), "seq_lens must be [batch]");
  MSA_CHECK(seq_lens.scalar_type() == at::kInt || seq_lens.scalar_type() == at::kLong,
            "seq_lens must be int32 or int64");
  check_same_device(score, seq_lens, "seq_lens");
  MSA_CHECK(out.dim() == 3 && out.size(0) == heads && out.size(1) == batch && out.is_contiguous(),
            "out must be a contiguous [heads, batch, topk] tensor");
  check_dtype(out, "out", at::kInt);
  check_same_device(score, out, "out");
  const int64_t topk = out.size(2);
  MSA_CHECK(topk >= 1 && topk <= kMaxTopk, "topk must be in [1, ", kMaxTopk, "]");
  MSA_CHECK(block_size >= 1, "block_size must be >= 1");
  MSA_CHECK(max_blocks < INT_MAX, "score has too many blocks");
  const int64_t rows = heads * batch;
  if (rows == 0) return;
  const c10::cuda::CUDAGuard guard(score.device());
  auto stream = c10::cuda::getCurrentCUDAStream();
  const bool small = max_blocks <= kThreads * kSmallPer;
  const auto launch = [&](auto kernel, const auto* lens) {
    kernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(score.data_ptr<float>(), lens, static_cast<int>(batch),
                                                                 static_cast<int>(max_blocks), block_size,
                                                                 static_cast<int>(topk), out.data_ptr<int>());
  };
  if (seq_lens.scalar_type() == at::kInt) {
    const int* lens = seq_lens.data_ptr<int>();
    small ? launch(topk_from_scores_kernel<int, kSmallPer>, lens) : launch(topk_from_scores_kernel<int, kLargePer>, lens);
  } else {
    const int64_t* lens = seq_lens.data_ptr<int64_t>();
    small ? launch(topk_from_scores_kernel<int64_t, kSmallPer>, lens)
          : launch(topk_from_scores_kernel<int64_t, kLargePer>, lens);
  }
  check_launch();
}

}  // namespace msa
