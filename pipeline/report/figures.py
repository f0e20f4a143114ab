"""Figures as PNG bytes: line panels (the authors' Fig. 3 and 4 layout) and annotated heatmaps.

Pure functions of plain data. matplotlib.figure.Figure is used directly, never pyplot: no
global backend state and no display is ever opened (safe on headless workers and in tests).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from pipeline.params.vocab import (
    METHOD_COLORS,  # the authors' colours (Fig. 3): the figures read side by side
)

OTHER_COLORS = ("tab:brown", "tab:pink", "tab:gray", "tab:olive", "tab:cyan", "black")
STYLES = ("-", "--", ":", "-.")
AUTHORS_STYLE = "authors"  # a key of Panel.styles' legend: the authors' values (x markers, dotted)


def method_order(methods: Sequence[str]) -> list[str]:
    known = [m for m in METHOD_COLORS if m in methods]
    return known + sorted(set(methods) - set(known))


def palette(methods: Sequence[str]) -> dict[str, str]:
    """One colour per method, the paper's methods in the paper's colours."""
    others = iter(OTHER_COLORS * (1 + len(methods) // len(OTHER_COLORS)))
    return {m: METHOD_COLORS.get(m) or next(others) for m in method_order(methods)}


@dataclass
class Line:
    label: str  # the colour legend's entry (a method)
    x: list[float]
    y: list[float]
    color: str
    style: str = "-"
    yerr: list[float] | None = None
    authors: bool = False  # the authors' published values, drawn thin and dotted with x markers


@dataclass
class Panel:
    title: str
    xlabel: str
    ylabel: str
    lines: list[Line] = field(default_factory=list)
    logx: bool = False
    logy: bool = False
    xticks: list[float] | None = None
    hlines: list[tuple[float, str]] = field(default_factory=list)  # (y, label): reference levels
    styles: dict[str, str] = field(default_factory=dict)  # line style -> meaning (a second legend)
    empty: str = "not measured"  # shown in a panel without data
    integer_x: bool = False  # epochs
    # a symmetric-log y axis, linear within +-symlog: values near 0 and near a bound both readable
    symlog: float | None = None


def _draw(ax, panel: Panel) -> None:
    ax.set_title(panel.title, fontsize=10)
    ax.set_xlabel(panel.xlabel, fontsize=9)
    ax.set_ylabel(panel.ylabel, fontsize=9)
    ax.tick_params(labelsize=8)
    lines = [ln for ln in panel.lines if ln.x]
    if not lines:
        ax.text(0.5, 0.5, panel.empty, ha="center", va="center", transform=ax.transAxes, color="0.4")
        ax.set_xticks([])
        ax.set_yticks([])
        return
    values = [v for ln in lines for v in ln.y] + [y for y, _ in panel.hlines]
    for ln in lines:
        if ln.authors:
            ax.plot(ln.x, ln.y, color=ln.color, linestyle=":", marker="x", markersize=4, linewidth=1.0,
                    alpha=0.8)
        elif ln.yerr is not None:
            ax.errorbar(ln.x, ln.y, yerr=ln.yerr, color=ln.color, linestyle=ln.style, marker="o",
                        markersize=3, capsize=2, linewidth=1.6)
        else:
            ax.plot(ln.x, ln.y, color=ln.color, linestyle=ln.style, marker="o" if len(ln.x) < 12 else None,
                    markersize=3, linewidth=1.6)
    for y, label in panel.hlines:
        ax.axhline(y, color="0.3", linestyle=":", linewidth=1)
        ax.annotate(label, (0.01, y), xycoords=("axes fraction", "data"), fontsize=7, color="0.3",
                    va="bottom")
    xs = [v for ln in lines for v in ln.x]
    if panel.logx and min(xs) > 0:
        ax.set_xscale("log")
    if panel.symlog:
        ax.set_yscale("symlog", linthresh=panel.symlog, linscale=0.5)
        ax.set_ylim(min(0.0, min(values)), max(values) * 2)  # room above a bound line and its label
    elif panel.logy and min(values) > 0:  # a log axis cannot show a non-positive value: stay linear
        ax.set_yscale("log")
    if panel.xticks:
        ax.set_xticks(panel.xticks)
        ax.set_xticklabels([f"{t:g}" for t in panel.xticks])
        ax.minorticks_off()
    if panel.integer_x:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    styles = dict(panel.styles)
    if any(ln.authors for ln in lines):
        styles[AUTHORS_STYLE] = "the authors' values"
    if styles:
        handles = [Line2D([], [], color="0.3", linestyle=":", marker="x") if s == AUTHORS_STYLE
                   else Line2D([], [], color="0.3", linestyle=s) for s in styles]
        ax.legend(handles, list(styles.values()), fontsize=7, loc="best", frameon=False)
    ax.grid(alpha=0.3)


def _png(fig: Figure, dpi: int) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    return buf.getvalue()


def panel_figure(panels: Sequence[Panel], ncols: int, dpi: int, width: float = 4.0,
                 height: float = 3.2) -> bytes:
    """Panels on a grid with one colour legend (in the first free slot, as the authors' Fig. 3)."""
    nrows = math.ceil(len(panels) / ncols)
    free = nrows * ncols > len(panels)
    fig = Figure(figsize=(width * ncols + (0 if free else 1.6), height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, panel in zip(axes, panels):
        _draw(ax, panel)
    colours: dict[str, str] = {}
    for panel in panels:
        for ln in panel.lines:
            if ln.x:
                colours.setdefault(ln.label, ln.color)
    for ax in axes[len(panels):]:
        ax.set_axis_off()
    if colours:
        handles = [Line2D([], [], color=c, linewidth=2) for c in colours.values()]
        if free:
            axes[len(panels)].legend(handles, list(colours), loc="center", fontsize=9)
        else:
            fig.legend(handles, list(colours), loc="outside right center", fontsize=9)
    return _png(fig, dpi)


@dataclass
class Heatmap:
    title: str
    rows: list[str]  # row labels (top to bottom)
    cols: list[str]
    values: list[list[float | None]]  # None: no value (greyed)
    notes: dict[tuple[int, int], str] = field(default_factory=dict)  # text for cells without a value
    lower_is_better: bool = True
    digits: int = 2


def heatmap_figure(maps: Sequence[Heatmap], row_label: str, col_label: str, dpi: int) -> bytes:
    """Annotated heatmaps side by side; a missing value is a grey cell with its note."""
    import numpy as np
    from matplotlib import colormaps

    fig = Figure(figsize=(4.2 * len(maps), 3.4), layout="constrained")
    axes = fig.subplots(1, len(maps), squeeze=False).ravel()
    for ax, hm in zip(axes, maps):
        data = np.ma.masked_invalid(np.array([[np.nan if v is None else v for v in row]
                                              for row in hm.values], dtype=float))
        cmap = colormaps["viridis_r" if hm.lower_is_better else "viridis"].with_extremes(bad="0.85")
        image = ax.imshow(data, cmap=cmap, aspect="auto")
        if data.count():
            fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04).ax.tick_params(labelsize=7)
        finite = data.compressed()
        mid = (finite.min() + finite.max()) / 2 if finite.size else 0.0
        for i, row in enumerate(hm.values):
            for j, v in enumerate(row):
                if v is None:
                    label, colour = hm.notes.get((i, j), "no trial"), "0.3"
                else:
                    label = f"{v:.{hm.digits}f}"
                    dark = (v > mid) if hm.lower_is_better else (v < mid)
                    colour = "white" if dark else "black"
                ax.text(j, i, label, ha="center", va="center", fontsize=8, color=colour)
        ax.set_xticks(range(len(hm.cols)), hm.cols, fontsize=8)
        ax.set_yticks(range(len(hm.rows)), hm.rows, fontsize=8)
        ax.set_xlabel(col_label, fontsize=9)
        ax.set_ylabel(row_label, fontsize=9)
        ax.set_title(hm.title, fontsize=9)
    return _png(fig, dpi)
