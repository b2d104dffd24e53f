#!/usr/bin/env python3
"""Validate build.toml with the `kernels` package's own parser, plus project rules.

Rules: edition 5 with the required general fields; every kernel targets CUDA 12.0
and 12.1; every `.cu`/`.cuh`/`.h` under csrc/ is listed in a kernel's `src` and every
listed file exists; no generated file is tracked by git.
"""
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_local import ROOT, read_config  # noqa: E402

GENERATED = ("_ops.py", "registration.h", "setup.py", "pyproject.toml", "CMakeLists.txt")


def main():
    from kernels._rust import Build

    errors = []
    try:
        Build.open(str(ROOT))
    except ValueError as e:
        errors.append(f"kernels parser rejected build.toml: {e}")
    cfg = read_config()
    general = cfg.get("general", {})
    want = {"name": "msa-blackwell", "version": 1, "license": "Apache-2.0", "edition": 5, "backends": ["cuda"]}
    for key, value in want.items():
        if general.get(key) != value:
            errors.append(f"general.{key} must be {value!r}, got {general.get(key)!r}")
    if general.get("hub", {}).get("repo-id") != "org/msa-blackwell":
        errors.append("general.hub.repo-id must be 'org/msa-blackwell'")
    if "minver" not in general.get("cuda", {}):
        errors.append("general.cuda.minver is required")

    listed = set()
    for name, kernel in cfg.get("kernel", {}).items():
        caps = kernel.get("cuda-capabilities", [])
        for cap in ("12.0", "12.1"):
            if cap not in caps:
                errors.append(f"kernel.{name} must target capability {cap}")
        listed.update(kernel.get("src", []))
    listed.update(cfg.get("torch", {}).get("src", []))
    for path in sorted(listed):
        if not (ROOT / path).exists():
            errors.append(f"build.toml lists a missing file: {path}")
    for f in sorted((ROOT / "csrc").rglob("*")):
        rel = str(f.relative_to(ROOT))
        if f.suffix in (".cu", ".cuh", ".h") and rel not in listed:
            errors.append(f"build.toml does not list {rel}")

    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    for path in tracked:
        if Path(path).name in GENERATED or path.startswith(("build/", "cmake/")):
            errors.append(f"generated file is tracked: {path}")

    for e in errors:
        print("FAIL:", e)
    print(f"check_build_config: {len(listed)} files listed, {len(errors)} problems")
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
