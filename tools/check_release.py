#!/usr/bin/env python3
"""Check the release workflow (.github/workflows/release.yml) against build.toml and flake.nix.

- flake.nix builds through the Hugging Face kernel-builder (`genKernelFlakeOutputs`).
- The workflow runs on a `v<version>*` tag push and on workflow_dispatch.
- It builds each variant of its matrix, runs `pytest -m kernels_ci` against the built
  variant (MSA_BLACKWELL_BUILD) after the build, and only then uploads with
  `kernel-builder upload` to build.toml's hub repo-id, branch `v<version>`, with an HF token
  from a secret.
- The matrix (torch x CUDA x system) holds only variants build.toml allows: parsed with the
  `kernels` package's own variant parser, CUDA within general.cuda minver/maxver and new
  enough for every cuda-capability, torch within [torch] minver/maxver, the same torch x CUDA
  set on x86_64-linux and aarch64-linux, the torch that CI pins among them, and each variant
  the one `kernels` itself resolves for a runtime with that torch, CUDA and CPU.
The `kernels` package does not expose the builder's torch x CUDA list (that lives in the
kernel-builder flake); the workflow checks the pinned builder knows each variant at run time.
"""
import re
import shlex
import sys
from pathlib import Path

import yaml
from packaging.version import Version

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_local import ROOT, read_config  # noqa: E402

WORKFLOW = ROOT / ".github" / "workflows" / "release.yml"
FLAKE = ROOT / "flake.nix"
REQUIREMENTS = ROOT / "tools" / "requirements.txt"
# Linux systems the kernel-builder builds CUDA variants for; SM121 (GB10) is aarch64 only.
SYSTEMS = {"x86_64-linux", "aarch64-linux"}
# First CUDA toolkit whose nvcc targets each capability.
MIN_CUDA_FOR_CAPABILITY = {"12.0": "12.8", "12.1": "12.9"}


def load_workflow(path=WORKFLOW):
    with open(path) as f:
        return yaml.safe_load(f)


def _triggers(wf):
    # YAML 1.1 reads the bare key `on` as the boolean True.
    on = wf.get("on", wf.get(True))
    if isinstance(on, str):
        return {on: None}
    if isinstance(on, list):
        return {name: None for name in on}
    return on or {}


def _steps(wf):
    """(job name, step index, run text, merged env) for every `run` step."""
    for name, job in (wf.get("jobs") or {}).items():
        for i, step in enumerate(job.get("steps") or []):
            if "run" in step:
                env = {**(wf.get("env") or {}), **(job.get("env") or {}), **(step.get("env") or {})}
                yield name, i, str(step["run"]), env


def _needs(wf, job):
    needs = (wf["jobs"][job].get("needs") or [])
    return [needs] if isinstance(needs, str) else list(needs)


def _runs_after(wf, later, earlier):
    """True when (job, index) `later` can only start after `earlier` finished."""
    if later[0] == earlier[0]:
        return later[1] > earlier[1]
    seen, todo = set(), _needs(wf, later[0])
    while todo:
        job = todo.pop()
        if job == earlier[0]:
            return True
        if job not in seen and job in wf["jobs"]:
            seen.add(job)
            todo.extend(_needs(wf, job))
    return False


def _first(wf, pred):
    return next(((job, i, run, env) for job, i, run, env in _steps(wf) if pred(run)), None)


def check_triggers(wf, version):
    errors = []
    on = _triggers(wf)
    tags = ((on.get("push") or {}).get("tags") or []) if isinstance(on.get("push"), dict) else []
    if not any(str(t).startswith(f"v{version}") for t in tags):
        errors.append(f"workflow must run on a push of a 'v{version}*' tag (got tags {tags})")
    if "workflow_dispatch" not in on:
        errors.append("workflow must have a workflow_dispatch trigger")
    return errors


def check_steps(wf, repo_id, version):
    errors = []
    build = _first(wf, lambda r: re.search(r"nix build\b.*\.#redistributable\.|build-and-copy|kernel-builder build", r))
    test = _first(wf, lambda r: "pytest" in r and re.search(r"-m\s+kernels_ci\b", r))
    upload = _first(wf, lambda r: re.search(r"kernel-builder\b.*\bupload\b", r))
    if build is None:
        errors.append("no kernel-builder build step (`nix build .#redistributable.<variant>` or build-and-copy)")
    elif not (wf["jobs"][build[0]].get("strategy") or {}).get("matrix"):
        errors.append(f"the build step's job {build[0]!r} has no variant matrix")
    if test is None:
        errors.append("no test step running `pytest -m kernels_ci`")
    elif "MSA_BLACKWELL_BUILD" not in test[2]:
        errors.append("the kernels_ci step must set MSA_BLACKWELL_BUILD (test the built variant, not the source tree)")
    if upload is None:
        errors.append("no `kernel-builder upload` step")
    else:
        args = shlex.split(upload[2][upload[2].index("upload"):])
        opts = {a: b for a, b in zip(args, args[1:]) if a.startswith("--")}
        if opts.get("--repo-id") != repo_id:
            errors.append(f"upload --repo-id must be build.toml's {repo_id!r}, got {opts.get('--repo-id')!r}")
        if opts.get("--branch") != f"v{version}":
            errors.append(f"upload --branch must be 'v{version}', got {opts.get('--branch')!r}")
        if "${{ secrets." not in str(upload[3].get("HF_TOKEN", "")):
            errors.append("the upload step must take HF_TOKEN from a secret")
    if build and test and not _runs_after(wf, test[:2], build[:2]):
        errors.append("the kernels_ci tests must run after the build")
    if test and upload and not _runs_after(wf, upload[:2], test[:2]):
        errors.append("the upload must wait for the kernels_ci tests (job `needs`)")
    return errors


def matrix_variants(wf):
    """Variant names `<framework>-<system>` of the build job's matrix, with include/exclude applied."""
    build = _first(wf, lambda r: re.search(r"nix build\b.*\.#redistributable\.|build-and-copy|kernel-builder build", r))
    matrix = ((wf["jobs"][build[0]].get("strategy") or {}).get("matrix") or {}) if build else {}
    combos = [{"framework": f, "system": s} for f in matrix.get("framework") or [] for s in matrix.get("system") or []]
    for ex in matrix.get("exclude") or []:
        combos = [c for c in combos if any(c.get(k) != v for k, v in ex.items())]
    combos += [c for c in matrix.get("include") or [] if "framework" in c and "system" in c]
    return [f"{c['framework']}-{c['system']}" for c in combos]


def pinned_torch(path=REQUIREMENTS):
    m = re.search(r"^torch==(\d+)\.(\d+)", Path(path).read_text(), re.M)
    return Version(f"{m.group(1)}.{m.group(2)}") if m else None


def check_matrix(names, cfg, ci_torch=None):
    from kernels.backends import CUDA
    from kernels.variants import ArchVariant, Torch, _resolve_variant_for_system, parse_variant

    errors = []
    general = cfg.get("general", {})
    cuda_min = Version(general.get("cuda", {}).get("minver", "0"))
    cuda_max = Version(general.get("cuda", {}).get("maxver", "999"))
    torch_min = Version(cfg.get("torch", {}).get("minver", "0"))
    torch_max = Version(cfg.get("torch", {}).get("maxver", "999"))
    caps = sorted({c for k in cfg.get("kernel", {}).values() for c in k.get("cuda-capabilities", [])})
    if not names:
        return ["the build matrix is empty (expected matrix keys `framework` and `system`)"]
    if len(set(names)) != len(names):
        errors.append("the build matrix lists a variant twice")
    parsed, per_system = [], {}
    for name in names:
        try:
            v = parse_variant(name)
        except ValueError as e:
            errors.append(f"{name}: not a kernels build variant ({e})")
            continue
        if not (isinstance(v, ArchVariant) and isinstance(v.framework, Torch) and isinstance(v.arch.backend, CUDA)):
            errors.append(f"{name}: not a torch CUDA arch variant")
            continue
        if v.framework.cxx11_abi is not True:
            errors.append(f"{name}: kernel-builder names Linux torch variants torch<XY>-cxx11-<backend>-<system>")
        system = f"{v.arch.platform}-{v.arch.os}"
        if system not in SYSTEMS:
            errors.append(f"{name}: system {system} is not one of {sorted(SYSTEMS)}")
        cuda = v.arch.backend.version
        if not cuda_min <= cuda <= cuda_max:
            errors.append(f"{name}: CUDA {cuda} is outside build.toml's [{cuda_min}, {cuda_max}]")
        for cap in caps:
            need = MIN_CUDA_FOR_CAPABILITY.get(cap)
            if need is None:
                errors.append(f"no known minimum CUDA for capability {cap}: extend MIN_CUDA_FOR_CAPABILITY")
            elif cuda < Version(need):
                errors.append(f"{name}: CUDA {cuda} cannot compile capability {cap} (needs {need})")
        if not torch_min <= v.framework.version <= torch_max:
            errors.append(f"{name}: torch {v.framework.version} is outside build.toml's [{torch_min}, {torch_max}]")
        parsed.append(v)
        per_system.setdefault(system, set()).add(name[: -len(system) - 1])
    for system in sorted(SYSTEMS - per_system.keys()):
        errors.append(f"the build matrix has no {system} variant")
    if len({frozenset(s) for s in per_system.values()}) > 1:
        errors.append(f"torch x CUDA differs between systems: { {k: sorted(v) for k, v in per_system.items()} }")
    if ci_torch is not None and not any(v.framework.version == ci_torch for v in parsed):
        errors.append(f"no variant for torch {ci_torch}, the torch tools/requirements.txt pins for CI")
    # A runtime with exactly this torch, CUDA and CPU must get this variant from kernels' resolver.
    for v in parsed:
        got, _ = _resolve_variant_for_system(parsed, CUDA(version=v.arch.backend.version), v.arch.platform,
                                             v.arch.os, v.framework.version, True, None)
        if not got or got[0] != v:
            picked = got[0].variant_str if got else None
            errors.append(f"{v.variant_str}: kernels resolves {picked} for its own runtime")
    return errors


def check_flake(text):
    errors = []
    for needle, why in (("genKernelFlakeOutputs", "build through the kernel-builder's genKernelFlakeOutputs"),
                        ("github:huggingface/kernels", "take the kernel-builder from github:huggingface/kernels"),
                        ("inherit self", "pass `self` to genKernelFlakeOutputs")):
        if needle not in text:
            errors.append(f"flake.nix must {why}")
    return errors


def check_all(workflow=WORKFLOW, cfg=None, flake_text=None, ci_torch=None):
    cfg = read_config() if cfg is None else cfg
    general = cfg.get("general", {})
    repo_id, version = general.get("hub", {}).get("repo-id"), general.get("version")
    try:
        wf = load_workflow(workflow)
    except (OSError, yaml.YAMLError) as e:
        return [f"cannot read {workflow}: {e}"]
    if not isinstance(wf, dict) or not wf.get("jobs"):
        return [f"{workflow} has no jobs"]
    errors = check_triggers(wf, version) + check_steps(wf, repo_id, version)
    errors += check_matrix(matrix_variants(wf), cfg, ci_torch)
    errors += check_flake(FLAKE.read_text() if flake_text is None else flake_text)
    return errors


def main():
    errors = check_all(ci_torch=pinned_torch())
    for e in errors:
        print("FAIL:", e)
    names = matrix_variants(load_workflow()) if WORKFLOW.exists() else []
    if not (ROOT / "flake.lock").exists():
        print("NOTE: no flake.lock: a release builds with whatever kernel-builder github:huggingface/kernels is then")
    print(f"check_release: {len(names)} variants in the release matrix, {len(errors)} problems")
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
