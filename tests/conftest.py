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
