#!/usr/bin/env python3
"""Replays the example a fuzz process died on, from its MSA_FUZZ_TRACE file.

    MSA_FUZZ_TRACE=/tmp/trace-{pid}.txt python -m pytest tests/test_fuzz.py -k NAME   # dies
    python tools/replay_fuzz_trace.py /tmp/trace-1234.txt                            # replays it

An example that faults the GPU (illegal address) kills the CUDA context, so hypothesis can
neither shrink nor print it; the trace lists every example before it runs and "ok" after it
passes, so the culprit is the first one without "ok". The replay runs in a fresh process
(under compute-sanitizer if you like) with the same environment, MSA_TEST_ARCH_MAJOR included.
"""
import sys
import types
from pathlib import Path

import torch

TESTS = Path(__file__).resolve().parents[1] / "tests"


def first_unfinished(lines):
    for i, line in enumerate(lines):
        if line != "ok" and (i + 1 == len(lines) or lines[i + 1] != "ok"):
            return line
    return None


def main():
    culprit = first_unfinished(Path(sys.argv[1]).read_text().splitlines())
    print("unfinished example:", culprit, flush=True)
    if culprit is None:
        return 0
    name, rest = culprit.split(" ", 1)
    kwargs = eval("{" + rest.split(" {", 1)[1], {"namespace": types.SimpleNamespace, "torch": torch})
    sys.path.insert(0, str(TESTS))
    import conftest  # noqa: F401  (MSA_TEST_ARCH_MAJOR, the interpreter's bounds checks)
    import test_fuzz

    getattr(test_fuzz, name).hypothesis.inner_test(**kwargs)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    print("replay passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
