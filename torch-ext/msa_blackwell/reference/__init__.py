"""PyTorch references: the CPU path of every op, and the oracle of every test."""
from . import attention, csr, decode, indexer, nvfp4, prefill, topk

__all__ = ["attention", "csr", "decode", "indexer", "nvfp4", "prefill", "topk"]
