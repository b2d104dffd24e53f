// Native CUDA ops of msa_blackwell (implemented in csrc/).
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Optional.h>

namespace msa {

void sparse_topk_select(const at::Tensor& max_score, const c10::optional<at::Tensor>& num_valid_pages,
                        int64_t default_num_valid_pages, int64_t force_begin_blocks, int64_t force_end_blocks,
                        at::Tensor& out);

void native_topk_from_scores(const at::Tensor& score, const at::Tensor& seq_lens, int64_t block_size,
                             at::Tensor& out);

void build_k2q_csr(const at::Tensor& q2k, const at::Tensor& cu_seqlens_q, const at::Tensor& cu_seqlens_k,
                   int64_t kv_block_size, at::Tensor& row_ptr, at::Tensor& q_indices, at::Tensor& qsplit,
                   at::Tensor& split_counts, at::Tensor& row_request, at::Tensor& row_block);

}  // namespace msa
