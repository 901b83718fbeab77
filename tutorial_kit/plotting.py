"""Small matplotlib charts for the measured comparisons."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
from matplotlib.axes import Axes


def bar_chart(values: Mapping[str, float], *, title: str, ylabel: str,
              log: bool = False, fmt: str = "{:,.0f}", ax: Axes | None = None) -> Axes:
    """One bar per label, each annotated with its value."""
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.2))
    labels = list(values)
    bars = ax.bar(labels, [values[k] for k in labels], color="#4C72B0")
    ax.bar_label(bars, labels=[fmt.format(values[k]) for k in labels], fontsize=8)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    ax.tick_params(axis="x", labelrotation=20)
    ax.figure.tight_layout()
    return ax


def line_chart(xs: Sequence[float], series: Mapping[str, Sequence[float]], *, title: str,
               xlabel: str, ylabel: str, log: bool = False, ax: Axes | None = None) -> Axes:
    """One line per series over the same x values."""
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.2))
    for name, ys in series.items():
        ax.plot(xs, ys, marker="o", label=name)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.figure.tight_layout()
    return ax
