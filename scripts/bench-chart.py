#!/usr/bin/env python3
"""Draws the PNG chart of a `myelin-bench compare` JSON file.

Usage: python scripts/bench-chart.py RESULTS.json OUT.png
Run it with the bench venv's Python (scripts/synapse-venv installs matplotlib there).
One horizontal bar per figure: how many times better Myelin is than Synapse (log scale;
right of the 1x line Myelin is better, left of it Synapse is).
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    with open(sys.argv[1]) as f:
        report = json.load(f)
    # The loader's own CPU time and plain counts say nothing about the server.
    rows = [
        r
        for r in report["rows"]
        if r.get("advantage") and r["figure"] != "resources.loader_cpu" and r["unit"] != "count"
    ]
    if not rows:
        sys.exit("no figure has both servers' values; nothing to draw")
    rows.reverse()
    labels = [f'{r["figure"]} ({r["unit"]})' for r in rows]
    values = [r["advantage"] for r in rows]
    colors = ["#2e8b57" if v >= 1 else "#c0392b" for v in values]

    fig, ax = plt.subplots(figsize=(10, 0.32 * len(rows) + 1.6))
    ax.barh(labels, values, color=colors)
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", linewidth=0.8)
    for y, v in enumerate(values):
        ax.text(v, y, f" {v:.1f}×" if v >= 1 else f" {v:.2f}×", va="center", fontsize=8)
    myelin = (report.get("myelin") or {}).get("server", "myelin")
    synapse = (report.get("synapse") or {}).get("server", "synapse")
    ax.set_xlabel(f"times better: {myelin} vs {synapse} (log scale, >1 = Myelin better)")
    ax.set_title(f'myelin-bench compare — {report.get("machine", "")}', fontsize=9)
    ax.tick_params(axis="y", labelsize=8)
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=110)


if __name__ == "__main__":
    main()
