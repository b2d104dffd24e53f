import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")

if INTERPRET and os.environ.get("MSA_INTERP_BOUNDS", "1") != "0":
    import interp_bounds

    interp_bounds.install()  # every interpreted load/store/atomic stays inside its tensors


def pytest_collection_modifyitems(config, items):
    # Under the interpreter only the Triton tests are worth the time.
    if INTERPRET:
        for item in items:
            if "triton" not in item.keywords:
                item.add_marker(pytest.mark.skip(reason="interpreter pass runs Triton tests only"))


@pytest.fixture(params=["kv_outer", "query_major"])
def prefill_kernel(request, monkeypatch):
    """Runs a prefill test once per prefill kernel (the launcher picks by size otherwise)."""
    kernel_test = request.node.get_closest_marker("triton") or request.node.get_closest_marker("gpu")
    if not kernel_test and request.param != "kv_outer":
        pytest.skip("reference path: no kernel to choose")
    monkeypatch.setenv("MSA_PREFILL_KERNEL", request.param)
    return request.param


def _force_arch_major():
    """MSA_TEST_ARCH_MAJOR=12 makes every launcher pick its SM12x configs on the GPU at hand
    (an H100/H200 in the device runs): those configs otherwise run only in the compile gate."""
    major = os.environ.get("MSA_TEST_ARCH_MAJOR")
    if not major:
        return
    import torch

    if not torch.cuda.is_available():
        return
    from _pkg import msa

    for index in range(torch.cuda.device_count()):
        sms = torch.cuda.get_device_properties(index).multi_processor_count
        msa._backend._cuda_properties[index] = (int(major), sms)


_force_arch_major()
