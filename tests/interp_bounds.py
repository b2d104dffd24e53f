"""Out-of-bounds memory checks for Triton kernels run by the CPU interpreter.

Every load, store and atomic of an interpreted kernel must touch only bytes inside the
storages of that launch's tensor arguments; a lane outside them raises an AssertionError
naming the kernel. On a GPU such an access is an illegal-address fault (or silent
corruption) only when it leaves the allocation; here it is caught on the first access.
"""
import traceback

import numpy as np
from triton.runtime import interpreter

_launch = {"kernel": None, "ranges": []}
_installed = False


def _storage_ranges(args):
    ranges = []
    for arg in args:
        if isinstance(arg, (tuple, list)):
            ranges += _storage_ranges(arg)
        elif hasattr(arg, "untyped_storage"):
            storage = arg.untyped_storage()
            if storage.nbytes():
                ranges.append((storage.data_ptr(), storage.data_ptr() + storage.nbytes()))
    return ranges


def _check(ptrs, mask, what):
    addrs = ptrs.data if mask is None else ptrs.data[np.broadcast_to(mask.data.astype(bool), ptrs.data.shape)]
    if addrs.size == 0:
        return
    addrs = addrs.astype(np.uint64)
    width = np.uint64(max(1, ptrs.get_element_ty().primitive_bitwidth // 8))
    inside = np.zeros(addrs.shape, dtype=bool)
    for start, end in _launch["ranges"]:
        inside |= (addrs >= np.uint64(start)) & (addrs + width <= np.uint64(end))
    if not inside.all():
        bad = addrs[~inside]
        where = [f"{f.filename}:{f.lineno} {f.line}" for f in traceback.extract_stack()
                 if "triton_kernels" in f.filename]
        raise AssertionError(f"{_launch['kernel']}: {what} of {bad.size} lane(s) outside every tensor "
                             f"argument (first address {int(bad[0]):#x}) at {' <- '.join(reversed(where))}")


def install():
    """Patches the interpreter once per process."""
    global _installed
    if _installed:
        return
    _installed = True
    executor, builder = interpreter.GridExecutor, interpreter.InterpreterBuilder
    init_args = executor._init_args_hst

    def init_args_checked(self, args_dev, kwargs):
        args_hst, kwargs_hst = init_args(self, args_dev, kwargs)
        _launch["kernel"] = getattr(self.fn, "__name__", str(self.fn))
        _launch["ranges"] = _storage_ranges(list(args_hst) + list(kwargs_hst.values()))
        return args_hst, kwargs_hst

    executor._init_args_hst = init_args_checked

    load, store = builder.create_masked_load, builder.create_masked_store
    rmw, cas = builder.create_atomic_rmw, builder.create_atomic_cas

    def masked_load(self, ptrs, mask, *rest):
        _check(ptrs, mask, "load")
        return load(self, ptrs, mask, *rest)

    def masked_store(self, ptrs, value, mask, *rest):
        _check(ptrs, mask, "store")
        return store(self, ptrs, value, mask, *rest)

    def atomic_rmw(self, op, ptr, val, mask, *rest):
        _check(ptr, mask, "atomic")
        return rmw(self, op, ptr, val, mask, *rest)

    def atomic_cas(self, ptr, cmp, val, *rest):
        _check(ptr, None, "atomic")
        return cas(self, ptr, cmp, val, *rest)

    builder.create_masked_load, builder.create_masked_store = masked_load, masked_store
    builder.create_atomic_rmw, builder.create_atomic_cas = atomic_rmw, atomic_cas
