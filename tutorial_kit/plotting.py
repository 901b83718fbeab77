"""Small matplotlib charts for the measured comparisons.

Every chart here is built so that no value can hide another: bars carry their
value as a label, repeated measurements show their spread (min–max) as an
error bar, and comparisons across sizes get one panel per size instead of
lines drawn on top of each other.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

#: (low, high) of repeated measurements, drawn as an error bar around the bar's value.
Spread = tuple[float, float]

_COLOR = "#4C72B0"


def _error_bars(values: Sequence[float], spread: Sequence[Spread | None]) -> list[list[float]]:
    """Matplotlib's xerr/yerr: distances below and above each value (0 where unknown)."""
    below = [v - s[0] if s else 0.0 for v, s in zip(values, spread, strict=True)]
    above = [s[1] - v if s else 0.0 for v, s in zip(values, spread, strict=True)]
    return [[max(0.0, b) for b in below], [max(0.0, a) for a in above]]


def panel_bars(panels: Mapping[str, Mapping[str, float]], *, title: str, xlabel: str = "",
               log: bool = False, fmt: str | Mapping[str, str] = "{:,.0f}",
               spread: Mapping[str, Mapping[str, Spread]] | None = None,
               notes: Mapping[str, Mapping[str, str]] | None = None,
               missing: str = "not run", sharex: bool | None = None) -> Figure:
    """Small multiples: one horizontal-bar panel per key of ``panels``, side by side.

    Each panel maps a label to a value; labels are shown in the order first
    seen, the same rows in every panel, and a label a panel lacks reads
    ``missing`` instead of a bar. ``spread`` (panel -> label -> (min, max))
    draws error bars; ``notes`` (panel -> label -> text) is appended to the
    value printed after each bar. ``fmt`` may differ per panel. The panels
    share one x axis when ``sharex`` (default: when ``log``), so bars compare
    across panels too.
    """
    labels: list[str] = []
    for values in panels.values():
        labels += [k for k in values if k not in labels]
    share = log if sharex is None else sharex
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels) + 1.6,
                                                      0.42 * len(labels) + 1.4),
                             sharey=True, sharex=share, squeeze=False)
    extents: list[tuple[float, float]] = []  # per panel: smallest low, largest label anchor
    for ax, (name, values) in zip(axes[0], panels.items(), strict=True):
        shown = [k for k in labels if k in values and not math.isnan(values[k])]
        rows = [labels.index(k) for k in shown]
        heights = [values[k] for k in shown]
        ranges = [(spread or {}).get(name, {}).get(k) for k in shown]
        errors = _error_bars(heights, ranges) if any(ranges) else None
        ax.barh(rows, heights, xerr=errors, color=_COLOR, capsize=3, error_kw={"elinewidth": 1})
        form = fmt if isinstance(fmt, str) else fmt.get(name, "{:,.0f}")
        panel_notes = (notes or {}).get(name, {})
        ends = []
        for row, k, v, r in zip(rows, shown, heights, ranges, strict=True):
            text = form.format(v) + (f" · {panel_notes[k]}" if k in panel_notes else "")
            end = max(v, r[1]) if r else v  # after the whisker, so it never crosses the text
            ax.annotate(text, (end, row), xytext=(4, 0), textcoords="offset points",
                        va="center", fontsize=7.5)
            ends.append(end)
        lows = [r[0] if r else v for v, r in zip(heights, ranges, strict=True)]
        extents.append((min(lows, default=1.0), max(ends, default=1.0)))
        for i, k in enumerate(labels):
            if k not in shown:
                ax.annotate(missing, (0, i), xycoords=("axes fraction", "data"),
                            xytext=(6, 0), textcoords="offset points", va="center",
                            fontsize=7.5, color="0.45")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel(xlabel)
    if share:
        extents = [(min(lo for lo, _ in extents), max(hi for _, hi in extents))] * len(extents)
    for ax, (low, high) in zip(axes[0], extents, strict=True):
        if log:
            ax.set_xscale("log")
            ax.set_xlim(low / 1.5, high * 12)  # a decade of room for the value labels
        else:
            ax.set_xlim(0, high * 1.6)
    first = axes[0][0]
    first.set_yticks(range(len(labels)), labels)
    first.invert_yaxis()
    fig.suptitle(title)
    fig.tight_layout()
    return fig
