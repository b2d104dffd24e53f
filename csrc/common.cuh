// Shared helpers of the native ops: argument checks, launch plumbing, warp utilities.
#pragma once

#include <ATen/ATen.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>

#include <cstdint>

#define MSA_CHECK(cond, ...) TORCH_CHECK((cond), "msa_blackwell: ", __VA_ARGS__)

namespace msa {

constexpr unsigned kFullMask = 0xffffffffu;

inline void check_cuda(const at::Tensor& t, const char* name) {
  MSA_CHECK(t.is_cuda(), name, " must be a CUDA tensor");
}

inline void check_dtype(const at::Tensor& t, const char* name, at::ScalarType dtype) {
  MSA_CHECK(t.scalar_type() == dtype, name, " must have dtype ", dtype, ", got ", t.scalar_type());
}

inline void check_same_device(const at::Tensor& a, const at::Tensor& b, const char* name) {
  MSA_CHECK(a.device() == b.device(), name, " must be on ", a.device(), ", got ", b.device());
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

inline void check_launch() { C10_CUDA_KERNEL_LAUNCH_CHECK(); }

__device__ __forceinline__ unsigned lanemask_lt() {
  unsigned mask;
  asm("mov.u32 %0, %%lanemask_lt;" : "=r"(mask));
  return mask;
}

}  // namespace msa
