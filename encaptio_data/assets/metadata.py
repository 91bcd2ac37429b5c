"""Helpers that turn domain results into asset metadata the web UI renders well."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

OWNERS = ["team:data-platform"]


def markdown_table(rows: Sequence[Mapping[str, object]], limit: int = 20) -> str:
    """A small Markdown table (the UI renders it); pipes and newlines in values are escaped."""
    if not rows:
        return "_none_"
    columns = list(rows[0].keys())

    def cell(value: object) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")[:120]

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c, "")) for c in columns) + " |" for row in rows[:limit]]
    if len(rows) > limit:
        lines.append(f"\n_{len(rows) - limit} more not shown_")
    return "\n".join(lines)


def key_digest(key: str) -> str:
    """A short, stable name for an object key that carries no file name (see assets/content.py)."""
    return "k-" + hashlib.sha256(key.encode()).hexdigest()[:12]
