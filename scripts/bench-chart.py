#!/usr/bin/env python3
"""Draws the PNG chart of a `myelin-bench compare` JSON file.

Usage: python scripts/bench-chart.py RESULTS.json OUT.png
Run it with the bench venv's Python (scripts/synapse-venv installs matplotlib there).
One group per storage backend (SQLite, PostgreSQL), side by side; in each, one horizontal bar
per figure: how many times better Myelin is than Synapse on that backend (log scale; right of
the 1x line Myelin is better, left of it Synapse is). Also reads the older single-backend
format (top-level "rows").
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def pairs_of(report):
    """The backend pairs: the "pairs" list, or the older format as one SQLite pair."""
    if "pairs" in report:
        return report["pairs"]
    return [
        {
            "backend": "sqlite",
            "myelin": report.get("myelin"),
            "synapse": report.get("synapse"),
            "rows": report.get("rows", []),
        }
    ]


def drawable(rows):
    # The loader's own CPU time and plain counts say nothing about the server.
    return {
        r["figure"]: r
        for r in rows
        if r.get("advantage") and r["figure"] != "resources.loader_cpu" and r["unit"] != "count"
    }


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    with open(sys.argv[1]) as f:
        report = json.load(f)
    pairs = [(p, drawable(p["rows"])) for p in pairs_of(report)]
    pairs = [(p, rows) for p, rows in pairs if rows]
    if not pairs:
        sys.exit("no figure has both servers' values; nothing to draw")
    # Every figure of any backend, in the order first seen, top to bottom.
    figures, units = [], {}
    for _, rows in pairs:
        for name, r in rows.items():
            if name not in units:
                figures.append(name)
                units[name] = r["unit"]
    figures.reverse()
    labels = [f"{name} ({units[name]})" for name in figures]

    fig, axes = plt.subplots(
        1,
        len(pairs),
        figsize=(6.5 * len(pairs) + 3.5, 0.32 * len(figures) + 1.8),
        sharey=True,
        squeeze=False,
    )
    for ax, (pair, rows) in zip(axes[0], pairs):
        # A figure this backend lacks has no bar (NaN draws nothing).
        values = [rows[name]["advantage"] if name in rows else float("nan") for name in figures]
        colors = ["#2e8b57" if v >= 1 else "#c0392b" for v in values]
        ax.barh(labels, values, color=colors)
        ax.set_xscale("log")
        ax.axvline(1.0, color="black", linewidth=0.8)
        for y, v in enumerate(values):
            if v == v:
                ax.text(v, y, f" {v:.1f}×" if v >= 1 else f" {v:.2f}×", va="center", fontsize=8)
        myelin = (pair.get("myelin") or {}).get("server", "myelin")
        synapse = (pair.get("synapse") or {}).get("server", "synapse")
        ax.set_title(pair.get("backend", ""), fontsize=10)
        ax.set_xlabel(f"times better: {myelin} vs {synapse}\n(log scale, >1 = Myelin better)", fontsize=8)
        ax.tick_params(axis="y", labelsize=8)
    fig.suptitle(f'myelin-bench compare — {report.get("machine", "")}', fontsize=9)
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=110)


if __name__ == "__main__":
    main()
