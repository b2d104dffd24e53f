#!/usr/bin/env python3
"""nvcc gate: every `.cu` in build.toml compiled for sm_120 and sm_121 (objects only).

Fails on a compile error or any register spill / stack frame in `-Xptxas -v`.
The torch binding is syntax-checked against a generated registration.h.
Runs on a CPU machine: the CPU torch wheel ships the CUDA headers.
"""
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_local import REGISTRATION_H, ROOT, gencode_flags, read_config, source_files  # noqa: E402

GATE_CAPS = ("12.0", "12.1")
# The CPU torch wheel ships c10/cuda headers but not the CMake-generated macro file.
CPU_WHEEL_DEFINES = ("-DC10_CUDA_NO_CMAKE_CONFIGURE_FILE",)


def cuda_home():
    """The toolkit nvcc belongs to (a CPU torch does not look for one)."""
    for cand in (os.environ.get("CUDA_HOME"), Path(shutil.which("nvcc") or "").resolve().parent.parent,
                 "/usr/local/cuda"):
        if cand and (Path(cand) / "include" / "cuda_runtime.h").exists():
            return Path(cand)
    raise SystemExit("nvcc_gate: no CUDA toolkit found (set CUDA_HOME)")


def includes(scratch):
    from torch.utils import cpp_extension

    paths = [scratch, ROOT / "torch-ext", ROOT / "csrc", *cpp_extension.include_paths(),
             cuda_home() / "include", sysconfig.get_paths()["include"]]
    return [f"-I{p}" for p in paths]


def compile_cu(src, cap, inc):
    nvcc = shutil.which("nvcc") or "/usr/local/cuda/bin/nvcc"
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [nvcc, "-c", str(src), "-o", str(Path(tmp) / "o.o"), "-O3", "-std=c++17", "--expt-relaxed-constexpr",
               "-Xcompiler", "-fPIC", "-Xptxas", "-v", "-DTORCH_EXTENSION_NAME=_msa_blackwell_gate",
               "-D_GLIBCXX_USE_CXX11_ABI=1", *CPU_WHEEL_DEFINES, *gencode_flags([cap]), *inc]
        res = subprocess.run(cmd, capture_output=True, text=True)
    text = res.stdout + res.stderr
    if res.returncode != 0:
        return {"ok": False, "error": text[-3000:]}
    spills = sum(int(a) + int(b) for a, b in re.findall(r"(\d+) bytes spill stores, (\d+) bytes spill loads", text))
    stack = max((int(x) for x in re.findall(r"(\d+) bytes stack frame", text)), default=0)
    regs = max((int(x) for x in re.findall(r"Used (\d+) registers", text)), default=0)
    return {"ok": spills == 0 and stack == 0, "regs": regs, "spills": spills, "stack": stack}


def main():
    cfg = read_config()
    files = source_files(cfg)
    cus = [f for f in files if f.suffix == ".cu"]
    cpps = [f for f in files if f.suffix == ".cpp"]
    failures = []
    with tempfile.TemporaryDirectory() as scratch:
        Path(scratch, "registration.h").write_text(REGISTRATION_H)
        inc = includes(scratch)
        jobs = [(src, cap) for src in cus for cap in GATE_CAPS]
        with ThreadPoolExecutor(max_workers=2) as pool:
            results = list(pool.map(lambda j: compile_cu(j[0], j[1], inc), jobs))
        print("| file | sm | regs (max) | spill (B) | stack (B) | verdict |")
        print("|---|---|---|---|---|---|")
        for (src, cap), r in zip(jobs, results):
            name = src.relative_to(ROOT)
            if "error" in r:
                print(f"| {name} | {cap} | - | - | - | FAIL |")
                failures.append(f"{name} sm_{cap}:\n{r['error']}")
                continue
            print(f"| {name} | {cap} | {r['regs']} | {r['spills']} | {r['stack']} | {'ok' if r['ok'] else 'FAIL'} |")
            if not r["ok"]:
                failures.append(f"{name} sm_{cap}: spills {r['spills']} B, stack {r['stack']} B")
        for src in cpps:
            res = subprocess.run(["c++", "-fsyntax-only", "-std=c++17", "-DTORCH_EXTENSION_NAME=_msa_blackwell_gate",
                                  *CPU_WHEEL_DEFINES,
                                  "-D_GLIBCXX_USE_CXX11_ABI=1", *inc, str(src)], capture_output=True, text=True)
            verdict = "ok" if res.returncode == 0 else "FAIL"
            print(f"| {src.relative_to(ROOT)} | host | - | - | - | {verdict} |")
            if res.returncode != 0:
                failures.append(f"{src.relative_to(ROOT)}:\n{res.stderr[-3000:]}")
    print(f"\nnvcc_gate: {len(cus)} .cu files x {len(GATE_CAPS)} archs, {len(failures)} failures")
    for f in failures:
        print("FAIL:", f)
    sys.exit(1 if failures or not cus else 0)


if __name__ == "__main__":
    main()
