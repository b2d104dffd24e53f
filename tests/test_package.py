"""The package surface: every contract name exported, real callables, source-tree mode."""
import importlib
import inspect
import os
import sys
from pathlib import Path

import pytest
import torch
from _pkg import ROOT, msa

OFFICIAL = [
    "sparse_atten_func", "sparse_atten_nvfp4_kv_func", "sparse_decode_atten_func",
    "SparseDecodePagedAttentionWrapper", "build_k2q_csr", "SparseK2qCsrBuilderSm100",
    "fp4_indexer_block_scores", "Nvfp4QuantizedTensor", "quantize_bf16_to_nvfp4_128x4",
    "quantize_kv_bf16_to_nvfp4_128x4", "dequantize_nvfp4_128x4_to_bf16",
    "swizzle_nvfp4_scale_to_128x4", "nvfp4_global_scale_from_amax",
]
UPSTREAM_SM12X = ["sparse_topk_select", "fmha_sm12x_plan", "fmha_sm12x", "SparseK2qCsrBuilderSm12x"]
FLASHRT = [
    "flash_decode_with_gqa_share_sparse", "flash_decode_with_topk_idx", "native_topk_from_scores",
    "has_native_ops", "naive_flash_decode_with_gqa_share_sparse", "naive_flash_decode_with_topk_idx",
    "get_cu_seqblocks", "robust_allocator",
]


@pytest.mark.parametrize("name", OFFICIAL + UPSTREAM_SM12X + FLASHRT)
def test_name_exported_and_callable(name):
    obj = getattr(msa, name)
    assert callable(obj)
    assert name in msa.__all__


def test_builder_alias_is_the_same_class():
    assert msa.SparseK2qCsrBuilderSm12x is msa.SparseK2qCsrBuilderSm100


def test_package_uses_relative_imports_only():
    pkg = ROOT / "torch-ext" / "msa_blackwell"
    for path in pkg.rglob("*.py"):
        text = path.read_text()
        assert "import msa_blackwell" not in text and "from msa_blackwell" not in text, path


def test_source_tree_mode_has_no_native_ops():
    backend = importlib.import_module(msa.__name__ + "._backend")
    if backend.NATIVE_OPS:
        pytest.skip("running against a built variant")
    assert not msa.has_native_ops()
    assert backend.add_op_namespace_prefix("x") == "msa_blackwell_src::x"


def test_signatures_follow_the_contract():
    params = inspect.signature(msa.sparse_atten_func).parameters
    for kw in ("cu_seqlens_q", "cu_seqlens_k", "max_seqlen_q", "max_seqlen_k", "blk_kv", "causal", "page_table",
               "seqused_k", "schedule", "return_softmax_lse", "return_temperature_lse", "out"):
        assert params[kw].kind is inspect.Parameter.KEYWORD_ONLY, kw
    params = inspect.signature(msa.sparse_decode_atten_func).parameters
    for kw in ("page_table", "seqused_k", "seqlen_q", "max_seqlen_k", "k_scale", "v_scale", "out"):
        assert params[kw].kind is inspect.Parameter.KEYWORD_ONLY, kw


def test_build_tools_variant_layout(monkeypatch):
    sys.path.insert(0, str(Path(ROOT, "tools")))
    import build_local

    class FakeVersion:
        cuda = "13.0"

    class FakeTorch:
        __version__ = "2.11.0+cu130"
        version = FakeVersion

        @staticmethod
        def compiled_with_cxx11_abi():
            return True

    import platform

    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    assert build_local.variant_name(FakeTorch) == "torch211-cxx11-cu130-x86_64-linux"
    files = build_local.source_files(build_local.read_config())
    name = build_local.ext_name(files)
    assert name.startswith("_msa_blackwell_") and name == build_local.ext_name(files)


@pytest.mark.skipif(not os.environ.get("MSA_TEST_ARCH_MAJOR") or not torch.cuda.is_available(),
                    reason="only when a run forces another architecture's launch configs")
def test_forced_launch_architecture_is_in_effect():
    assert msa._backend.cuda_properties(0)[0] == int(os.environ["MSA_TEST_ARCH_MAJOR"])
