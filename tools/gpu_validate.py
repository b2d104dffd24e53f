#!/usr/bin/env python3
"""The GPU path: build for this card, load through `kernels`, run the GPU tests and benchmarks.

    python3 tools/gpu_validate.py [--steps build,load,tests,fuzz,sanitize,bench] [--bench decode prefill ...]
                                  [--pytest "-k decode"] [--out DIR]

Writes DIR/validation.json (card, versions, date, per-step verdicts, test counts,
benchmark records) and DIR/*.log. The `tests` step runs the fuzz tests with few examples
(MSA_FUZZ_EXAMPLES, default 25); the opt-in `fuzz` step runs each test of tests/test_fuzz.py
in its own process with --fuzz-examples per function (500), several at once, and records how
many examples each function actually ran. The opt-in `sanitize`
step runs the `sanitize`-marked tests under compute-sanitizer (memcheck, racecheck) and records
{tool, errors, rc} per tool under "sanitizer". `tools/write_reports.py` turns the JSON into
VALIDATION.md and benchmarks/RESULTS.md. Carry the `kernels` wheel where the
machine has no `kernels` package (see README).
"""
import argparse
import collections
import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPO_ID = "org/msa-blackwell"
SANITIZER_TOOLS = ("memcheck", "racecheck")


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
        # tests/conftest.py: the launchers pick this architecture's configs on the card at hand
        "launch_configs_of": "sm_{}x (forced, MSA_TEST_ARCH_MAJOR)".format(os.environ["MSA_TEST_ARCH_MAJOR"])
        if os.environ.get("MSA_TEST_ARCH_MAJOR") else "this card",
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
    # e.g. the >2^31-element pool tests skip when the card lacks the memory: say so
    counts["skipped_cases"] = [f"{c.get('classname')}::{c.get('name')}" for c in suite.iter("testcase")
                               if c.find("skipped") is not None][:50]
    counts["files"] = sorted({c.get("classname", "").rsplit(".", 1)[-1] for c in suite.iter("testcase")})
    return counts


def find_sanitizer():
    """compute-sanitizer on PATH, under CUDA_HOME/CUDA_PATH or /usr/local/cuda, or next to nvcc; None if absent."""
    candidates = [shutil.which("compute-sanitizer")]
    for base in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if base:
            candidates.append(os.path.join(base, "bin", "compute-sanitizer"))
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(os.path.join(os.path.dirname(os.path.realpath(nvcc)), "compute-sanitizer"))
    return next((c for c in candidates if c and os.path.isfile(c) and os.access(c, os.X_OK)), None)


def parse_sanitizer_log(tool, text):
    """Errors compute-sanitizer reported (summed over processes); None when it printed no summary.

    racecheck summarises as 'RACECHECK SUMMARY: H hazards displayed (E errors, W warnings)',
    the other tools as 'ERROR SUMMARY: N errors'.
    """
    if tool == "racecheck":
        races = re.findall(r"RACECHECK SUMMARY:\s*(\d+) hazards? displayed\s*\((\d+) errors?", text)
        if races:
            return sum(int(errors) for _, errors in races)
    summaries = re.findall(r"ERROR SUMMARY:\s*(\d+) errors?", text)
    return sum(int(n) for n in summaries) if summaries else None


def sanitize(binary, tools, out, env, timeout):
    """Run `pytest -m sanitize` under each compute-sanitizer tool: one {tool, errors, rc, ...} record each."""
    records = []
    for tool in tools:
        if binary is None:
            records.append({"tool": tool, "errors": None, "rc": None,
                            "note": "compute-sanitizer not found (PATH, CUDA_HOME, /usr/local/cuda, next to nvcc)"})
            continue
        xml = out / f"sanitize-{tool}.xml"
        # pytest is the one CUDA process (Triton's ptxas runs are not); importing torch/Triton before
        # the first CUDA call can outlast the default 10 s attach timeout.
        cmd = [binary, "--tool", tool, "--target-processes", "application-only", "--launch-timeout", "0",
               "--report-api-errors", "no"]
        tool_env = dict(env)
        if tool == "memcheck":
            cmd += ["--leak-check", "no", "--check-device-heap", "no"]
            tool_env["PYTORCH_NO_CUDA_MEMORY_CACHING"] = "1"  # one allocation per tensor: overruns hit its end
        cmd += [sys.executable, "-m", "pytest", "-m", "sanitize", "-x", "-q", "-p", "no:cacheprovider",
                f"--junitxml={xml}"]
        log = out / f"sanitize_{tool}.log"
        t0 = time.time()
        with open(log, "w") as f:
            proc = subprocess.Popen(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, env=tool_env,
                                    start_new_session=True)
            try:
                rc = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # the sanitizer and the pytest it started
                proc.wait()
                rc = "timeout"
        text = log.read_text(errors="replace")
        rec = {"tool": tool, "errors": parse_sanitizer_log(tool, text), "rc": rc,
               "seconds": round(time.time() - t0, 1), "command": " ".join(cmd)}
        counts = junit_counts(xml)
        if counts:
            rec["tests"] = {k: counts[k] for k in ("tests", "passed", "failures", "errors", "skipped")}
        if "Device not supported" in text:
            rec["note"] = "compute-sanitizer: device not supported on this machine"
        print(f"== sanitize {tool}: errors={rec['errors']} rc={rc} in {rec['seconds']:.0f}s\n{text[-1500:]}",
              flush=True)
        records.append(rec)
    return records


FUZZ_FILE = "tests/test_fuzz.py"


def fuzz_test_names():
    return re.findall(r"^def (test_fuzz_\w+)\(", (ROOT / FUZZ_FILE).read_text(), re.M)


def fuzz(out, env, examples, workers, timeout, only=""):
    """Each fuzz test of tests/test_fuzz.py in its own pytest process with `examples` per function,
    up to `workers` at once, each killed after `timeout` s: a slow or failing function leaves the
    others' results. Returns the step record and {examples_required, examples_run, results, tests}."""
    counts_dir = Path(tempfile.mkdtemp(prefix="msa_fuzz_counts_"))
    env = dict(env, MSA_FUZZ_EXAMPLES=str(examples), MSA_FUZZ_COUNTS=str(counts_dir))
    t0 = time.time()
    wanted = [w for w in only.split(",") if w] or [""]
    pending, running, results = [n for n in fuzz_test_names() if any(w in n for w in wanted)], {}, {}
    while pending or running:
        while pending and len(running) < max(1, workers):
            name = pending.pop(0)
            log = open(out / f"fuzz_{name}.log", "w")
            cmd = [sys.executable, "-m", "pytest", f"{FUZZ_FILE}::{name}", "-q", "-p", "no:cacheprovider"]
            proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True)
            running[name] = (proc, time.time(), log)
        time.sleep(0.5)
        for name, (proc, started, log) in list(running.items()):
            rc = proc.poll()
            if rc is None and time.time() - started > timeout:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                rc = "timeout"
            if rc is not None:
                log.close()
                results[name] = {"rc": rc, "seconds": round(time.time() - started, 1)}
                del running[name]
    counts = collections.Counter()
    for path in counts_dir.glob("fuzz-*.json"):
        counts.update(json.loads(path.read_text()))
    shutil.rmtree(counts_dir, ignore_errors=True)
    failed = [f"tests.test_fuzz::{n}" for n, r in sorted(results.items()) if r["rc"] != 0]
    for name, r in results.items():
        r["examples"] = counts.get(name, 0)
        if r["rc"] != 0:
            r["log_tail"] = (out / f"fuzz_{name}.log").read_text(errors="replace")[-3000:]
        print(f"== fuzz {name}: rc={r['rc']} examples={r['examples']} in {r['seconds']:.0f}s", flush=True)
    tests = {"tests": len(results), "failures": len(failed), "errors": 0, "skipped": 0,
             "passed": len(results) - len(failed), "failed_cases": failed}
    rec = {"step": "fuzz", "rc": 0 if not failed else 1, "seconds": round(time.time() - t0, 1)}
    return rec, {"examples_required": examples, "examples_run": {n: counts.get(n, 0) for n in sorted(results)},
                 "results": dict(sorted(results.items())), "tests": tests}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", default="build,load,tests,bench")
    ap.add_argument("--bench", nargs="*", default=["native_ops", "decode", "prefill", "indexer", "nvfp4"])
    ap.add_argument("--pytest", default="", help="extra pytest arguments")
    ap.add_argument("--out", default=os.environ.get("OUT", str(ROOT / ".out")))
    ap.add_argument("--bench-timeout", type=int, default=300)
    # Both tools together stay inside one 10-minute device command.
    ap.add_argument("--sanitize-timeout", type=int, default=270, help="seconds per compute-sanitizer tool")
    ap.add_argument("--sanitize-tools", default=",".join(SANITIZER_TOOLS))
    ap.add_argument("--fuzz-examples", type=int, default=500, help="hypothesis examples per fuzz test (fuzz step)")
    ap.add_argument("--fuzz-workers", type=int, default=min(11, os.cpu_count() or 1),
                    help="fuzz tests run at once (one process each)")
    ap.add_argument("--fuzz-timeout", type=int, default=420, help="seconds per fuzz test")
    ap.add_argument("--fuzz-only", default="",
                    help="only the fuzz tests whose name contains one of these (comma-separated)")
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
        env.setdefault("MSA_FUZZ_EXAMPLES", "25")  # the fuzz step runs the full count
        xml = out / "pytest.xml"
        cmd = [sys.executable, "-m", "pytest", "-q", f"--junitxml={xml}", "-p", "no:cacheprovider",
               *args.pytest.split()]
        report["steps"].append(step("tests", cmd, out, env))
        report["tests"] = junit_counts(xml)
    if "fuzz" in steps:
        env = dict(os.environ, MSA_BLACKWELL_BUILD=str(build), HF_HUB_OFFLINE="1")
        rec, report["fuzz"] = fuzz(out, env, args.fuzz_examples, args.fuzz_workers, args.fuzz_timeout,
                                   args.fuzz_only)
        report["steps"].append(rec)
    if "sanitize" in steps:
        env = dict(os.environ, MSA_BLACKWELL_BUILD=str(build), HF_HUB_OFFLINE="1")
        report["sanitizer"] = sanitize(find_sanitizer(), args.sanitize_tools.split(","), out, env,
                                       args.sanitize_timeout)
        report["steps"] += [{"step": f"sanitize_{r['tool']}", "rc": r["rc"], "seconds": r.get("seconds", 0)}
                            for r in report["sanitizer"]]
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
    print("== summary:", json.dumps({"steps": report["steps"], "tests": report["tests"],
                                     "sanitizer": report.get("sanitizer", []),
                                     "fuzz": report.get("fuzz", {}).get("examples_run")}, indent=1))


if __name__ == "__main__":
    main()
