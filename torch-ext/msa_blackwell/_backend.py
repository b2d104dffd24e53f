"""Where the ops live: the kernel-builder's `_ops` module, or the source tree.

A kernel-builder (or `tools/build_local.py`) variant ships a generated `_ops.py`
that loads the compiled extension and names its op namespace. A plain checkout
of `torch-ext/` has no `_ops.py`: then the native CUDA ops are absent, Triton
kernels register under a source-tree namespace, and every native op runs its
PyTorch reference instead (announced once).
"""
import os
import warnings

import torch

try:
    from ._ops import add_op_namespace_prefix, ops

    NATIVE_OPS = True
except ImportError:
    ops = None
    NATIVE_OPS = False

    def add_op_namespace_prefix(op_name):
        return "msa_blackwell_src::" + op_name


_announced = False
_cuda_properties = {}


def cuda_properties(index=None):
    """(compute-capability major, SM count) of CUDA device `index` (None = current), cached."""
    if index is None:
        index = torch.cuda.current_device()
    if index not in _cuda_properties:
        props = torch.cuda.get_device_properties(index)
        _cuda_properties[index] = (props.major, props.multi_processor_count)
    return _cuda_properties[index]


def triton_interpret():
    """True when Triton runs on the CPU interpreter (TRITON_INTERPRET=1)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def use_triton(tensor):
    """Triton kernels run on CUDA tensors, or on CPU tensors under the interpreter."""
    return tensor.is_cuda or triton_interpret()


def use_native(tensor):
    """Native CUDA ops run on CUDA tensors when the compiled extension is loaded."""
    if tensor.is_cuda and NATIVE_OPS:
        return True
    announce_reference_path()
    return False


def announce_reference_path():
    global _announced
    if _announced:
        return
    _announced = True
    reason = "CPU tensors" if NATIVE_OPS else "no compiled extension (source-tree mode)"
    warnings.warn(
        "msa_blackwell: native CUDA ops unavailable (" + reason + "); "
        "running the PyTorch reference path.",
        RuntimeWarning,
        stacklevel=3,
    )


def has_native_ops():
    """True when the compiled CUDA extension is loaded and a GPU is visible."""
    import torch

    return NATIVE_OPS and torch.cuda.is_available()
