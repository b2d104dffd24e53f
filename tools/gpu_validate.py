#!/usr/bin/env python3
"""The GPU path: build for this card, load through `kernels`, run the GPU tests and benchmarks.

    python3 tools/gpu_validate.py [--steps build,load,tests,bench] [--bench decode prefill ...]
                                  [--pytest "-k decode"] [--out DIR]

Writes DIR/validation.json (card, versions, date, per-step verdicts, test counts,
benchmark records) and DIR/*.log. `tools/write_reports.py` turns the JSON into
VALIDATION.md and benchmarks/RESULTS.md. Carry the `kernels` wheel where the
machine has no `kernels` package (see README).
"""
import argparse
import datetime
import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPO_ID = "org/msa-blackwell"


def environment():
    import torch
    import triton

    props = torch.cuda.get_device_properties(0)
    return {
        "card": torch.cuda.get_device_name(0),
        "capability": "{}.{}".format(*torch.cuda.get_device_capability(0)),
        "sms": props.multi_processor_count,
        "torch": torch.__version__,
        "triton": triton.__version__,
        "cuda": torch.version.cuda,
        "driver": subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True).stdout.strip(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def step(name, cmd, out, env=None, timeout=None):
    t0 = time.time()
    log = out / f"{name}.log"
    with open(log, "w") as f:
        try:
            rc = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, env=env, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
    dt = time.time() - t0
    tail = log.read_text()[-1500:]
    print(f"== {name}: rc={rc} in {dt:.0f}s\n{tail}", flush=True)
    return {"step": name, "rc": rc, "seconds": round(dt, 1)}


def load_check(build):
    """Both loaders the README documents, offline."""
    code = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "import kernels\n"
        f"m1 = kernels.get_local_kernel(Path({str(build)!r}), trust_remote_code=[{REPO_ID!r}])\n"
        f"os.environ['LOCAL_KERNELS'] = {REPO_ID!r} + '=' + {str(build.parent)!r}\n"
        f"m2 = kernels.get_kernel({REPO_ID!r}, version=1, trust_remote_code=[{REPO_ID!r}])\n"
        "for m in (m1, m2):\n"
        "    assert m.has_native_ops(), 'native ops not loaded'\n"
        "    print(m.__name__, m._backend.ops)\n"
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    res = subprocess.run([sys.executable, "-c", code], cwd="/tmp", capture_output=True, text=True, env=env)
    print("== load:", res.returncode, (res.stdout + res.stderr)[-1500:], flush=True)
    return {"step": "load", "rc": res.returncode, "output": (res.stdout + res.stderr)[-1500:]}


def junit_counts(path):
    if not path.exists():
        return {}
    suite = ET.parse(path).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    failed = [f"{c.get('classname')}::{c.get('name')}" for c in suite.iter("testcase")
              if c.find("failure") is not None or c.find("error") is not None]
    counts["failed_cases"] = failed[:50]
    counts["files"] = sorted({c.get("classname", "").rsplit(".", 1)[-1] for c in suite.iter("testcase")})
    return counts


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", default="build,load,tests,bench")
    ap.add_argument("--bench", nargs="*", default=["native_ops", "decode", "prefill", "indexer", "nvfp4"])
    ap.add_argument("--pytest", default="", help="extra pytest arguments")
    ap.add_argument("--out", default=os.environ.get("OUT", str(ROOT / ".out")))
    ap.add_argument("--bench-timeout", type=int, default=300)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    steps = args.steps.split(",")
    report = {"environment": environment(), "steps": [], "tests": {}, "benchmarks": {}}
    print(json.dumps(report["environment"]), flush=True)
    build = ROOT / "build"
    cap = report["environment"]["capability"]

    if "build" in steps:
        report["steps"].append(step("build", [sys.executable, "tools/build_local.py", "--capabilities", cap,
                                              "--out", str(build)], out))
    if "load" in steps:
        report["steps"].append(load_check(build))
    if "tests" in steps:
        env = dict(os.environ, MSA_BLACKWELL_BUILD=str(build), HF_HUB_OFFLINE="1")
        xml = out / "pytest.xml"
        cmd = [sys.executable, "-m", "pytest", "-q", f"--junitxml={xml}", "-p", "no:cacheprovider",
               *args.pytest.split()]
        report["steps"].append(step("tests", cmd, out, env))
        report["tests"] = junit_counts(xml)
    if "bench" in steps:
        env = dict(os.environ, MSA_BLACKWELL_BUILD=str(build), HF_HUB_OFFLINE="1")
        for name in args.bench:
            script = ROOT / "benchmarks" / f"bench_{name}.py"
            if not script.exists():
                continue
            report["steps"].append(step(f"bench_{name}", [sys.executable, str(script)], out, env,
                                        timeout=args.bench_timeout))
            result = ROOT / "benchmarks" / "results" / f"{name}.json"
            if result.exists():
                report["benchmarks"][name] = json.loads(result.read_text())
                (out / f"{name}.json").write_text(result.read_text())
    (out / "validation.json").write_text(json.dumps(report, indent=1))
    print("== summary:", json.dumps({"steps": report["steps"], "tests": report["tests"]}, indent=1))


if __name__ == "__main__":
    main()
