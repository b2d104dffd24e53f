// Op registration (kernel-builder convention). Outputs are preallocated by the Python
// wrappers and passed as mutable arguments, so every op is CUDA-graph capturable.
#include <torch/all.h>
#include <torch/library.h>

#include "registration.h"
#include "torch_binding.h"

TORCH_LIBRARY_EXPAND(TORCH_EXTENSION_NAME, ops) {
  ops.def(
      "sparse_topk_select(Tensor max_score, Tensor? num_valid_pages, int default_num_valid_pages, "
      "int force_begin_blocks, int force_end_blocks, Tensor(a!) out) -> ()");
  ops.impl("sparse_topk_select", torch::kCUDA, &msa::sparse_topk_select);

  ops.def("native_topk_from_scores(Tensor score, Tensor seq_lens, int block_size, Tensor(a!) out) -> ()");
  ops.impl("native_topk_from_scores", torch::kCUDA, &msa::native_topk_from_scores);

  ops.def(
      "build_k2q_csr(Tensor q2k_indices, Tensor cu_seqlens_q, Tensor cu_seqlens_k, int kv_block_size, "
      "Tensor(a!) k2q_row_ptr, Tensor(b!) k2q_q_indices, Tensor(c!) qsplit_indices, Tensor(d!) split_counts, "
      "Tensor(e!) row_request, Tensor(f!) row_block) -> ()");
  ops.impl("build_k2q_csr", torch::kCUDA, &msa::build_k2q_csr);
}

REGISTER_EXTENSION(TORCH_EXTENSION_NAME)
