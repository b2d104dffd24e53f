"""tools/check_release.py: the release workflow passes, and each kind of breakage is caught."""
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import check_release  # noqa: E402
from _pkg import msa, needs_cuda  # noqa: E402

WORKFLOW_TEXT = check_release.WORKFLOW.read_text()


def errors_for(tmp_path, old, new, **kw):
    assert old in WORKFLOW_TEXT, f"test is stale: {old!r} no longer in release.yml"
    path = tmp_path / "release.yml"
    path.write_text(WORKFLOW_TEXT.replace(old, new))
    return check_release.check_all(workflow=path, **kw)


def test_repository_release_config_passes():
    assert check_release.check_all(ci_torch=check_release.pinned_torch()) == []


def test_matrix_is_every_torch_cuda_pair_on_both_systems():
    names = check_release.matrix_variants(check_release.load_workflow())
    assert "torch213-cxx11-cu130-x86_64-linux" in names and "torch213-cxx11-cu130-aarch64-linux" in names
    assert len(names) == len(set(names)) and len(names) % 2 == 0
    assert {n.rsplit("-", 2)[-2] + "-linux" for n in names} == check_release.SYSTEMS


@pytest.mark.parametrize("old,new,word", [
    ("--branch v1", "--branch v2", "--branch"),
    ("--repo-id org/msa-blackwell", "--repo-id org/other", "--repo-id"),
    ("-m kernels_ci", "-m gpu", "kernels_ci"),
    ("MSA_BLACKWELL_BUILD=$PWD/build ", "", "MSA_BLACKWELL_BUILD"),
    ("    needs: build-test\n", "", "wait for the kernels_ci"),
    ('tags: ["v1*"]', 'tags: ["v2*"]', "tag"),
    ("  workflow_dispatch:\n", "", "workflow_dispatch"),
    ("HF_TOKEN: ${{ secrets.HF_TOKEN }}", "HF_TOKEN: hf_plaintext", "secret"),
    ('nix build -L ".#redistributable.$VARIANT"', "true", "build step"),
    # CUDA 12.8 cannot build sm_121 and is below build.toml's minver 12.9.
    ("- torch213-cxx11-cu130\n", "- torch213-cxx11-cu128\n", "12.8"),
    ("system: [x86_64-linux, aarch64-linux]", "system: [x86_64-linux]", "aarch64-linux"),
    ("system: [x86_64-linux, aarch64-linux]", "system: [x86_64-linux, aarch64-linux]\n        exclude:\n"
     "          - {framework: torch214-cxx11-cu132, system: aarch64-linux}", "differs between systems"),
    ("- torch212-cxx11-cu130\n", "- torch212-cu130\n", "names Linux torch variants"),
])
def test_broken_workflow_is_caught(tmp_path, old, new, word):
    errors = errors_for(tmp_path, old, new)
    assert any(word in e for e in errors), errors


def test_matrix_checked_against_build_toml(tmp_path):
    cfg = check_release.read_config()
    cfg["general"]["cuda"]["maxver"] = "13.0"  # the cu132 variants fall outside
    errors = errors_for(tmp_path, "", "", cfg=cfg)
    assert sum("outside build.toml" in e for e in errors) == 6, errors
    cfg = check_release.read_config()
    cfg["general"]["version"] = 2  # branch and tag must follow the version
    errors = errors_for(tmp_path, "", "", cfg=cfg)
    assert any("'v2'" in e for e in errors) and any("'v2*'" in e for e in errors), errors


def test_ci_torch_must_be_released():
    errors = check_release.check_matrix(["torch212-cxx11-cu130-x86_64-linux", "torch212-cxx11-cu130-aarch64-linux"],
                                        check_release.read_config(), ci_torch=check_release.Version("2.13"))
    assert errors == ["no variant for torch 2.13, the torch tools/requirements.txt pins for CI"]


def test_flake_must_use_the_kernel_builder():
    assert check_release.check_flake(check_release.FLAKE.read_text()) == []
    errors = check_release.check_flake('{ outputs = { self }: { packages = { }; }; }')
    assert len(errors) == 3 and any("genKernelFlakeOutputs" in e for e in errors)


def test_unreadable_workflow(tmp_path):
    path = tmp_path / "release.yml"
    path.write_text("jobs: [unclosed\n")
    assert "cannot read" in check_release.check_all(workflow=path)[0]


@pytest.mark.gpu
@pytest.mark.kernels_ci
@needs_cuda
@pytest.mark.skipif(not os.environ.get("MSA_BLACKWELL_BUILD"), reason="checks a built variant")
def test_built_variant_loads_its_native_ops():
    # Without this, a variant whose extension failed to load would pass the native-op tests on the
    # PyTorch fallbacks.
    assert msa.has_native_ops()
