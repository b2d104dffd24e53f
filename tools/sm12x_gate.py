#!/usr/bin/env python3
"""SM12x compile gate for every Triton kernel config the package can launch.

Each module of `msa_blackwell.triton_kernels` lists its configs in `gate_cases()`.
Every case is compiled on the CPU for cuda:120 and cuda:121; the PTX goes through
Triton's Blackwell ptxas with -v. The gate fails when a block needs more than
101,376 bytes of shared memory, when any register spills, when a case fails to
compile, or when a `@triton.jit` kernel of a module has no case at all.
"""
import argparse
import importlib
import os
import pkgutil
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SMEM_LIMIT = 101_376
TARGETS = (120, 121)


def ptxas_path():
    import triton

    bindir = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
    for name in ("ptxas-blackwell", "ptxas"):
        if (bindir / name).exists():
            return bindir / name
    raise SystemExit("sm12x_gate: Triton's ptxas not found under " + str(bindir))


def collect_cases():
    sys.path.insert(0, str(ROOT / "torch-ext"))
    import triton

    import msa_blackwell.triton_kernels as tk

    modules = [importlib.import_module(f"msa_blackwell.triton_kernels.{info.name}")
               for info in pkgutil.iter_modules(tk.__path__) if info.name != "gate"]
    jitted = {(mod.__name__, name): obj for mod in modules for name, obj in vars(mod).items()
              if isinstance(obj, triton.runtime.jit.JITFunction) and obj.__module__ == mod.__name__}
    cases, uncovered = [], []
    for mod in modules:
        # Entry kernels are the jitted functions no other jitted function of the package calls
        # (the rest inline into their callers).
        kernels = {name for (m, name) in jitted if m == mod.__name__
                   and not any(re.search(rf"\b{name}\s*\(", other.src)
                               for key, other in jitted.items() if key != (m, name))}
        mod_cases = mod.gate_cases() if hasattr(mod, "gate_cases") else []
        covered = {c.fn.__name__ for c in mod_cases}
        short = mod.__name__.rsplit(".", 1)[1]
        uncovered += [f"{short}.{k}" for k in sorted(kernels - covered)]
        cases += mod_cases
    return cases, uncovered


def ptxas_report(ptxas, ptx, cap):
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "k.ptx"
        src.write_text(ptx)
        arch = f"sm_{cap}a" if f".target sm_{cap}a" in ptx else f"sm_{cap}"
        res = subprocess.run([str(ptxas), f"-arch={arch}", "-v", str(src), "-o", str(Path(tmp) / "k.cubin")],
                             capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(res.stderr.strip()[-2000:])
    text = res.stderr + res.stdout
    regs = max((int(x) for x in re.findall(r"Used (\d+) registers", text)), default=0)
    spills = sum(int(a) + int(b) for a, b in re.findall(r"(\d+) bytes spill stores, (\d+) bytes spill loads", text))
    static_smem = max((int(x) for x in re.findall(r"(\d+) bytes smem", text)), default=0)
    stack = max((int(x) for x in re.findall(r"(\d+) bytes stack frame", text)), default=0)
    return regs, spills, static_smem, stack


def compile_case(case, cap, ptxas):
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    # Mirror a real launch: torch allocations are 16-byte aligned, so Triton marks every
    # pointer (and each validated stride) divisible by 16; without it loads don't vectorise.
    aligned = {name for name, ty in case.signature.items() if ty.startswith("*")} | set(case.aligned_ints)
    attrs = {(case.fn.arg_names.index(name),): [["tt.divisibility", 16]] for name in aligned}
    src = ASTSource(fn=case.fn, signature=case.signature, constexprs=case.constexprs, attrs=attrs)
    kernel = triton.compile(src, target=GPUTarget("cuda", cap, 32),
                            options={"num_warps": case.num_warps, "num_stages": case.num_stages})
    regs, spills, static_smem, stack = ptxas_report(ptxas, kernel.asm["ptx"], cap)
    return {"smem": kernel.metadata.shared + static_smem, "regs": regs, "spills": spills, "stack": stack}


_WORKER_CASES = None


def _compile_job(job):
    """Runs in a worker process: (case index, capability) -> report row."""
    global _WORKER_CASES
    if _WORKER_CASES is None:
        _WORKER_CASES = collect_cases()[0]
    index, cap = job
    case = _WORKER_CASES[index]
    try:
        return index, cap, compile_case(case, cap, ptxas_path()), None
    except Exception as e:  # a config that does not compile fails the gate
        msg = str(e).strip().splitlines()
        return index, cap, None, msg[-1] if msg else repr(e)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-k", default="", help="only cases whose name contains this")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    args = ap.parse_args()

    ptxas_path()
    cases, uncovered = collect_cases()
    failures = [f"kernel without gate case: {u}" for u in uncovered]
    jobs = [(i, cap) for i, case in enumerate(cases) if args.k in case.name for cap in TARGETS]
    print("| kernel | config | sm | smem (B) | regs | spill (B) | verdict |")
    print("|---|---|---|---|---|---|---|", flush=True)
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for index, cap, r, error in pool.map(_compile_job, jobs):
            case = cases[index]
            cfg = f"w{case.num_warps} s{case.num_stages}"
            if error is not None:
                failures.append(f"{case.name} sm_{cap}: compile error: {error}")
                print(f"| {case.name} | {cfg} | {cap} | - | - | - | FAIL |", flush=True)
                continue
            bad = []
            if r["smem"] > SMEM_LIMIT:
                bad.append(f"smem {r['smem']} > {SMEM_LIMIT}")
            if r["spills"] or r["stack"]:
                bad.append(f"spills {r['spills']} B, stack {r['stack']} B")
            if bad:
                failures.append(f"{case.name} {cfg} sm_{cap}: " + "; ".join(bad))
            verdict = "ok" if not bad else "FAIL"
            row = (case.name, cfg, cap, r["smem"], r["regs"], r["spills"], verdict)
            print("| " + " | ".join(str(x) for x in row) + " |", flush=True)
    print(f"\nsm12x_gate: {len(jobs)} compiles of {len(cases)} cases, {len(failures)} failures")
    for f in failures:
        print("FAIL:", f)
    if not jobs:
        print("sm12x_gate: no Triton kernel cases found")
    sys.exit(1 if failures or not jobs else 0)


if __name__ == "__main__":
    main()
