"""The interpreter's out-of-bounds checker (tests/interp_bounds.py) catches what it must."""
import pytest
import torch
import triton
import triton.language as tl
from _pkg import INTERPRET

pytestmark = [pytest.mark.triton,
              pytest.mark.skipif(not INTERPRET, reason="checks the CPU interpreter's memory hooks")]


@triton.jit
def _copy_kernel(src, dst, n, shift, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK) + shift
    tl.store(dst + offs, tl.load(src + offs, mask=offs < n, other=0.0), mask=offs < n)


@triton.jit
def _unmasked_load_kernel(src, dst, shift, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    tl.store(dst + offs, tl.load(src + offs + shift))


def test_in_bounds_and_masked_accesses_pass():
    src = torch.arange(10, dtype=torch.float32)
    dst = torch.zeros(10)
    _copy_kernel[(1,)](src, dst, 10, 0, BLOCK=16)  # lanes 10..15 are masked off
    assert torch.equal(dst, src)


@pytest.mark.parametrize("shift", [-1, 1])
def test_unmasked_load_outside_the_tensor_raises(shift):
    src, dst = torch.zeros(16), torch.zeros(16)
    with pytest.raises(Exception, match="_unmasked_load_kernel: load of 1 lane"):
        _unmasked_load_kernel[(1,)](src, dst, shift, BLOCK=16)


def test_store_past_the_end_raises():
    src, dst = torch.zeros(16), torch.zeros(8)
    with pytest.raises(Exception, match="store of 8 lane"):
        _copy_kernel[(1,)](src, dst, 16, 0, BLOCK=16)
