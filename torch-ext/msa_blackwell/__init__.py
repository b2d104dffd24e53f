"""msa-blackwell: MiniMax Sparse Attention for SM120/SM121 (and Hopper) GPUs."""
from . import reference
from ._backend import has_native_ops

__all__ = ["has_native_ops", "reference"]
