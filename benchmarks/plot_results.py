"""PNG plots of the measured benchmark records (no GPU needed).

    .venv/bin/python benchmarks/plot_results.py [--out DIR]

Reads the runs stored in benchmarks/results/validation-*.json (newest run per benchmark; a
benchmark found only as a bare benchmarks/results/<name>.json is plotted with its date marked
as not recorded) and writes into benchmarks/plots/:

- decode_latency.png: sparse decode and decode-indexer latency vs context and vs batch;
- prefill_cases.png: useful TFLOP/s of every production-workload case, BF16 vs FP8 K/V;
- roofline_fractions.png: achieved fraction of the copy bandwidth or the BF16 matmul rate per
  kernel family, with the issues' targets drawn as lines.

Every point comes from a record; every panel names the card and date of the run it comes
from. tools/write_reports.py calls `write_plots` so the reports and the plots stay in step.
"""
import argparse
import json
import re
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PLOTS = ROOT / "benchmarks" / "plots"
BENCHES = ("decode", "indexer", "prefill", "nvfp4", "native_ops")
DTYPE_STYLE = {"bf16": ("tab:blue", "-"), "fp8": ("tab:orange", "--"), "nvfp4": ("tab:green", ":")}


def load_runs(results=RESULTS):
    runs = [json.loads(p.read_text()) for p in sorted(results.glob("validation-*.json"))]
    return sorted(runs, key=lambda r: r["environment"]["date"], reverse=True)


def pick_sources(runs, results=RESULTS):
    """{bench: (records, label)}: the newest run holding each benchmark, labelled 'card, date'."""
    out = {}
    for run in runs:  # newest first
        for bench, recs in run.get("benchmarks", {}).items():
            if recs and bench not in out:
                out[bench] = (recs, f"{recs[0].get('card') or run['environment']['card']}, "
                                    f"{run['environment']['date']}")
    for bench in BENCHES:
        path = results / f"{bench}.json"
        if bench not in out and path.exists():
            recs = json.loads(path.read_text())
            if recs:
                out[bench] = (recs, f"{recs[0].get('card', 'card not recorded')}, date not recorded")
    return out


def kv_kind(dtype):
    """'bf16' / 'fp8' / 'nvfp4' from the dtype strings the benchmarks write."""
    d = str(dtype).lower()
    if "nvfp4" in d:
        return "nvfp4"
    return "fp8" if ("fp8" in d or "float8" in d) else "bf16"


def shape_num(shape, key):
    """An integer field of a record's shape: a dict entry, or `key<N>` / `key=<N>` in a string."""
    if isinstance(shape, dict):
        return shape.get(key)
    m = re.search(rf"(?:^|\s){re.escape(key)}=?(\d+)", str(shape))
    return int(m.group(1)) if m else None


def stamp(ax, label):
    """Name the run (card, date) under the panel's title."""
    ax.set_title(f"{ax.get_title()}\n{label}", fontsize=9)


def count_label(x):
    x = int(round(x))
    if x >= 1 << 20 and x % (1 << 20) == 0:
        return f"{x >> 20}M"
    return f"{x >> 10}K" if x >= 1024 and x % 1024 == 0 else str(x)


def log2_x(ax, ticks=None):
    """Base-2 log x axis labelled 1, 4, 16, 32K, 1M ...; ticks at the measured values when given."""
    ax.set_xscale("log", base=2)
    if ticks is not None:
        ax.set_xticks(sorted(set(ticks)))
        ax.minorticks_off()
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: count_label(x)))


def empty(ax, title, why):
    ax.set_title(title, fontsize=10)
    ax.text(0.5, 0.5, why, transform=ax.transAxes, ha="center", va="center", fontsize=9, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def series_plot(ax, points, xlabel, ylabel, title, label_of, logy=True):
    """points: [(series key, x, y)] -> one line per series, sorted by x, styled by the key's kv dtype."""
    series = {}
    for key, x, y in points:
        series.setdefault(key, []).append((x, y))
    keys = sorted(series)
    cmap = plt.get_cmap("viridis")
    others = sorted({k[0] for k in keys})
    for key in keys:
        xs, ys = zip(*sorted(series[key]))
        color = cmap(others.index(key[0]) / max(1, len(others) - 1) * 0.9)
        ls = DTYPE_STYLE[key[1]][1]
        marker = "s" if len(key) > 2 and key[2] == 4 else "o"
        ax.plot(xs, ys, ls=ls, marker=marker, ms=4, color=color, label=label_of(key))
    log2_x(ax, [x for _, x, _ in points])
    if logy:
        ax.set_yscale("log")
    finish(ax, xlabel, ylabel, title, legend_size=6, legend_cols=2)


def finish(ax, xlabel, ylabel, title, label=None, legend_size=7, legend_cols=1):
    """Axis labels, title, grid and legend; `label` (card, date) goes under the title."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=legend_size, ncol=legend_cols)
    if label:
        stamp(ax, label)


# ----------------------------------------------------------------------------- (a) decode latency

def plot_decode(sources, out):
    decode = [r for r in sources.get("decode", ([], ""))[0] if r.get("name") == "sparse_decode"]
    heads = sorted({(r["shape"]["Hq"], r["shape"]["Hkv"]) for r in decode}, reverse=True)
    rows = max(1, len(heads))
    fig, axes = plt.subplots(rows, 3, figsize=(16, 4.6 * rows), squeeze=False)
    for row, (hq, hkv) in enumerate(heads):
        recs = [r for r in decode if (r["shape"]["Hq"], r["shape"]["Hkv"]) == (hq, hkv)]
        label = sources["decode"][1]
        ax = axes[row][0]
        series_plot(ax, [((r["shape"]["B"], kv_kind(r["dtype"])), r["shape"]["ctx"], r["time_us"])
                         for r in recs if r["shape"]["seqlen_q"] == 1],
                    "context (tokens)", "time per call (us)",
                    f"sparse decode Hq{hq}/Hkv{hkv}, seqlen_q 1: latency vs context",
                    lambda k: f"B{k[0]} {k[1]} KV")
        ax.axhline(6, color="red", lw=1, ls="-.", label="target B=1: <= 6 us")
        ax.legend(fontsize=6, ncol=2)
        stamp(ax, label)
        ax = axes[row][1]
        series_plot(ax, [((r["shape"]["ctx"], kv_kind(r["dtype"]), r["shape"]["seqlen_q"]),
                          r["shape"]["B"], r["time_us"]) for r in recs],
                    "batch B", "time per call (us)", f"sparse decode Hq{hq}/Hkv{hkv}: latency vs batch",
                    lambda k: f"ctx {count_label(k[0])} {k[1]} KV sq{k[2]}")
        stamp(ax, label)
    if not heads:
        for ax in axes[0][:2]:
            empty(ax, "sparse decode", "no sparse_decode records")
    idx = [r for r in sources.get("indexer", ([], ""))[0] if r.get("name", "").startswith("decode_indexer(")]
    if idx:
        label = sources["indexer"][1]
        pts = [(shape_num(r["shape"], "B"), shape_num(r["shape"], "ctx"), kv_kind(r["dtype"]), r["time_us"])
               for r in idx]
        ax = axes[0][2]
        series_plot(ax, [((b, kv), ctx, t) for b, ctx, kv, t in pts], "context (tokens)", "time per call (us)",
                    "decode indexer (scores + top-k): latency vs context", lambda k: f"B{k[0]} {k[1]} index-K")
        stamp(ax, label)
        if rows > 1:
            ax = axes[1][2]
            series_plot(ax, [((ctx, kv), b, t) for b, ctx, kv, t in pts], "batch B",
                        "time per call (us)", "decode indexer (scores + top-k): latency vs batch",
                        lambda k: f"ctx {count_label(k[0])} {k[1]} index-K")
            stamp(ax, label)
    else:
        empty(axes[0][2], "decode indexer", "no decode_indexer records")
    for r in range(1, rows):
        if not idx:
            axes[r][2].set_visible(False)
    fig.suptitle("Decode latency (CUDA-graph replay; solid BF16, dashed FP8; circles seqlen_q 1, squares 4)")
    return save(fig, out / "decode_latency.png")


# ----------------------------------------------------------------------------- (b) prefill cases

def plot_prefill(sources, out):
    recs, label = sources.get("prefill", ([], ""))
    cases = [r for r in recs if r.get("name", "").startswith("case") and r.get("value") is not None]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(15, 5.2), gridspec_kw={"width_ratios": [3, 2]})
    if not cases:
        empty(ax, "prefill production cases", "no case records")
        empty(ax2, "FP8 / BF16", "no case records")
        return save(fig, out / "prefill_cases.png")
    by_kind = {}
    for r in cases:
        by_kind.setdefault(kv_kind(r["dtype"]), []).append((shape_num(r["shape"], "q"), r["value"], r["name"]))
    markers = {"bf16": "o", "fp8": "^", "nvfp4": "x"}
    for kind, pts in sorted(by_kind.items(), key=lambda kv: list(DTYPE_STYLE).index(kv[0])):
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=16, marker=markers[kind], alpha=0.75,
                   color=DTYPE_STYLE[kind][0], label=f"{kind.upper()} K/V ({len(pts)} cases)")
    named = {r["name"]: r for r in recs}
    flash = named.get("sdpa_flash_causal")
    if flash:
        ax.axhline(flash["value"], color="0.3", lw=1, label=f"dense flash SDPA q=k=16K: {flash['value']:.0f}")
        ax.axhline(0.6 * flash["value"], color="red", lw=1, ls="-.",
                   label=f"target: weighted >= 0.6x dense = {0.6 * flash['value']:.0f}")
    for r in recs:
        if r.get("name") == "production_weighted":
            kind = kv_kind(r["dtype"])
            ax.axhline(r["value"], color=DTYPE_STYLE[kind][0], lw=1, ls="--",
                       label=f"production-weighted {kind.upper()}: {r['value']:.0f}")
    log2_x(ax)
    finish(ax, "query tokens in the case (total q)", "useful TFLOP/s",
           "Sparse prefill: useful TFLOP/s per production-workload case", label)
    bf = {r["name"]: r for r in cases if kv_kind(r["dtype"]) == "bf16"}
    pairs = [(shape_num(r["shape"], "q"), r["value"] / bf[r["name"]]["value"]) for r in cases
             if kv_kind(r["dtype"]) == "fp8" and r["name"] in bf and bf[r["name"]]["value"]]
    if pairs:
        ax2.scatter(*zip(*pairs), s=16, color=DTYPE_STYLE["fp8"][0])
        ax2.axhline(1.0, color="red", lw=1, ls="-.", label="target: FP8 no slower than BF16")
        log2_x(ax2)
        finish(ax2, "query tokens in the case (total q)", "FP8 K/V TFLOP/s / BF16 K/V TFLOP/s",
               "FP8 vs BF16 K/V, same case", label)
    else:
        empty(ax2, "FP8 vs BF16 K/V", "no BF16/FP8 case pairs")
    fig.suptitle("Sparse prefill, M3 shape (Hq 64, Hkv 4, D 128, topK 16), MiniMax production workload")
    return save(fig, out / "prefill_cases.png")


# ----------------------------------------------------------------------------- (c) roofline fractions

def frac_axes(ax, title, ylabel, values):
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, max([1.05] + [v * 1.1 for v in values]))
    ax.grid(True, axis="y", alpha=0.3)


def target_line(ax, y, text, x0=None, x1=None):
    if x0 is None:
        ax.axhline(y, color="red", lw=1.2, ls="-.", label=text)
    else:
        ax.hlines(y, x0, x1, color="red", lw=1.2, ls="-.", label=text)


def bars(ax, labels, values, colors):
    ax.bar(range(len(values)), values, color=colors)
    ax.set_xticks(range(len(values)))
    ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=7)
    for i, v in enumerate(values):
        ax.text(i, v, f"{v:.2f}", ha="center", va="bottom", fontsize=7)


def roof_decode(ax, sources):
    recs = [r for r in sources.get("decode", ([], ""))[0] if r.get("name") == "sparse_decode"]
    if not recs:
        return empty(ax, "sparse decode", "no records")
    heads = sorted({(r["shape"]["Hq"], r["shape"]["Hkv"]) for r in recs}, reverse=True)
    for i, hd in enumerate(heads):
        for kind in ("bf16", "fp8"):
            pts = [(r["shape"]["B"] * 2 ** (0.08 * (i - 0.5)), r["ratio"]) for r in recs
                   if (r["shape"]["Hq"], r["shape"]["Hkv"]) == hd and kv_kind(r["dtype"]) == kind]
            if pts:
                ax.scatter(*zip(*pts), s=14, alpha=0.75, color=DTYPE_STYLE[kind][0], marker="os"[i % 2],
                           label=f"Hq{hd[0]}/Hkv{hd[1]} {kind} KV")
    bs = sorted({r["shape"]["B"] for r in recs})
    target_line(ax, 0.80, "target B >= 16: 0.80", 16 / 1.3, max(bs) * 1.3)
    target_line(ax, 0.45, "target B = 4: 0.45", 4 / 1.3, 4 * 1.3)
    log2_x(ax, bs)
    ax.set_xlabel("batch B (all contexts, seqlen_q 1 and 4)")
    frac_axes(ax, "sparse decode: selected K+V bytes", "fraction of copy bandwidth", [r["ratio"] for r in recs])
    ax.legend(fontsize=6)
    stamp(ax, sources["decode"][1])


def roof_indexer_decode(ax, sources):
    recs = [r for r in sources.get("indexer", ([], ""))[0] if r.get("name", "").startswith("decode_indexer(")]
    if not recs:
        return empty(ax, "decode indexer", "no records")
    ctxs = sorted({shape_num(r["shape"], "ctx") for r in recs})
    for kind in ("bf16", "fp8"):
        for i, ctx in enumerate(ctxs):
            pts = [(shape_num(r["shape"], "B") * 2 ** (0.08 * (i - 1)), r["ratio"]) for r in recs
                   if kv_kind(r["dtype"]) == kind and shape_num(r["shape"], "ctx") == ctx]
            if pts:
                ax.scatter(*zip(*pts), s=16, color=DTYPE_STYLE[kind][0], marker="o^s"[i % 3],
                           label=f"ctx {count_label(ctx)} {kind}")
    bs = sorted({shape_num(r["shape"], "B") for r in recs})
    target_line(ax, 0.85, "target B >= 16: 0.85", 16 / 1.3, max(bs) * 1.3)
    log2_x(ax, bs)
    ax.set_xlabel("batch B")
    frac_axes(ax, "decode indexer: index-K bytes", "fraction of copy bandwidth", [r["ratio"] for r in recs])
    ax.legend(fontsize=6, ncol=2)
    stamp(ax, sources["indexer"][1])


def roof_indexer_prefill(ax, sources):
    recs = [r for r in sources.get("indexer", ([], ""))[0] if r.get("metric") == "TFLOP/s" and r.get("ratio")]
    if not recs:
        return empty(ax, "prefill index scorers", "no records")
    vals = [r["ratio"] for r in recs]
    bars(ax, [f"{r['name'].split()[0]}\n{r['dtype']}" for r in recs], vals,
         [DTYPE_STYLE[kv_kind(r["dtype"])][0] if "fp4" not in r["dtype"] else "tab:green" for r in recs])
    target_line(ax, 0.5, "target: 0.5")
    frac_axes(ax, "prefill index scorers (q 16K, k 84K)", "fraction of BF16 matmul rate", vals)
    ax.legend(fontsize=7)
    stamp(ax, sources["indexer"][1])


def roof_prefill(ax, sources):
    recs, label = sources.get("prefill", ([], ""))
    named = {r["name"]: r for r in recs}
    mm, flash = named.get("bf16_matmul"), named.get("sdpa_flash_causal")
    cases = [r for r in recs if r.get("name", "").startswith("case:") and r.get("value") is not None]
    if not (mm and cases):
        return empty(ax, "sparse prefill", "no bf16_matmul / case records")
    kinds = [k for k in DTYPE_STYLE if any(kv_kind(r["dtype"]) == k for r in cases)]
    vals = []
    for i, kind in enumerate(kinds):
        v = [r["value"] / mm["value"] for r in cases if kv_kind(r["dtype"]) == kind]
        vals += v
        ax.scatter([i + 0.25 * ((j * 0.618) % 1 - 0.5) for j in range(len(v))], v, s=8, alpha=0.5,
                   color=DTYPE_STYLE[kind][0])
        for r in recs:
            if r.get("name") == "production_weighted" and kv_kind(r["dtype"]) == kind:
                ax.plot([i - 0.3, i + 0.3], [r["value"] / mm["value"]] * 2, color="k", lw=2)
    ax.plot([], [], color="k", lw=2, label="production-weighted")
    ax.set_xticks(range(len(kinds)))
    ax.set_xticklabels([f"{k.upper()} K/V\nper case" for k in kinds], fontsize=8)
    if flash:
        ax.axhline(flash["value"] / mm["value"], color="0.3", lw=1, label="dense flash SDPA q=k=16K")
        target_line(ax, 0.6 * flash["value"] / mm["value"], "target: 0.6x dense flash (weighted)")
    frac_axes(ax, "sparse prefill: useful FLOPs", "fraction of BF16 matmul rate", vals)
    ax.set_ylim(0, max(vals + [flash["value"] / mm["value"] if flash else 0]) * 1.25)
    ax.legend(fontsize=7)
    stamp(ax, label)


def roof_nvfp4(ax, sources):
    recs = [r for r in sources.get("nvfp4", ([], ""))[0] if r.get("name") != "copy" and r.get("ratio") is not None]
    if not recs:
        return empty(ax, "NVFP4", "no records")
    vals = [r["ratio"] for r in recs]
    colors = ["tab:purple" if r["name"] == "quantize" else "tab:gray" if "two_pass" in r["name"] else "tab:cyan"
              for r in recs]
    bars(ax, [f"{r['name'].replace('_traffic', '').replace('quantize_', 'q ')}\n{fmt_shape(r['shape'])}"
              for r in recs], vals, colors)
    target_line(ax, 0.7, "target (quantize, dequantize): 0.7")
    frac_axes(ax, "NVFP4 quantize / dequantize (256 MiB BF16)", "fraction of copy bandwidth", vals)
    ax.legend(fontsize=7)
    stamp(ax, sources["nvfp4"][1])


def roof_native(ax, sources):
    recs = [r for r in sources.get("native_ops", ([], ""))[0] if r.get("copy_fraction") is not None]
    if not recs:
        return empty(ax, "native ops", "no records")
    vals = [r["copy_fraction"] for r in recs]
    bars(ax, [f"{r['name']}\n{fmt_shape(r['shape'])}" for r in recs], vals, ["tab:brown"] * len(recs))
    frac_axes(ax, "native ops (issue targets are times: see RESULTS.md)", "fraction of copy bandwidth", vals)
    stamp(ax, sources["native_ops"][1])


def fmt_shape(shape):
    if isinstance(shape, dict):
        return " ".join(f"{k}{v}" for k, v in list(shape.items())[:3])
    if isinstance(shape, list):
        return "x".join(str(x) for x in shape)
    return str(shape)


def plot_roofline(sources, out):
    fig, axes = plt.subplots(2, 3, figsize=(17, 10))
    panels = (roof_decode, roof_indexer_decode, roof_nvfp4, roof_prefill, roof_indexer_prefill, roof_native)
    for ax, panel in zip(axes.flat, panels):
        panel(ax, sources)
    fig.suptitle("Roofline fractions: achieved / (copy bandwidth or BF16 matmul rate) measured in the same "
                 "process; dash-dot red = the issue's target")
    return save(fig, out / "roofline_fractions.png")


# ----------------------------------------------------------------------------- entry points

def save(fig, path):
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
    return path


# (file name, caption) of every plot, in the order the reports embed them.
PLOT_FILES = (
    ("decode_latency.png", "Decode latency vs context and batch"),
    ("prefill_cases.png", "Prefill useful TFLOP/s per production case, BF16 vs FP8 K/V"),
    ("roofline_fractions.png", "Roofline fractions per kernel family, with the issues' targets"),
)


def write_plots(runs=None, out=PLOTS, results=RESULTS):
    """Render every plot from the stored runs; returns the PNG paths written."""
    sources = pick_sources(load_runs(results) if runs is None else runs, results)
    return [plot_decode(sources, out), plot_prefill(sources, out), plot_roofline(sources, out)]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=PLOTS)
    args = ap.parse_args(argv)
    for path in write_plots(out=args.out):
        print("wrote", path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


if __name__ == "__main__":
    sys.exit(main())
