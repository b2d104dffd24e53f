"""msa-blackwell: MiniMax Sparse Attention for SM120/SM121 Blackwell GPUs (and Hopper).

Official MiniMax MSA names, the upstream SM12x csrc-stack names and the SGLang/FlashRT
helper names (see CONTRACT.md in the project). Native CUDA ops: top-k selection and the
k2q CSR builder; Triton: sparse prefill, sparse decode, indexers, NVFP4.
"""
from . import reference
from ._backend import has_native_ops
from .csr import SparseK2qCsrBuilderSm12x, SparseK2qCsrBuilderSm100, build_k2q_csr
from .decode import SparseDecodePagedAttentionWrapper, sparse_decode_atten_func
from .decode_indexer import flash_decode_with_topk_idx, naive_flash_decode_with_topk_idx
from .flashrt import (
    flash_decode_with_gqa_share_sparse,
    get_cu_seqblocks,
    naive_flash_decode_with_gqa_share_sparse,
    robust_allocator,
)
from .fmha import fmha_sm12x, fmha_sm12x_plan
from .indexer import fp4_indexer_block_scores
from .nvfp4 import (
    Nvfp4QuantizedTensor,
    dequantize_nvfp4_128x4_to_bf16,
    nvfp4_global_scale_from_amax,
    quantize_bf16_to_nvfp4_128x4,
    quantize_kv_bf16_to_nvfp4_128x4,
    swizzle_nvfp4_scale_to_128x4,
    unswizzle_nvfp4_scale_from_128x4,
)
from .prefill import sparse_atten_func, sparse_atten_nvfp4_kv_func
from .topk import native_topk_from_scores, sparse_topk_select

__all__ = [
    # official MiniMax MSA names
    "sparse_atten_func",
    "sparse_atten_nvfp4_kv_func",
    "sparse_decode_atten_func",
    "SparseDecodePagedAttentionWrapper",
    "build_k2q_csr",
    "SparseK2qCsrBuilderSm100",
    "fp4_indexer_block_scores",
    "Nvfp4QuantizedTensor",
    "quantize_bf16_to_nvfp4_128x4",
    "quantize_kv_bf16_to_nvfp4_128x4",
    "dequantize_nvfp4_128x4_to_bf16",
    "swizzle_nvfp4_scale_to_128x4",
    "nvfp4_global_scale_from_amax",
    # upstream SM12x csrc stack
    "sparse_topk_select",
    "fmha_sm12x_plan",
    "fmha_sm12x",
    "SparseK2qCsrBuilderSm12x",
    # FlashRT / SGLang helpers
    "flash_decode_with_gqa_share_sparse",
    "flash_decode_with_topk_idx",
    "native_topk_from_scores",
    "has_native_ops",
    "naive_flash_decode_with_gqa_share_sparse",
    "naive_flash_decode_with_topk_idx",
    "get_cu_seqblocks",
    "robust_allocator",
    # ours
    "unswizzle_nvfp4_scale_from_128x4",
    "reference",
]
