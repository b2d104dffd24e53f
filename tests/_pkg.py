"""The package under test: a built variant (MSA_BLACKWELL_BUILD) or the source tree."""
import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _load():
    build = os.environ.get("MSA_BLACKWELL_BUILD")
    if build:
        from kernels import get_local_kernel

        return get_local_kernel(Path(build), trust_remote_code=["org/msa-blackwell"])
    sys.path.insert(0, str(ROOT / "torch-ext"))
    import msa_blackwell

    return msa_blackwell


msa = _load()

HAS_CUDA = torch.cuda.is_available()
INTERPRET = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")

# Triton-backed paths run on CUDA, or on the CPU under TRITON_INTERPRET=1.
TRITON_DEVICE = "cuda" if HAS_CUDA else ("cpu" if INTERPRET else None)
needs_triton = pytest.mark.skipif(TRITON_DEVICE is None, reason="needs CUDA or TRITON_INTERPRET=1")
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
# The interpreter computes bf16 tl.dot wrongly: interpreter tests use fp16/fp32 operands.
TRITON_HALF = torch.bfloat16 if HAS_CUDA else torch.float16
