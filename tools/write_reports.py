#!/usr/bin/env python3
"""Regenerate VALIDATION.md and benchmarks/RESULTS.md from measured device runs.

    python3 tools/write_reports.py [RUN_DIR ...] [--bench-dir DIR --date "YYYY-MM-DD HH:MM UTC"]
                                   [--sweep LOG ...]

Each RUN_DIR holds a `validation.json` written by tools/gpu_validate.py; it is copied to
benchmarks/results/validation-<card>-<date>.json. `--bench-dir` stores a run whose
validation.json did not come back (only its benchmarks/results JSON files did): the card is
read from the records, the software versions are marked as not recorded. `--sweep` copies a
sweep script's printed table to benchmarks/results/sweeps/. The reports are then rebuilt from
everything stored (newest first), with each issue's targets judged from the records:
nothing in them is typed by hand. The same command redraws the PNG plots in
benchmarks/plots/ (benchmarks/plot_results.py) and embeds them in RESULTS.md; they need
matplotlib, so run it with the project's environment: `.venv/bin/python tools/write_reports.py`
(without matplotlib the reports are still written, the plots are not, and it exits 1).
"""
import argparse
import json
import re
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
COLUMNS = ("name", "shape", "dtype", "time_us", "metric", "value", "baseline", "ratio", "target", "pass")


def slug(text):
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()


def store(run_dir):
    data = json.loads((Path(run_dir) / "validation.json").read_text())
    env = data["environment"]
    dest = RESULTS / f"validation-{slug(env['card'])}-{slug(env['date'])}.json"
    xml = Path(run_dir) / "pytest.xml"
    if data.get("tests") and "files" not in data["tests"] and xml.exists():
        sys.path.insert(0, str(ROOT / "tools"))
        from gpu_validate import junit_counts

        data["tests"]["files"] = junit_counts(xml)["files"]
    dest.write_text(json.dumps(data, indent=1))
    for name in data.get("benchmarks", {}):
        src = Path(run_dir) / f"{name}.json"
        if src.exists():
            shutil.copy2(src, RESULTS / f"{name}.json")
    return dest


def store_bench_dir(bench_dir, date):
    benchmarks = {p.stem: json.loads(p.read_text()) for p in sorted(Path(bench_dir).glob("*.json"))
                  if p.stem != "validation"}
    card = next(r["card"] for recs in benchmarks.values() for r in recs if r.get("card"))
    env = {"card": card, "capability": "9.0" if "H100" in card or "H200" in card else "?", "sms": "?",
           "torch": "not recorded", "triton": "not recorded", "cuda": "not recorded", "driver": "not recorded",
           "date": date}
    data = {"environment": env, "steps": [], "tests": {}, "benchmarks": benchmarks}
    dest = RESULTS / f"validation-{slug(card)}-{slug(date)}.json"
    dest.write_text(json.dumps(data, indent=1))
    for name, recs in benchmarks.items():
        (RESULTS / f"{name}.json").write_text(json.dumps(recs, indent=1))
    return dest


def fmt(v):
    if isinstance(v, dict):
        return " ".join(f"{k}={x}" for k, x in v.items())
    if isinstance(v, list):
        return "x".join(str(x) for x in v)
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, bool):
        return "pass" if v else "FAIL"
    return "" if v is None else str(v)


def env_line(env):
    return (f"**{env['card']}** (sm_{env['capability'].replace('.', '')}, {env['sms']} SMs), torch {env['torch']}, "
            f"Triton {env['triton']}, CUDA {env['cuda']}, driver {env['driver']}, {env['date']}"
            + ("" if env.get("launch_configs_of", "this card") == "this card"
               else f"; launch configs of {env['launch_configs_of']}"))


def table(records, columns):
    cols = [c for c in columns if any(c in r for r in records)]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in records:
        lines.append("| " + " | ".join(fmt(r.get(c)) for c in cols) + " |")
    return lines


def _find(recs, name, **shape):
    for r in recs:
        if r.get("name") == name and all(str(r.get("shape", {}).get(k) if isinstance(r.get("shape"), dict)
                                              else "") == str(v) for k, v in shape.items()):
            return r
    return None


def checks(bench, recs):
    """(case, metric, value, target, pass) rows: the issues' performance targets, judged from records."""
    rows = []
    if bench == "native_ops":
        for r in recs:
            if r["name"] == "sparse_topk_select":
                rows.append((f"{r['name']} {fmt(r['shape'])}", "time / torch.topk+sort", r["ratio"], "<= 0.5",
                             r["ratio"] <= 0.5))
            elif r["name"] == "native_topk_from_scores":
                rows.append((f"{r['name']} {fmt(r['shape'])}", "time us (graph)", r["time_us"], "<= 25",
                             r["time_us"] <= 25))
                rows.append((f"{r['name']} {fmt(r['shape'])}", "time / torch.topk", r["ratio"], "<= 0.5",
                             r["ratio"] <= 0.5))
            elif r["name"] == "build_k2q_csr":
                limit = 150 if r["shape"]["T"] <= 16384 else 1000
                rows.append((f"{r['name']} {fmt(r['shape'])}", "time us", r["time_us"], f"<= {limit}",
                             r["time_us"] <= limit))
    elif bench == "decode":
        for r in recs:
            sh = r["shape"]
            case = f"Hq{sh['Hq']}/Hkv{sh['Hkv']} {r['dtype']} ctx{sh['ctx']} B{sh['B']} sq{sh['seqlen_q']}"
            if sh["B"] >= 16:
                rows.append((case, "fraction of copy bw", r["ratio"], ">= 0.80", r["ratio"] >= 0.8))
            elif sh["B"] == 4:
                rows.append((case, "fraction of copy bw", r["ratio"], ">= 0.45", r["ratio"] >= 0.45))
            elif sh["B"] == 1 and sh["seqlen_q"] == 1:
                rows.append((case, "time us (graph)", r["time_us"], "<= 6", r["time_us"] <= 6))
            if "fp8kv" in r["dtype"] and sh["B"] >= 16:
                twin = next((x for x in recs if x["shape"] == sh and "bf16kv" in x["dtype"]), None)
                if twin:
                    speedup = twin["time_us"] / r["time_us"]
                    rows.append((case, "BF16 time / FP8 time", speedup, ">= 1.6", speedup >= 1.6))
    elif bench == "prefill":
        by_name = {}
        for r in recs:
            by_name.setdefault(r["name"], []).append(r)
        for r in by_name.get("production_weighted", []):
            if r["dtype"] == "bfloat16":
                rows.append(("production-weighted (BF16)", "useful TFLOP/s / dense flash SDPA at 16K", r["ratio"],
                             ">= 0.6", r["ratio"] >= 0.6))
        weighted = {r["dtype"]: r["value"] for r in by_name.get("production_weighted", [])}
        if "bfloat16" in weighted and "float8_e4m3fn" in weighted:
            ratio = weighted["float8_e4m3fn"] / weighted["bfloat16"]
            rows.append(("production-weighted FP8 KV vs BF16 KV", "FP8 TFLOP/s / BF16 TFLOP/s", ratio, ">= 1.0",
                         ratio >= 1.0))
        for r in by_name.get("sparse_vs_flash_q=k=128K", []):
            rows.append(("q=k=128K", "speedup vs dense causal SDPA", r["value"], ">= 15", r["value"] >= 15))
        for r in by_name.get("sparse_vs_cudnn_q=k=8K", []):
            rows.append(("q=k=8K", "speedup vs cuDNN SDPA", r["value"], "> 1", r["value"] > 1))
        for name in ("extra_memory_with_csr_q=k=8K", "extra_memory_with_csr_q=k=16K"):
            for r in by_name.get(name, []):
                rows.append((name, "extra bytes / output bytes", r["value"], "<= 4", r["value"] <= 4))
    elif bench == "nvfp4":
        for r in recs:
            if r["name"] in ("quantize", "dequantize"):
                rows.append((f"{r['name']} {fmt(r['shape'])}", "fraction of copy bw", r["ratio"], ">= 0.7",
                             r["ratio"] >= 0.7))
    return rows


def sanitizer_verdict(rec):
    """pass iff compute-sanitizer reported 0 errors and the tests under it exited 0."""
    return "pass" if rec.get("errors") == 0 and rec.get("rc") == 0 else "FAIL"


def sanitizer_md(run):
    """VALIDATION.md lines for a run's compute-sanitizer records (gpu_validate.py's sanitize step)."""
    recs = run.get("sanitizer") or []
    if not recs:
        return []
    env = run["environment"]
    out = ["", "### compute-sanitizer", "",
           "`pytest -m sanitize` (one or two small tests per kernel family) under each tool.", "",
           "| card | date | tool | errors | exit | tests passed | verdict | note |", "|" + "---|" * 8]
    for r in recs:
        t = r.get("tests") or {}
        passed = f"{t['passed']} of {t['tests']}" if t else ""
        errors = "no summary" if r.get("errors") is None else r["errors"]
        out.append(f"| {env['card']} | {env['date']} | {r['tool']} | {errors} | {fmt(r.get('rc'))} | {passed} | "
                   f"{sanitizer_verdict(r)} | {r.get('note', '')} |")
    return out


def fuzz_rows(run):
    """(function, examples run, required, verdict, note) per fuzz test of gpu_validate.py's fuzz step."""
    rec = run.get("fuzz") or {}
    if not rec:
        return []
    required = rec["examples_required"]
    results = rec.get("results")
    tests = rec.get("tests") or {}
    failed = {c.rsplit("::", 1)[-1].split("[")[0] for c in tests.get("failed_cases", [])}
    rows = []
    for name, n in sorted(rec.get("examples_run", {}).items()):
        note = ""
        if n > required:  # hypothesis runs extra calls only to shrink or replay a failing example
            note = "more calls than examples: a failing example was shrunk or replayed"
        if results is not None:
            result = results.get(name, {})
            if result.get("rc") == "timeout":
                # Killed at its limit before pytest reported: neither a pass nor a known failure.
                verdict = "no verdict"
                note = note or f"killed at its {result.get('seconds', 0):.0f} s limit before it reported"
            else:
                verdict = "pass" if result.get("rc") == 0 and n >= required else "FAIL"
        elif not tests:
            verdict = "no verdict"
            note = note or "the run was killed before pytest reported"
        else:
            verdict = "pass" if n >= required and name not in failed else "FAIL"
        rows.append((name.replace("test_fuzz_", ""), n, required, verdict, note))
    return rows


def fuzz_md(run):
    rec = run.get("fuzz") or {}
    if not rec:
        return []
    t = rec.get("tests") or {}
    summary = (f"{t.get('passed', 0)} of {t.get('tests', 0)} fuzz tests passed" if t else
               "pytest was killed at the step's time limit before it reported")
    out = ["", "### Property-based fuzzing (hypothesis)", "",
           f"`tests/test_fuzz.py` with {rec['examples_required']} examples per function against the references; "
           f"{summary}. Examples are counted by the tests as they run, not taken from the setting.", "",
           "| function | examples run | required | verdict | note |", "|---|---|---|---|---|"]
    rows = fuzz_rows(run)
    out += [f"| `{name}` | {n} | >= {req} | {verdict} | {note} |" for name, n, req, verdict, note in rows]
    if not rows:
        out.append("| (no example counts came back) | 0 | >= {} | FAIL |  |".format(rec["examples_required"]))
    return out


def step_exit(step):
    """A step's exit status; pytest's 5 means its selection matched no test."""
    if step["step"] == "tests" and step["rc"] == 5:
        return "5 (no test selected)"
    return step["rc"]


def validation_md(runs):
    out = ["# VALIDATION", "",
           "Generated by `tools/write_reports.py` from the device runs stored in",
           "`benchmarks/results/validation-*.json` (written by `tools/gpu_validate.py`). Nothing here",
           "is typed by hand. Hopper (sm_90) runs validate the kernels' correctness and give",
           "relative speed on that card; they are not SM12x measurements.", ""]
    for run in runs:
        env = run["environment"]
        out += [f"## {env['card']} — {env['date']}", "", env_line(env), ""]
        out += ["| step | exit | seconds |", "|---|---|---|"]
        out += [f"| {s['step']} | {step_exit(s)} | {s.get('seconds', '')} |" for s in run["steps"]]
        t = run.get("tests") or {}
        if t:
            out += ["", f"GPU test suite against the built variant: {t['passed']} passed, {t['failures']} failed, "
                        f"{t['errors']} errors, {t['skipped']} skipped (of {t['tests']})."]
            if t.get("files"):
                out += ["", "Test modules run: " + ", ".join(f"`{f}`" for f in t["files"]) + "."]
            if t.get("failed_cases"):
                out += ["", "Failed: " + ", ".join(f"`{c}`" for c in t["failed_cases"])]
        out += sanitizer_md(run)
        out += fuzz_md(run)
        judged = [dict(zip(("case", "metric", "value", "target", "pass"), row), bench=b)
                  for b, recs in run.get("benchmarks", {}).items() for row in checks(b, recs)]
        if judged:
            met = sum(1 for j in judged if j["pass"])
            out += ["", f"### Performance targets ({met} of {len(judged)} met)", ""]
            out += table(judged, ("bench", "case", "metric", "value", "target", "pass"))
        out.append("")
    return "\n".join(out)


def results_md(runs):
    out = ["# Benchmark results", "",
           "Generated by `tools/write_reports.py` from `benchmarks/results/*.json`; each table comes from",
           "one process on one card (ratios compare against a baseline measured in that same process).", ""]
    for run in runs:
        env = run["environment"]
        for bench, recs in run.get("benchmarks", {}).items():
            if not recs:
                continue
            out += [f"## {bench} — {env['card']}, {env['date']}", "", env_line(env), ""]
            out += table(recs, COLUMNS)
            out.append("")
    return "\n".join(out)


def sweeps_md():
    out = []
    for log in sorted((RESULTS / "sweeps").glob("*.log")):
        # sweep_indexer_fp8_widen-h200-... was printed by sweep_indexer.py: the longest existing prefix
        parts = log.stem.split("-")[0].split("_")
        names = ["_".join(parts[:n]) + ".py" for n in range(len(parts), 0, -1)]
        script = next((ROOT / "benchmarks" / n for n in names if (ROOT / "benchmarks" / n).exists()), None)
        if script is not None:
            out += [f"## Sweep: {log.stem}", "", f"Printed by `benchmarks/{script.name}` (verbatim):"]
        else:
            out += [f"## Device log: {log.stem}", "", "Verbatim; its first lines say how it was produced:"]
        out += ["", "```", log.read_text().strip(), "```", ""]
    return out


def plots_md(runs):
    """Redraw benchmarks/plots/*.png from the stored runs; the RESULTS.md lines that embed them (None: not drawn)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import plot_results
    except ImportError as exc:
        print(f"plots NOT redrawn: {exc} (run with .venv/bin/python)", file=sys.stderr)
        return None
    paths = plot_results.write_plots(runs)
    print("drew " + ", ".join(str(p.relative_to(ROOT)) for p in paths))
    out = ["", "## Plots", "", "Drawn by `benchmarks/plot_results.py` from the records in this file; each panel names",
           "the card and date of the run it comes from.", ""]
    for name, caption in plot_results.PLOT_FILES:
        out += [f"![{caption}](plots/{name})", ""]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="*")
    ap.add_argument("--bench-dir")
    ap.add_argument("--date")
    ap.add_argument("--sweep", nargs="*", default=[])
    args = ap.parse_args()
    for run_dir in args.runs:
        print("stored", store(run_dir))
    if args.bench_dir:
        print("stored", store_bench_dir(args.bench_dir, args.date))
    for log in args.sweep:
        (RESULTS / "sweeps").mkdir(exist_ok=True)
        shutil.copy2(log, RESULTS / "sweeps" / Path(log).name)
    runs = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("validation-*.json"))]
    runs.sort(key=lambda r: r["environment"]["date"], reverse=True)
    (ROOT / "VALIDATION.md").write_text(validation_md(runs))
    plots = plots_md(runs)
    # The prose on where the time goes is written by hand; every number it quotes is from the tables.
    analysis = ROOT / "benchmarks" / "ANALYSIS.md"
    prose = ["", analysis.read_text()] if analysis.exists() else []
    (ROOT / "benchmarks" / "RESULTS.md").write_text(
        results_md(runs) + "\n".join((plots or []) + sweeps_md() + prose))
    print(f"wrote VALIDATION.md and benchmarks/RESULTS.md from {len(runs)} run(s)")
    return 0 if plots is not None else 1


if __name__ == "__main__":
    sys.exit(main())
