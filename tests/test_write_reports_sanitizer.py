"""The compute-sanitizer path on the host: gpu_validate's sanitize step (with a stand-in
compute-sanitizer script), its log parsing, and the VALIDATION.md rows write_reports makes."""
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import gpu_validate  # noqa: E402
import write_reports  # noqa: E402

ENV = {"card": "NVIDIA H200", "capability": "9.0", "sms": 132, "torch": "2.13.0", "triton": "3.7.1",
       "cuda": "13.0", "driver": "580.1", "date": "2026-12-01 10:00 UTC"}


def test_parse_sanitizer_log():
    memcheck = "========= COMPUTE-SANITIZER\n....\n========= ERROR SUMMARY: 0 errors\n"
    assert gpu_validate.parse_sanitizer_log("memcheck", memcheck) == 0
    assert gpu_validate.parse_sanitizer_log("memcheck", "========= ERROR SUMMARY: 1 error\n"
                                                        "========= ERROR SUMMARY: 12 errors\n") == 13
    race = "========= RACECHECK SUMMARY: 3 hazards displayed (2 errors, 1 warning)\n"
    assert gpu_validate.parse_sanitizer_log("racecheck", race) == 2
    assert gpu_validate.parse_sanitizer_log("racecheck", "========= ERROR SUMMARY: 4 errors\n") == 4
    assert gpu_validate.parse_sanitizer_log("memcheck", "Device not supported\n") is None


def _fake_sanitizer(tmp_path, body):
    path = tmp_path / "compute-sanitizer"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def test_sanitize_step_records_errors_rc_and_command(tmp_path):
    # The stand-in prints what the real tool prints at exit and checks it was handed pytest -m sanitize.
    fake = _fake_sanitizer(tmp_path, 'case "$*" in *"-m pytest -m sanitize -x -q"*) ;; *) exit 9 ;; esac\n'
                                     'echo "========= ERROR SUMMARY: 2 errors"\nexit 0\n')
    recs = gpu_validate.sanitize(fake, ["memcheck"], tmp_path, dict(os.environ), timeout=60)
    assert [(r["tool"], r["errors"], r["rc"]) for r in recs] == [("memcheck", 2, 0)]
    assert "--tool memcheck" in recs[0]["command"] and (tmp_path / "sanitize_memcheck.log").exists()


def test_sanitize_step_timeout_and_missing_binary(tmp_path):
    fake = _fake_sanitizer(tmp_path, "sleep 30\n")
    rec, = gpu_validate.sanitize(fake, ["racecheck"], tmp_path, dict(os.environ), timeout=1)
    assert rec["rc"] == "timeout" and rec["errors"] is None
    missing = gpu_validate.sanitize(None, ["memcheck", "racecheck"], tmp_path, {}, timeout=1)
    assert [(r["tool"], r["errors"], r["rc"]) for r in missing] == [("memcheck", None, None), ("racecheck", None, None)]
    assert "not found" in missing[0]["note"]


def test_find_sanitizer_on_path(tmp_path, monkeypatch):
    fake = _fake_sanitizer(tmp_path, "exit 0\n")
    monkeypatch.setenv("PATH", str(tmp_path) + os.pathsep + os.environ.get("PATH", ""))
    assert gpu_validate.find_sanitizer() == fake


@pytest.mark.parametrize("rec,verdict", [
    ({"tool": "memcheck", "errors": 0, "rc": 0}, "pass"),
    ({"tool": "memcheck", "errors": 0, "rc": 1}, "FAIL"),  # a test failed under the tool
    ({"tool": "racecheck", "errors": 5, "rc": 0}, "FAIL"),
    ({"tool": "memcheck", "errors": None, "rc": "timeout"}, "FAIL"),
])
def test_sanitizer_verdict(rec, verdict):
    assert write_reports.sanitizer_verdict(rec) == verdict


def test_validation_md_renders_sanitizer_rows():
    run = {"environment": ENV, "steps": [{"step": "sanitize_memcheck", "rc": 0, "seconds": 80.0}],
           "tests": {}, "benchmarks": {},
           "sanitizer": [
               {"tool": "memcheck", "errors": 0, "rc": 0, "tests": {"tests": 11, "passed": 11, "failures": 0,
                                                                   "errors": 0, "skipped": 0}},
               {"tool": "racecheck", "errors": 3, "rc": 0},
               {"tool": "memcheck", "errors": None, "rc": None, "note": "compute-sanitizer not found"},
           ]}
    lines = write_reports.validation_md([run]).splitlines()
    assert "### compute-sanitizer" in lines
    assert "| NVIDIA H200 | 2026-12-01 10:00 UTC | memcheck | 0 | 0 | 11 of 11 | pass |  |" in lines
    assert "| NVIDIA H200 | 2026-12-01 10:00 UTC | racecheck | 3 | 0 |  | FAIL |  |" in lines
    assert ("| NVIDIA H200 | 2026-12-01 10:00 UTC | memcheck | no summary |  |  | FAIL | "
            "compute-sanitizer not found |") in lines
    # a run without sanitizer records gets no section
    assert "### compute-sanitizer" not in write_reports.validation_md([dict(run, sanitizer=[])])


def test_fuzz_step_counts_examples_per_function(tmp_path, monkeypatch):
    # Two real fuzz tests on the CPU with 3 examples each, one process each: the counts come from
    # the tests, not from the setting; a test killed at the timeout counts as failed with 0 examples.
    assert len(gpu_validate.fuzz_test_names()) >= 11
    names = ["test_fuzz_sparse_topk_select", "test_fuzz_nvfp4_scale_swizzle"]
    monkeypatch.setattr(gpu_validate, "fuzz_test_names", lambda: list(names))
    env = dict(os.environ, MSA_FUZZ_RANDOM="0")
    rec, fuzz = gpu_validate.fuzz(tmp_path, env, examples=3, workers=2, timeout=600)
    assert rec["rc"] == 0, [r.get("log_tail") for r in fuzz["results"].values()]
    assert fuzz["tests"]["failures"] == 0 and fuzz["tests"]["passed"] == 2
    assert fuzz["examples_run"] == {n: 3 for n in names}
    rec, fuzz = gpu_validate.fuzz(tmp_path, env, examples=3, workers=2, timeout=0)
    assert rec["rc"] == 1 and fuzz["examples_run"] == {n: 0 for n in names}
    assert all(r["rc"] == "timeout" for r in fuzz["results"].values())


def test_validation_md_renders_fuzz_rows():
    fuzz = {"examples_required": 500, "tests": {"tests": 2, "passed": 1, "failures": 1, "errors": 0, "skipped": 0,
                                                "failed_cases": ["tests.test_fuzz::test_fuzz_b"]},
            "examples_run": {"test_fuzz_a": 500, "test_fuzz_b": 731, "test_fuzz_c": 120}}
    run = {"environment": ENV, "steps": [], "tests": {}, "benchmarks": {}, "fuzz": fuzz}
    extra = "more calls than examples: a failing example was shrunk or replayed"
    assert write_reports.fuzz_rows(run) == [("a", 500, 500, "pass", ""), ("b", 731, 500, "FAIL", extra),
                                           ("c", 120, 500, "FAIL", "")]
    lines = write_reports.validation_md([run]).splitlines()
    assert "### Property-based fuzzing (hypothesis)" in lines
    assert "| `a` | 500 | >= 500 | pass |  |" in lines
    # per-process results decide when present; a run killed before pytest reported gets no verdict
    per_proc = dict(fuzz, results={"test_fuzz_a": {"rc": 0}, "test_fuzz_b": {"rc": 1}, "test_fuzz_c": {"rc": 0}})
    assert [r[3] for r in write_reports.fuzz_rows(dict(run, fuzz=per_proc))] == ["pass", "FAIL", "FAIL"]
    timed_out = dict(fuzz, results={"test_fuzz_a": {"rc": 0}, "test_fuzz_b": {"rc": 1},
                                    "test_fuzz_c": {"rc": "timeout", "seconds": 300.4}})
    assert write_reports.fuzz_rows(dict(run, fuzz=timed_out))[2] == (
        "c", 120, 500, "no verdict", "killed at its 300 s limit before it reported")
    killed = dict(fuzz, tests={})
    assert [r[3] for r in write_reports.fuzz_rows(dict(run, fuzz=killed))] == ["no verdict"] * 3
    assert "### Property-based fuzzing (hypothesis)" not in write_reports.validation_md([dict(run, fuzz={})])
