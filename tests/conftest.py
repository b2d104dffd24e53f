import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))


def pytest_collection_modifyitems(config, items):
    # Under the interpreter only the Triton tests are worth the time.
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
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
