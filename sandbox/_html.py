"""Small HTML building blocks for :mod:`sandbox.display`.

Every function that takes user data escapes it; functions that take
``*_html`` arguments expect markup built here. Styles are inline so an
output cell is self-contained (no stylesheet, no script, no network).
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from enum import Enum
from typing import Any, TypeVar

GREEN, RED, AMBER, GREY = "#1a7f37", "#cf222e", "#9a6700", "#6e7781"
CELL = "padding:2px 8px;text-align:left;vertical-align:top"
TABLE = "border-collapse:collapse;margin:4px 0"
MAX_ROWS = 50
"""Longer tables show this many rows and say how many were left out."""


def esc(value: Any) -> str:
    """``value`` as text, escaped for an element or a quoted attribute."""
    return html.escape(str(value), quote=True)


def plain(value: Any) -> str:
    """A model value as a person reads it: enums by value, lists joined, maps as k=v."""
    if value is None:
        return ""
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={plain(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(plain(v) for v in value)
    return str(value)


def coloured(text_html: str, colour: str, *, bold: bool = False) -> str:
    inner = f"<b>{text_html}</b>" if bold else text_html
    return f"<span style='color:{colour}'>{inner}</span>"


def code(value: Any) -> str:
    return f"<code>{esc(value)}</code>"


def table(
    headings: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    empty: str = "none",
    max_rows: int = MAX_ROWS,
) -> str:
    """A table of already-built cells; ``headings`` and ``empty`` are escaped here."""
    head = "".join(f"<th style='{CELL}'>{esc(h)}</th>" for h in headings)
    body: list[str] = []
    left_out = 0
    for row in rows:
        if len(body) == max_rows:
            left_out += 1
            continue
        body.append("<tr>" + "".join(f"<td style='{CELL}'>{cell}</td>" for cell in row) + "</tr>")
    if not body:
        body.append(f"<tr><td colspan={len(headings)} style='{CELL}'><i>{esc(empty)}</i></td></tr>")
    if left_out:
        body.append(
            f"<tr><td colspan={len(headings)} style='{CELL}'><i>... and {left_out} more</i></td></tr>"
        )
    return (
        f"<table style='{TABLE}'><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def pairs(items: Iterable[tuple[str, str]]) -> str:
    """A two-column table of (escaped label, built value) rows, without headings."""
    rows = "".join(
        f"<tr><th style='{CELL};font-weight:normal;color:{GREY}'>{esc(label)}</th>"
        f"<td style='{CELL}'>{value}</td></tr>"
        for label, value in items
    )
    return f"<table style='{TABLE}'><tbody>{rows}</tbody></table>"


def section(title: str, body_html: str) -> str:
    return f"<div style='margin-top:6px'><b>{esc(title)}</b>{body_html}</div>"


def fold(summary: str, body_html: str, *, open_: bool = False) -> str:
    """A ``<details>`` block; ``summary`` is escaped."""
    state = " open" if open_ else ""
    return f"<details{state}><summary>{esc(summary)}</summary>{body_html}</details>"


def box(kind: str, body_html: str) -> str:
    """The outer element of one object's display; ``kind`` names it for CSS and tests."""
    return (
        f"<div class='promo-sandbox-{esc(kind)}' style='font-family:sans-serif;font-size:13px'>"
        f"{body_html}</div>"
    )


# ---------------------------------------------------------------------------
# Which function renders which class (sandbox.display registers them)

_RENDERERS: dict[type, Callable[[Any], str]] = {}
_T = TypeVar("_T")


def renders(*classes: type) -> Callable[[Callable[[_T], str]], Callable[[_T], str]]:
    """Register a function as the HTML of instances of ``classes`` (and subclasses)."""

    def register(fn: Callable[[_T], str]) -> Callable[[_T], str]:
        for cls in classes:
            _RENDERERS[cls] = fn
        return fn

    return register


def html_of(obj: Any) -> str:
    """The registered HTML of ``obj``; a model's ``_repr_html_`` returns this, so the
    models need not import the display code (which imports them)."""
    for cls in type(obj).__mro__:
        found = _RENDERERS.get(cls)
        if found is not None:
            return found(obj)
    return box(type(obj).__name__, f"<pre>{esc(repr(obj))}</pre>")
