// q2k -> k2q CSR builder (contract §2.2), deterministic and free of host syncs.
//
//   1. row map: S[j] = sum_b min(nb[b], j) for j <= R, and the (request, block) of each row.
//   2. count:   one thread per (head, query) dedupes its ids, maps each to a row
//               (S[j] + rank of b among the rows of block j) and counts it (warp-aggregated atomics).
//   3. scan:    row_ptr = exclusive scan of the counts; the counts become fill cursors.
//   4. fill:    the same walk places `q_local | slot << 24` at cursor positions (unordered).
//   5. order:   one CTA per (head, row) puts its segment in ascending query order: small segments by
//               ranking in shared memory, large ones through a windowed bitmap of query ids.
//   6. tail:    entries past row_ptr[g, R] become -1.
#include "common.cuh"

#include <climits>

namespace msa {
namespace {

constexpr int kMaxCsrTopk = 64;  // a query's dedupe flags live in one 64-bit mask
constexpr int kEdgeThreads = 128;
constexpr int kScanThreads = 1024;
constexpr int kSortThreads = 256;
constexpr int kWindow = 32768;  // query ids ordered per pass of the bitmap sort
constexpr int kWindowWords = kWindow / 32;
constexpr int kWordsPerThread = kWindowWords / kSortThreads;
constexpr int kQueryBits = 24;
constexpr int kQueryMask = (1 << kQueryBits) - 1;

__device__ __forceinline__ int blocks_of(const int* cu_k, int b, int blk) {
  const int len = max(__ldg(cu_k + b + 1) - __ldg(cu_k + b), 0);
  return static_cast<int>((static_cast<int64_t>(len) + blk - 1) / blk);
}

// sum_b min(nb[b], j), saturated: every row id of block j is >= this.
__device__ int rows_before_block(const int* cu_k, int batch, int blk, int j) {
  int64_t s = 0;
  for (int b = 0; b < batch; ++b) s += min(blocks_of(cu_k, b, blk), j);
  return static_cast<int>(min(s, static_cast<int64_t>(INT_MAX)));
}

__global__ void row_map_kernel(const int* __restrict__ cu_k, int batch, int blk, int num_rows,
                               int* __restrict__ rows_before, int* __restrict__ row_request,
                               int* __restrict__ row_block) {
  const int r = blockIdx.x * blockDim.x + threadIdx.x;
  if (r > num_rows) return;
  rows_before[r] = rows_before_block(cu_k, batch, blk, r);
  if (r == num_rows) return;
  int request = -1;
  int block = -1;
  // Rows of blocks >= num_rows are >= num_rows, so row r < num_rows lies below S[num_rows] unless padding.
  if (r < rows_before_block(cu_k, batch, blk, num_rows)) {
    int lo = 0, hi = num_rows - 1;  // largest j with S[j] <= r
    while (lo < hi) {
      const int mid = (lo + hi + 1) >> 1;
      if (rows_before_block(cu_k, batch, blk, mid) <= r) lo = mid; else hi = mid - 1;
    }
    int rank = r - rows_before_block(cu_k, batch, blk, lo);
    for (int b = 0; b < batch; ++b) {
      if (blocks_of(cu_k, b, blk) > lo && rank-- == 0) {
        request = b;
        block = lo;
        break;
      }
    }
  }
  row_request[r] = request;
  row_block[r] = block;
}

// Largest b with cu_q[b] <= t, or -1 when t lies outside every request.
__device__ int request_of(const int* cu_q, int batch, int t) {
  int lo = 0, hi = batch;  // search cu_q[0..batch]
  if (t < __ldg(cu_q)) return -1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) >> 1;
    if (__ldg(cu_q + mid) <= t) lo = mid; else hi = mid - 1;
  }
  return lo < batch ? lo : -1;
}

// Row of (request b, block j), or -1 when it is not below num_rows.
__device__ int row_of(const int* rows_before, const int* row_request, int num_rows, int b, int j) {
  if (j >= num_rows) return -1;
  int lo = __ldg(rows_before + j);
  int hi = min(__ldg(rows_before + j + 1), num_rows);  // rows of block j hold ascending requests
  while (lo < hi) {
    const int mid = (lo + hi) >> 1;
    if (__ldg(row_request + mid) < b) lo = mid + 1; else hi = mid;
  }
  return (lo < min(__ldg(rows_before + j + 1), num_rows) && __ldg(row_request + lo) == b) ? lo : -1;
}

// kFill = false: count edges per row and write split_counts. kFill = true: place the edges.
template <bool kFill>
__global__ void __launch_bounds__(kEdgeThreads) edge_kernel(
    const int* __restrict__ q2k, int64_t stride_head, int64_t stride_query, int64_t stride_slot,
    const int* __restrict__ cu_q, const int* __restrict__ cu_k, int batch, int blk, int num_rows,
    int num_heads, int total_q, int topk, const int* __restrict__ rows_before, const int* __restrict__ row_request,
    int* __restrict__ row_counter, int* __restrict__ split_counts, int* __restrict__ edges, int64_t capacity) {
  extern __shared__ int ids_smem[];
  const int head = blockIdx.y;
  const int t0 = blockIdx.x * kEdgeThreads;
  const int stride = topk + 1;  // odd row pitch: per-thread row reads avoid bank conflicts
  for (int e = threadIdx.x; e < kEdgeThreads * topk; e += kEdgeThreads) {
    const int tt = e / topk, kk = e % topk;
    const int t = t0 + tt;
    ids_smem[tt * stride + kk] =
        t < total_q ? __ldg(q2k + head * stride_head + t * stride_query + kk * stride_slot) : -1;
  }
  __syncthreads();

  const int t = t0 + threadIdx.x;
  const int* ids = ids_smem + threadIdx.x * stride;
  const int b = t < total_q ? request_of(cu_q, batch, t) : -1;
  const int nb = b >= 0 ? blocks_of(cu_k, b, blk) : 0;
  const int q_local = b >= 0 ? t - __ldg(cu_q + b) : 0;

  uint64_t first_mask = 0;  // valid ids that do not repeat an earlier slot
  for (int k = 0; k < topk; ++k) {
    const int id = ids[k];
    bool first = id >= 0 && id < nb;
    for (int k2 = 0; first && k2 < k; ++k2) first = ids[k2] != id;
    if (first) first_mask |= 1ull << k;
  }

  const unsigned lane_lt = lanemask_lt();
  const int lane = threadIdx.x & 31;
  int kept = 0;
  for (int k = 0; k < topk; ++k) {
    int row = -1;
    int slot = 0;
    if ((first_mask >> k) & 1ull) {
      const int id = ids[k];
      row = row_of(rows_before, row_request, num_rows, b, id);
      for (int k2 = 0; k2 < topk; ++k2) slot += ((first_mask >> k2) & 1ull) && ids[k2] < id;
    }
    // Lanes hitting the same row share one atomic.
    const unsigned same = __match_any_sync(kFullMask, row);
    const int leader = __ffs(same) - 1;
    int base = 0;
    if (row >= 0 && lane == leader) {
      base = atomicAdd(row_counter + static_cast<int64_t>(head) * num_rows + row, __popc(same));
    }
    base = __shfl_sync(kFullMask, base, leader);
    if (row >= 0) {
      ++kept;
      if (kFill) {
        const int pos = base + __popc(same & lane_lt);
        edges[head * capacity + pos] = q_local | (slot << kQueryBits);
      }
    }
  }
  if (!kFill && t < total_q) split_counts[static_cast<int64_t>(t) * num_heads + head] = kept;
}

// One CTA per head: row_ptr[g] = exclusive scan of counts; counts become the fill cursors.
__global__ void __launch_bounds__(kScanThreads) scan_kernel(int* __restrict__ counts, int num_rows,
                                                            int* __restrict__ row_ptr) {
  __shared__ int warp_sums[kScanThreads / 32];
  const int head = blockIdx.x;
  int* cnt = counts + static_cast<int64_t>(head) * num_rows;
  int* ptr = row_ptr + static_cast<int64_t>(head) * (num_rows + 1);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  int carry = 0;
  if (threadIdx.x == 0) ptr[0] = 0;
  for (int base = 0; base < num_rows; base += kScanThreads) {
    const int r = base + threadIdx.x;
    const int v = r < num_rows ? cnt[r] : 0;
    int incl = v;
    for (int d = 1; d < 32; d <<= 1) {
      const int up = __shfl_up_sync(kFullMask, incl, d);
      if (lane >= d) incl += up;
    }
    if (lane == 31) warp_sums[warp] = incl;
    __syncthreads();
    if (warp == 0) {
      int s = warp_sums[lane];
      for (int d = 1; d < 32; d <<= 1) {
        const int up = __shfl_up_sync(kFullMask, s, d);
        if (lane >= d) s += up;
      }
      warp_sums[lane] = s;  // inclusive over warps
    }
    __syncthreads();
    incl += carry + (warp > 0 ? warp_sums[warp - 1] : 0);
    if (r < num_rows) {
      ptr[r + 1] = incl;
      cnt[r] = incl - v;
    }
    carry += warp_sums[kScanThreads / 32 - 1];
    __syncthreads();
  }
}

// Block-wide exclusive scan of one int per thread; also returns the total.
__device__ int block_exclusive_scan(int v, int* warp_sums, int& total) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  int incl = v;
  for (int d = 1; d < 32; d <<= 1) {
    const int up = __shfl_up_sync(kFullMask, incl, d);
    if (lane >= d) incl += up;
  }
  if (lane == 31) warp_sums[warp] = incl;
  __syncthreads();
  int before = 0;
  total = 0;
  for (int w = 0; w < kSortThreads / 32; ++w) {
    const int s = warp_sums[w];
    if (w < warp) before += s;
    total += s;
  }
  __syncthreads();
  return before + incl - v;
}

// Several independent loads per thread keep long segments from being latency bound.
constexpr int kSortUnroll = 8;

__device__ __forceinline__ void load_segment_batch(const int* src, int n, int i0, int (&v)[kSortUnroll]) {
#pragma unroll
  for (int u = 0; u < kSortUnroll; ++u) {
    const int i = i0 + u * kSortThreads + static_cast<int>(threadIdx.x);
    v[u] = i < n ? __ldg(src + i) : -1;  // packed entries are non-negative
  }
}

__global__ void __launch_bounds__(kSortThreads) order_rows_kernel(const int* __restrict__ row_ptr, int num_rows,
                                                                 const int* __restrict__ edges, int64_t capacity,
                                                                 int* __restrict__ q_indices,
                                                                 int* __restrict__ qsplit) {
  __shared__ uint32_t bits[kWindowWords];
  __shared__ uint8_t slots[kWindow];
  __shared__ int warp_sums[kSortThreads / 32];
  __shared__ int span[2];
  const int row = blockIdx.x;
  const int head = blockIdx.y;
  const int* ptr = row_ptr + static_cast<int64_t>(head) * (num_rows + 1);
  const int begin = ptr[row];
  const int n = ptr[row + 1] - begin;
  if (n <= 0) return;
  const int* src = edges + head * capacity + begin;
  int* dst_q = q_indices + head * capacity + begin;
  int* dst_s = qsplit + head * capacity + begin;

  if (n <= kSortThreads) {
    // Query ids in a row are distinct: an entry's position is how many entries are smaller.
    int* vals = reinterpret_cast<int*>(bits);
    const int v = threadIdx.x < n ? src[threadIdx.x] : 0;
    if (threadIdx.x < n) vals[threadIdx.x] = v;
    __syncthreads();
    if (threadIdx.x < n) {
      const int q = v & kQueryMask;
      int rank = 0;
      for (int i = 0; i < n; ++i) rank += (vals[i] & kQueryMask) < q;
      dst_q[rank] = q;
      dst_s[rank] = v;
    }
    return;
  }

  if (threadIdx.x == 0) {
    span[0] = INT_MAX;
    span[1] = 0;
  }
  __syncthreads();
  int lo = INT_MAX, hi = 0;
  for (int i0 = 0; i0 < n; i0 += kSortThreads * kSortUnroll) {
    int v[kSortUnroll];
    load_segment_batch(src, n, i0, v);
#pragma unroll
    for (int u = 0; u < kSortUnroll; ++u) {
      if (v[u] >= 0) {
        lo = min(lo, v[u] & kQueryMask);
        hi = max(hi, v[u] & kQueryMask);
      }
    }
  }
  atomicMin(&span[0], lo);
  atomicMax(&span[1], hi);
  __syncthreads();
  const int q_first = span[0], q_last = span[1];

  int done = 0;
  for (int w0 = q_first; w0 <= q_last && done < n; w0 += kWindow) {
    for (int i = threadIdx.x; i < kWindowWords; i += kSortThreads) bits[i] = 0;
    __syncthreads();
    for (int i0 = 0; i0 < n; i0 += kSortThreads * kSortUnroll) {
      int v[kSortUnroll];
      load_segment_batch(src, n, i0, v);
#pragma unroll
      for (int u = 0; u < kSortUnroll; ++u) {
        const int off = (v[u] & kQueryMask) - w0;
        if (v[u] >= 0 && off >= 0 && off < kWindow) {
          atomicOr(bits + (off >> 5), 1u << (off & 31));
          slots[off] = static_cast<uint8_t>(static_cast<uint32_t>(v[u]) >> kQueryBits);
        }
      }
    }
    __syncthreads();
    const int word0 = threadIdx.x * kWordsPerThread;
    int mine = 0;
#pragma unroll
    for (int i = 0; i < kWordsPerThread; ++i) mine += __popc(bits[word0 + i]);
    int total;
    int pos = done + block_exclusive_scan(mine, warp_sums, total);
#pragma unroll 1
    for (int i = 0; i < kWordsPerThread; ++i) {
      uint32_t word = bits[word0 + i];
      while (word) {
        const int bit = __ffs(word) - 1;
        word &= word - 1;
        const int off = (word0 + i) * 32 + bit;
        const int q = w0 + off;
        dst_q[pos] = q;
        dst_s[pos] = q | (static_cast<int>(slots[off]) << kQueryBits);
        ++pos;
      }
    }
    done += total;
    __syncthreads();
  }
}

__global__ void tail_kernel(const int* __restrict__ row_ptr, int num_rows, int num_heads, int64_t capacity,
                            int* __restrict__ q_indices, int* __restrict__ qsplit) {
  const int64_t total = static_cast<int64_t>(num_heads) * capacity;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t head = i / capacity;
    if (i - head * capacity >= row_ptr[head * (num_rows + 1) + num_rows]) {
      q_indices[i] = -1;
      qsplit[i] = -1;
    }
  }
}

void check_int_tensor(const at::Tensor& t, const char* name, const at::Tensor& like) {
  check_dtype(t, name, at::kInt);
  check_same_device(like, t, name);
}

}  // namespace

void build_k2q_csr(const at::Tensor& q2k, const at::Tensor& cu_seqlens_q, const at::Tensor& cu_seqlens_k,
                   int64_t kv_block_size, at::Tensor& row_ptr, at::Tensor& q_indices, at::Tensor& qsplit,
                   at::Tensor& split_counts, at::Tensor& row_request, at::Tensor& row_block) {
  check_cuda(q2k, "q2k_indices");
  check_dtype(q2k, "q2k_indices", at::kInt);
  MSA_CHECK(q2k.dim() == 3, "q2k_indices must be [Hkv, total_q, topK]");
  const int64_t heads = q2k.size(0), total_q = q2k.size(1), topk = q2k.size(2);
  MSA_CHECK(topk <= kMaxCsrTopk, "topK must be <= ", kMaxCsrTopk);
  MSA_CHECK(total_q <= kQueryMask, "total_q must be < 2^24");
  for (const auto* t : {&cu_seqlens_q, &cu_seqlens_k}) {
    check_int_tensor(*t, "cu_seqlens", q2k);
    MSA_CHECK(t->dim() == 1 && t->size(0) >= 1 && t->is_contiguous(), "cu_seqlens must be contiguous [B+1]");
  }
  MSA_CHECK(cu_seqlens_q.size(0) == cu_seqlens_k.size(0), "cu_seqlens_q and cu_seqlens_k must have equal length");
  MSA_CHECK(kv_block_size >= 1 && kv_block_size <= INT_MAX, "kv_block_size must be >= 1");
  const int64_t batch = cu_seqlens_q.size(0) - 1;
  const int64_t num_rows = row_request.numel();
  const int64_t capacity = total_q * topk;
  for (const auto* t : {&row_ptr, &q_indices, &qsplit, &split_counts, &row_request, &row_block}) {
    check_int_tensor(*t, "output", q2k);
    MSA_CHECK(t->is_contiguous(), "outputs must be contiguous");
  }
  MSA_CHECK(row_ptr.dim() == 2 && row_ptr.size(0) == heads && row_ptr.size(1) == num_rows + 1,
            "k2q_row_ptr must be [Hkv, total_rows + 1]");
  MSA_CHECK(q_indices.dim() == 2 && q_indices.size(0) == heads && q_indices.size(1) == capacity &&
                qsplit.sizes() == q_indices.sizes(),
            "k2q_q_indices and qsplit_indices must be [Hkv, total_q * topK]");
  MSA_CHECK(split_counts.dim() == 2 && split_counts.size(0) == total_q && split_counts.size(1) == heads,
            "split_counts must be [total_q, Hkv]");
  MSA_CHECK(row_block.numel() == num_rows, "row_block must be [total_rows]");
  MSA_CHECK(num_rows < INT_MAX && heads * num_rows < INT_MAX && heads * capacity < INT_MAX,
            "the CSR is too large for int32 offsets");
  if (heads == 0) return;

  const c10::cuda::CUDAGuard guard(q2k.device());
  auto stream = c10::cuda::getCurrentCUDAStream();
  const int rows = static_cast<int>(num_rows);
  at::Tensor work = at::empty({heads * num_rows + num_rows + 1 + heads * capacity}, q2k.options());
  int* counts = work.data_ptr<int>();
  int* rows_before = counts + heads * num_rows;
  int* edges = rows_before + num_rows + 1;

  row_map_kernel<<<static_cast<unsigned>(ceil_div(num_rows + 1, 256)), 256, 0, stream>>>(
      cu_seqlens_k.data_ptr<int>(), static_cast<int>(batch), static_cast<int>(kv_block_size), rows, rows_before,
      row_request.data_ptr<int>(), row_block.data_ptr<int>());
  check_launch();
  if (total_q == 0 || topk == 0 || num_rows == 0) {
    C10_CUDA_CHECK(cudaMemsetAsync(row_ptr.data_ptr<int>(), 0, row_ptr.numel() * sizeof(int), stream));
    C10_CUDA_CHECK(cudaMemsetAsync(split_counts.data_ptr<int>(), 0, split_counts.numel() * sizeof(int), stream));
    C10_CUDA_CHECK(cudaMemsetAsync(q_indices.data_ptr<int>(), 0xff, q_indices.numel() * sizeof(int), stream));
    C10_CUDA_CHECK(cudaMemsetAsync(qsplit.data_ptr<int>(), 0xff, qsplit.numel() * sizeof(int), stream));
    return;
  }
  C10_CUDA_CHECK(cudaMemsetAsync(counts, 0, heads * num_rows * sizeof(int), stream));

  const dim3 edge_grid(static_cast<unsigned>(ceil_div(total_q, kEdgeThreads)), static_cast<unsigned>(heads));
  const size_t edge_smem = kEdgeThreads * (topk + 1) * sizeof(int);
  const int* q2k_ptr = q2k.data_ptr<int>();
  const int* cu_q = cu_seqlens_q.data_ptr<int>();
  const int* cu_k = cu_seqlens_k.data_ptr<int>();
  edge_kernel<false><<<edge_grid, kEdgeThreads, edge_smem, stream>>>(
      q2k_ptr, q2k.stride(0), q2k.stride(1), q2k.stride(2), cu_q, cu_k, static_cast<int>(batch),
      static_cast<int>(kv_block_size), rows, static_cast<int>(heads), static_cast<int>(total_q),
      static_cast<int>(topk), rows_before, row_request.data_ptr<int>(), counts, split_counts.data_ptr<int>(), edges,
      capacity);
  check_launch();
  scan_kernel<<<static_cast<unsigned>(heads), kScanThreads, 0, stream>>>(counts, rows, row_ptr.data_ptr<int>());
  check_launch();
  edge_kernel<true><<<edge_grid, kEdgeThreads, edge_smem, stream>>>(
      q2k_ptr, q2k.stride(0), q2k.stride(1), q2k.stride(2), cu_q, cu_k, static_cast<int>(batch),
      static_cast<int>(kv_block_size), rows, static_cast<int>(heads), static_cast<int>(total_q),
      static_cast<int>(topk), rows_before, row_request.data_ptr<int>(), counts, split_counts.data_ptr<int>(), edges,
      capacity);
  check_launch();
  order_rows_kernel<<<dim3(static_cast<unsigned>(num_rows), static_cast<unsigned>(heads)), kSortThreads, 0,
                      stream>>>(row_ptr.data_ptr<int>(), rows, edges, capacity, q_indices.data_ptr<int>(),
                                qsplit.data_ptr<int>());
  check_launch();
  const int64_t tail_blocks = std::min<int64_t>(ceil_div(heads * capacity, 256), 4096);
  tail_kernel<<<static_cast<unsigned>(tail_blocks), 256, 0, stream>>>(
      row_ptr.data_ptr<int>(), rows, static_cast<int>(heads), capacity, q_indices.data_ptr<int>(),
      qsplit.data_ptr<int>());
  check_launch();
}

}  // namespace msa
