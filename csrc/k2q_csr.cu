// q2k -> k2q CSR builder (contract §2.2), deterministic and free of host syncs.
//
//   1. row map: S[j] = sum_b min(nb[b], j) for j <= R, and the (request, block) of each row.
//   2. emit:    one thread per (head, query) dedupes its ids and writes, at its own slots, the sort
//               key head*(R+1)+row (row R = dropped) and the value q_local | slot << 24 (-1 if dropped).
//   3. sort:    a stable radix sort by key. Entries were emitted in query order and a query meets a
//               row at most once, so each row's queries come out ascending and the dropped entries
//               land at the tail of their head: the sorted values are qsplit_indices as they are.
//   4. finish:  row_ptr by binary search of the sorted keys; k2q_q_indices = the query bits.
#include "common.cuh"

#include <cub/device/device_radix_sort.cuh>

#include <climits>

namespace msa {
namespace {

constexpr int kMaxCsrTopk = 64;  // a query's dedupe flags live in one 64-bit mask
constexpr int kEdgeThreads = 128;
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

__global__ void __launch_bounds__(kEdgeThreads) emit_kernel(
    const int* __restrict__ q2k, int64_t stride_head, int64_t stride_query, int64_t stride_slot,
    const int* __restrict__ cu_q, const int* __restrict__ cu_k, int batch, int blk, int num_rows,
    int num_heads, int total_q, int topk, const int* __restrict__ rows_before, const int* __restrict__ row_request,
    int* __restrict__ split_counts, uint32_t* __restrict__ keys, int* __restrict__ vals) {
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
  if (t >= total_q) return;
  const int* ids = ids_smem + threadIdx.x * stride;
  const int b = request_of(cu_q, batch, t);
  const int nb = b >= 0 ? blocks_of(cu_k, b, blk) : 0;
  const int q_local = b >= 0 ? t - __ldg(cu_q + b) : 0;

  uint64_t first_mask = 0;  // valid ids that do not repeat an earlier slot
  for (int k = 0; k < topk; ++k) {
    const int id = ids[k];
    bool first = id >= 0 && id < nb;
    for (int k2 = 0; first && k2 < k; ++k2) first = ids[k2] != id;
    if (first) first_mask |= 1ull << k;
  }

  const uint32_t head_key = static_cast<uint32_t>(head) * static_cast<uint32_t>(num_rows + 1);
  const int64_t base = static_cast<int64_t>(head) * total_q * topk + static_cast<int64_t>(t) * topk;
  int kept = 0;
  for (int k = 0; k < topk; ++k) {
    int row = -1;
    int slot = 0;
    if ((first_mask >> k) & 1ull) {
      const int id = ids[k];
      row = row_of(rows_before, row_request, num_rows, b, id);
      // Dropped rows (>= num_rows) hold the largest ids, so the kept slots stay 0..kept-1.
      for (int k2 = 0; k2 < topk; ++k2) slot += ((first_mask >> k2) & 1ull) && ids[k2] < id;
    }
    keys[base + k] = head_key + static_cast<uint32_t>(row >= 0 ? row : num_rows);
    vals[base + k] = row >= 0 ? (q_local | (slot << kQueryBits)) : -1;
    kept += row >= 0;
  }
  split_counts[static_cast<int64_t>(t) * num_heads + head] = kept;
}

// row_ptr[g, r] = #entries of head g in rows < r (a lower bound in the sorted keys); q_indices
// keeps the query bits of the sorted values.
__global__ void finish_kernel(const uint32_t* __restrict__ sorted_keys, const int* __restrict__ qsplit,
                              int num_rows, int num_heads, int64_t capacity, int* __restrict__ row_ptr,
                              int* __restrict__ q_indices) {
  const int64_t entries = num_heads * capacity;
  const int64_t ptrs = static_cast<int64_t>(num_heads) * (num_rows + 1);
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < entries; i += step) {
    const int v = qsplit[i];
    q_indices[i] = v < 0 ? -1 : (v & kQueryMask);
  }
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < ptrs; i += step) {
    const int64_t head = i / (num_rows + 1);
    const uint32_t target = static_cast<uint32_t>(i);  // head * (num_rows + 1) + r
    const uint32_t* seg = sorted_keys + head * capacity;
    int64_t lo = 0, hi = capacity;
    while (lo < hi) {
      const int64_t mid = (lo + hi) >> 1;
      if (seg[mid] < target) lo = mid + 1; else hi = mid;
    }
    row_ptr[i] = static_cast<int>(lo);
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
  at::Tensor rows_before = at::empty({num_rows + 1}, q2k.options());
  row_map_kernel<<<static_cast<unsigned>(ceil_div(num_rows + 1, 256)), 256, 0, stream>>>(
      cu_seqlens_k.data_ptr<int>(), static_cast<int>(batch), static_cast<int>(kv_block_size), rows,
      rows_before.data_ptr<int>(), row_request.data_ptr<int>(), row_block.data_ptr<int>());
  check_launch();
  if (total_q == 0 || topk == 0 || num_rows == 0) {
    C10_CUDA_CHECK(cudaMemsetAsync(row_ptr.data_ptr<int>(), 0, row_ptr.numel() * sizeof(int), stream));
    C10_CUDA_CHECK(cudaMemsetAsync(split_counts.data_ptr<int>(), 0, split_counts.numel() * sizeof(int), stream));
    C10_CUDA_CHECK(cudaMemsetAsync(q_indices.data_ptr<int>(), 0xff, q_indices.numel() * sizeof(int), stream));
    C10_CUDA_CHECK(cudaMemsetAsync(qsplit.data_ptr<int>(), 0xff, qsplit.numel() * sizeof(int), stream));
    return;
  }

  const int entries = static_cast<int>(heads * capacity);
  const uint32_t max_key = static_cast<uint32_t>(heads * (num_rows + 1) - 1);
  const int end_bit = max_key == 0 ? 1 : 32 - __builtin_clz(max_key);
  size_t sort_bytes = 0;
  C10_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, sort_bytes, static_cast<const uint32_t*>(nullptr),
                                                 static_cast<uint32_t*>(nullptr), static_cast<const int*>(nullptr),
                                                 static_cast<int*>(nullptr), entries, 0, end_bit, stream));
  // One workspace: unsorted keys, sorted keys, unsorted values, then the sort's scratch (256-byte aligned).
  const int64_t array_bytes = ceil_div(static_cast<int64_t>(entries) * 4, 256) * 256;
  at::Tensor work = at::empty({3 * array_bytes + static_cast<int64_t>(sort_bytes)}, q2k.options().dtype(at::kByte));
  uint8_t* base = work.data_ptr<uint8_t>();
  auto* keys_in = reinterpret_cast<uint32_t*>(base);
  auto* keys_out = reinterpret_cast<uint32_t*>(base + array_bytes);
  auto* vals_in = reinterpret_cast<int*>(base + 2 * array_bytes);
  void* sort_scratch = base + 3 * array_bytes;

  const dim3 emit_grid(static_cast<unsigned>(ceil_div(total_q, kEdgeThreads)), static_cast<unsigned>(heads));
  const size_t emit_smem = kEdgeThreads * (topk + 1) * sizeof(int);
  emit_kernel<<<emit_grid, kEdgeThreads, emit_smem, stream>>>(
      q2k.data_ptr<int>(), q2k.stride(0), q2k.stride(1), q2k.stride(2), cu_seqlens_q.data_ptr<int>(),
      cu_seqlens_k.data_ptr<int>(), static_cast<int>(batch), static_cast<int>(kv_block_size), rows,
      static_cast<int>(heads), static_cast<int>(total_q), static_cast<int>(topk), rows_before.data_ptr<int>(),
      row_request.data_ptr<int>(), split_counts.data_ptr<int>(), keys_in, vals_in);
  check_launch();
  C10_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(sort_scratch, sort_bytes, keys_in, keys_out, vals_in,
                                                 qsplit.data_ptr<int>(), entries, 0, end_bit, stream));
  const int64_t finish_items = std::max<int64_t>(entries, heads * (num_rows + 1));
  const int64_t finish_blocks = std::min<int64_t>(ceil_div(finish_items, 256), 8192);
  finish_kernel<<<static_cast<unsigned>(finish_blocks), 256, 0, stream>>>(
      keys_out, qsplit.data_ptr<int>(), rows, static_cast<int>(heads), capacity, row_ptr.data_ptr<int>(),
      q_indices.data_ptr<int>());
  check_launch();
}

}  // namespace msa
