#!/usr/bin/env python3
"""bench/plot.py: small line charts as SVG, written by hand (standard library only).

`line_chart(path, title, panels)` writes one SVG holding one panel per entry of `panels`
(side by side, two per row). A panel is a dict:

    {"title": "run: CPU (ms)", "x": ["0", "100", "1000"], "series": {"berth": [1.0, 1.1, 1.3], ...}}

Optional keys: "xlabel", and "hline" (a y value drawn as a dashed line, "hline_label" its
label). The x values are categories, evenly spaced (the benchmark's levels grow roughly geometrically,
so this reads like a log axis and copes with a level of 0). A missing value is None (the line
breaks there). The y axis starts at 0.

`python3 bench/plot.py --check FILE.svg…` parses each file as XML and checks it holds at least
one polyline (the smoke mode's test).
"""

from __future__ import annotations

import math
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

COLOURS = {"berth": "#d62728", "crun": "#1f77b4", "runc": "#2ca02c", "youki": "#9467bd"}
EXTRA = ["#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f"]

PW, PH = 380, 250  # one panel
ML, MR, MT, MB = 52, 14, 30, 40  # its margins (plot area inside)


def _esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _nice_max(v: float) -> float:
    if v <= 0:
        return 1.0
    e = 10 ** math.floor(math.log10(v))
    for m in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if m * e >= v:
            return m * e
    return 10 * e


def _panel(ox: int, oy: int, p: dict, colour_of) -> list[str]:
    out = []
    xs = p["x"]
    series = p["series"]
    vals = [y for ys in series.values() for y in ys if y is not None]
    ymax = _nice_max(max(vals) * 1.05 if vals else 1.0)
    x0, x1 = ox + ML, ox + PW - MR
    y0, y1 = oy + PH - MB, oy + MT
    n = len(xs)

    def X(i: int) -> float:
        return x0 + (x1 - x0) * (0.5 if n == 1 else 0.04 + 0.92 * i / (n - 1))

    def Y(v: float) -> float:
        return y0 - (y0 - y1) * v / ymax

    out.append(f'<text x="{ox + PW / 2:.1f}" y="{oy + 18}" text-anchor="middle" font-weight="bold">{_esc(p["title"])}</text>')
    out.append(f'<rect x="{x0}" y="{y1}" width="{x1 - x0}" height="{y0 - y1}" fill="none" stroke="#999"/>')
    for k in range(5):
        v = ymax * k / 4
        y = Y(v)
        out.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x1}" y2="{y:.1f}" stroke="#eee"/>')
        out.append(f'<text x="{x0 - 4}" y="{y + 4:.1f}" text-anchor="end">{v:g}</text>')
    for i, lab in enumerate(xs):
        out.append(f'<text x="{X(i):.1f}" y="{y0 + 16}" text-anchor="middle">{_esc(str(lab))}</text>')
    if p.get("xlabel"):
        out.append(f'<text x="{(x0 + x1) / 2:.1f}" y="{y0 + 32}" text-anchor="middle" fill="#555">{_esc(p["xlabel"])}</text>')
    if p.get("hline") is not None and p["hline"] <= ymax:
        y = Y(p["hline"])
        out.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x1}" y2="{y:.1f}" stroke="#555" stroke-dasharray="4,3"/>')
        out.append(f'<text x="{x1 - 4}" y="{y - 3:.1f}" text-anchor="end" fill="#555">{_esc(p.get("hline_label", ""))}</text>')
    for name, ys in series.items():
        c = colour_of(name)
        pts = [(X(i), Y(y)) for i, y in enumerate(ys) if y is not None]
        if len(pts) >= 2:
            out.append(f'<polyline fill="none" stroke="{c}" stroke-width="2" points="'
                       + " ".join(f"{x:.1f},{y:.1f}" for x, y in pts) + '"/>')
        for x, y in pts:
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{c}"/>')
    return out


def line_chart(path: Path | str, title: str, panels: list[dict], note: str = "") -> None:
    names = []
    for p in panels:
        for s in p["series"]:
            if s not in names:
                names.append(s)
    extra = iter(EXTRA)
    colours = {n: COLOURS.get(n) or next(extra, "#000") for n in names}
    cols = min(2, len(panels))
    rows = (len(panels) + cols - 1) // cols
    top, legend_h = 28, 22
    W, H = cols * PW, top + legend_h + rows * PH + (18 if note else 0)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
           'font-family="sans-serif" font-size="11">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2:.1f}" y="18" text-anchor="middle" font-size="14" font-weight="bold">{_esc(title)}</text>']
    lx = 10
    for n in names:
        out.append(f'<line x1="{lx}" y1="{top + 8}" x2="{lx + 20}" y2="{top + 8}" stroke="{colours[n]}" stroke-width="3"/>')
        out.append(f'<text x="{lx + 25}" y="{top + 12}">{_esc(n)}</text>')
        lx += 35 + 7 * len(n)
    for k, p in enumerate(panels):
        out += _panel((k % cols) * PW, top + legend_h + (k // cols) * PH, p, colours.get)
    if note:
        out.append(f'<text x="10" y="{H - 6}" fill="#555">{_esc(note)}</text>')
    out.append("</svg>")
    Path(path).write_text("\n".join(out) + "\n")


def check(path: Path | str) -> None:
    root = ET.parse(path).getroot()
    if not root.tag.endswith("svg"):
        raise ValueError(f"{path}: not an SVG")
    if not any(e.tag.endswith("polyline") or e.tag.endswith("circle") for e in root.iter()):
        raise ValueError(f"{path}: no data drawn")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--check":
        for f in sys.argv[2:]:
            check(f)
        print(f"plot: {len(sys.argv) - 2} SVG file(s) parse")
        sys.exit(0)
    print(__doc__)
    sys.exit(2)
