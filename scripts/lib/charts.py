"""The charts of docs/PERFORMANCE.md, drawn by the bench scripts themselves (matplotlib, Agg).

SVGs are kept small and stable: text stays text (no embedded glyphs), element ids come from a
fixed salt and no date is written, so a re-run with the same figures gives the same file.

Usage:
  python3 scripts/lib/charts.py bars OUT.svg TITLE < TSV     (step, anchor, ratio)
      grouped bars of time ratios (anchor seconds / cofferfs seconds) per step, one bar per
      anchor, with lines at 1.0 and 1.5 (bench.sh)
  python3 scripts/lib/charts.py scale OUT.svg TITLE < TSV    (kind, target, step, N, us)
      per-file cost in microseconds against N, log-log, one line per step, one panel per kind;
      cofferfs solid, anchors dashed (bench-scale.sh)
"""
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402,F401

plt.rcParams.update({
    "svg.fonttype": "none",
    "svg.hashsalt": "cofferfs-bench",
    "font.size": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
})
SAVE = dict(format="svg", metadata={"Date": None, "Creator": None}, bbox_inches="tight")
COLORS = plt.rcParams["axes.prop_cycle"].by_key()["color"]


def rows(ncols):
    out = []
    for line in sys.stdin:
        f = line.rstrip("\n").split("\t")
        if len(f) == ncols:
            out.append(f)
    return out


def bars(path, title):
    data = rows(3)
    steps, anchors, val = [], [], {}
    for step, anchor, ratio in data:
        try:
            v = float(ratio)
        except ValueError:
            continue
        if step not in steps:
            steps.append(step)
        if anchor not in anchors:
            anchors.append(anchor)
        val[(step, anchor)] = v
    if not steps:
        sys.exit("charts.py bars: no ratios")
    w = 0.8 / len(anchors)
    fig, ax = plt.subplots(figsize=(max(6, 0.75 * len(steps) + 2), 3.6))
    for i, a in enumerate(anchors):
        xs = [j + (i - (len(anchors) - 1) / 2) * w for j in range(len(steps))]
        ax.bar(xs, [val.get((s, a), float("nan")) for s in steps], w, label=a,
               color=COLORS[i % len(COLORS)])
    top = max([v for v in val.values() if v == v] + [1.5])
    ax.set_ylim(0, top * 1.22)  # room for the legend above the tallest bar
    ax.axhline(1.0, color="black", linewidth=1)
    ax.axhline(1.5, color="black", linewidth=1, linestyle="--")
    ax.set_xticks(range(len(steps)))
    ax.set_xticklabels(steps, rotation=30, ha="right")
    ax.set_ylabel("anchor s / cofferfs s (> 1: cofferfs faster)")
    ax.set_title(title)
    ax.grid(axis="x", visible=False)
    ax.legend(ncol=len(anchors), loc="upper left", fontsize=8)
    fig.savefig(path, **SAVE)


def scale(path, title):
    data = rows(5)
    kinds, targets, steps = [], [], []
    pts = {}
    for kind, target, step, n, us in data:
        try:
            n, us = int(n), float(us)
        except ValueError:
            continue
        if us <= 0:
            continue
        for lst, v in ((kinds, kind), (targets, target), (steps, step)):
            if v not in lst:
                lst.append(v)
        pts.setdefault((kind, target, step), []).append((n, us))
    if not kinds:
        sys.exit("charts.py scale: no points")
    fig, axes = plt.subplots(1, len(kinds), figsize=(5.2 * len(kinds), 4.2), squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        for si, step in enumerate(steps):
            for target in targets:
                p = sorted(pts.get((kind, target, step), []))
                if not p:
                    continue
                ax.plot([x for x, _ in p], [y for _, y in p], marker="o", markersize=3,
                        color=COLORS[si % len(COLORS)],
                        linestyle="-" if target == "cofferfs" else "--",
                        linewidth=1.5 if target == "cofferfs" else 1,
                        label=f"{step} ({target})")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ns = sorted({n for (k, _, _), p in pts.items() if k == kind for n, _ in p})
        ax.set_xticks(ns)
        ax.set_xticklabels([label_n(n) for n in ns])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_xlabel("files (N)")
        ax.set_ylabel("µs per file")
        ax.set_title(f"{title}: {kind} files")
    # One legend for all panels, below them.
    handles = {}
    for ax in axes[0]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    fig.legend(handles.values(), handles.keys(), loc="upper center", ncol=4, fontsize=7,
               bbox_to_anchor=(0.5, 0.0), frameon=False)
    fig.tight_layout()
    fig.savefig(path, **SAVE)


def label_n(n):
    for div, suffix in ((1000000, "M"), (1000, "k")):
        if n >= div and n % div == 0:
            return f"{n // div}{suffix}"
    return f"{n:,}"


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("bars", "scale"):
        sys.exit(__doc__)
    {"bars": bars, "scale": scale}[sys.argv[1]](sys.argv[2], sys.argv[3])
