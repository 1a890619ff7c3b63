"""Pieces of the one-line messages users read: lists cut short, and a hint for a CSV with another separator."""

from __future__ import annotations

from collections.abc import Sequence


def listed(items: Sequence[object], *, shown: int) -> str:
    """The first `shown` items, comma-separated, and how many more there are: a message stays one readable line."""
    more = f" and {len(items) - shown} more" if len(items) > shown else ""
    return ", ".join(map(str, items[:shown])) + more


def separator_hint(header: Sequence[str]) -> str:
    """Where a CSV header reads as one field holding ';', a tab or spaces (a spreadsheet's other separator), a hint to
    write commas; else nothing."""
    separator = next((c for c in ";\t " if c in header[0]), None) if len(header) == 1 else None
    return f" (separated by {separator!r}? write it with commas)" if separator else ""
