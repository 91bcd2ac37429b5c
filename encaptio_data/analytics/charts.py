"""Small PNG charts as Markdown data URIs, for metadata the Dagster UI renders inline."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from datetime import date

# A metadata entry is stored with every materialization: keep each chart a few kilobytes.
MAX_BYTES = 30_000


def bar_chart_markdown(days: Sequence[date], values: Sequence[int | float], *, title: str,
                       alt: str | None = None) -> str:
    """``![alt](data:image/png;base64,...)`` of a bar chart of values per day."""
    # Figure, not pyplot: no global state, safe in a multi-threaded run worker, no display needed.
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 2.2), dpi=72)
    axes = figure.add_subplot()
    axes.bar(range(len(values)), values, color="#3b6ea5", width=0.8)
    step = max(1, len(days) // 7)
    axes.set_xticks(range(0, len(days), step), [d.strftime("%m-%d") for d in days][::step], fontsize=7)
    axes.tick_params(axis="y", labelsize=7)
    axes.set_title(title, fontsize=9)
    axes.spines[["top", "right"]].set_visible(False)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    data = buffer.getvalue()
    if len(data) > MAX_BYTES:  # never let a chart bloat the event log; say so instead
        return f"_chart omitted: {len(data)} bytes exceeds {MAX_BYTES}_"
    return f"![{alt or title}](data:image/png;base64,{base64.b64encode(data).decode()})"


def histogram_markdown(values: Sequence[int | float], *, bins: int, title: str, marker: float | None = None,
                       marker_label: str | None = None) -> str:
    """``![title](data:image/png;base64,...)`` of a histogram, with an optional vertical line
    (a target, say) that shows at a glance how far the values sit from it."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 2.2), dpi=72)
    axes = figure.add_subplot()
    axes.hist(values, bins=bins, color="#3b6ea5")
    if marker is not None:
        axes.axvline(marker, color="#c0392b", linestyle="--", linewidth=1, label=marker_label)
        if marker_label:
            axes.legend(fontsize=7, frameon=False)
    axes.tick_params(labelsize=7)
    axes.set_title(title, fontsize=9)
    axes.spines[["top", "right"]].set_visible(False)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    data = buffer.getvalue()
    if len(data) > MAX_BYTES:
        return f"_chart omitted: {len(data)} bytes exceeds {MAX_BYTES}_"
    return f"![{title}](data:image/png;base64,{base64.b64encode(data).decode()})"
