"""Figures → a table per scenario (figure, value, target, PASS/FAIL) and a JSON document."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

PASS, FAIL, NA = "PASS", "FAIL", "n/a"


def percentile(values: Sequence[float], p: float) -> float | None:
    """The p-th percentile (0–100), linear between closest ranks; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} s"


@dataclass
class Target:
    """A limit on one figure: ``value <op> limit``; shown as ``text``."""

    text: str
    check: Callable[[Any], bool]

    def verdict(self, value: Any) -> str:
        if value is None:
            return NA
        return PASS if self.check(value) else FAIL


def at_most(limit: float, unit: str = "") -> Target:
    return Target(f"≤ {limit:g}{unit}", lambda v: v <= limit)


def equals(expected: float, text: str | None = None) -> Target:
    return Target(text or f"{expected:g}", lambda v: v == expected)


@dataclass
class Row:
    """One line of a scenario's table."""

    key: str
    label: str
    value: Any  # the number judged (None: not measured)
    shown: str  # how the value is displayed
    target: Target | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        return self.target.verdict(self.value) if self.target else ""

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "value": self.value,
            "shown": self.shown,
            "target": self.target.text if self.target else None,
            "result": self.verdict or None,
            **({"detail": self.detail} if self.detail else {}),
        }


def render_table(title: str, rows: Sequence[Row], notes: Sequence[str] = ()) -> str:
    """A plain-text table; the last line sums up the verdicts."""
    header = ("figure", "value", "target", "result")
    lines_data = [(r.label, r.shown, r.target.text if r.target else "—", r.verdict) for r in rows]
    widths = [max(len(h), *(len(line[i]) for line in lines_data)) for i, h in enumerate(header)]

    def fmt(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    out = [f"== {title} ==", fmt(header), fmt(["-" * w for w in widths])]
    out += [fmt(line) for line in lines_data]
    out.append(_summary(rows))
    out += [f"   note: {n}" for n in notes]
    return "\n".join(out)


def _summary(rows: Sequence[Row]) -> str:
    """The last line of a table: how many targets were met, and the verdict."""
    verdicts = [r.verdict for r in rows if r.verdict]
    failed = verdicts.count(FAIL)
    unmeasured = verdicts.count(NA)
    summary = f"{len(verdicts) - failed - unmeasured} of {len(verdicts)} targets met"
    if failed:
        summary += f", {failed} FAILED"
    if unmeasured:
        summary += f", {unmeasured} not measured"
    return f"-> {summary}: {'FAIL' if failed else 'PASS' if not unmeasured else 'INCOMPLETE'}"


@dataclass
class PairRow(Row):
    """One line of a side-by-side table: a figure of one run beside the same figure of its twin.

    ``value``/``shown`` are the run's, ``twin_value``/``twin_shown`` its twin's, ``ratio`` the
    run's over the twin's (None: not shown). The target judges the run's value, and also the
    twin's when ``judge_twin`` (a limit every bot must keep, like 0 jobs lost).
    """

    twin_value: Any = None
    twin_shown: str = "—"
    ratio: float | None = None
    judge_twin: bool = False

    @property
    def verdict(self) -> str:
        if self.target is None:
            return ""
        verdicts = [self.target.verdict(self.value)]
        if self.judge_twin:
            verdicts.append(self.target.verdict(self.twin_value))
        if FAIL in verdicts:
            return FAIL
        return NA if NA in verdicts else PASS

    def to_json(self) -> dict[str, Any]:
        return {
            **super().to_json(),
            "twin_value": self.twin_value,
            "twin_shown": self.twin_shown,
            "ratio": self.ratio,
            "target_judges_twin": self.judge_twin,
        }


def render_pairs(
    title: str, rows: Sequence[PairRow], columns: tuple[str, str], notes: Sequence[str] = ()
) -> str:
    """A plain-text table with the twin's column, the run's, and the run's ÷ the twin's."""
    header = ("figure", *columns, "ratio", "target", "result")
    lines_data = [
        (
            r.label,
            r.twin_shown,
            r.shown,
            "" if r.ratio is None else f"{r.ratio:.2f}",
            (r.target.text + (" (both)" if r.judge_twin else "")) if r.target else "—",
            r.verdict,
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(line[i]) for line in lines_data)) for i, h in enumerate(header)]

    def fmt(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    out = [f"== {title} ==", fmt(header), fmt(["-" * w for w in widths])]
    out += [fmt(line) for line in lines_data]
    out.append(_summary(rows))
    out += [f"   note: {n}" for n in notes]
    return "\n".join(out)


def overall(rows: Sequence[Row]) -> str:
    verdicts = [r.verdict for r in rows if r.verdict]
    if FAIL in verdicts:
        return FAIL
    return NA if NA in verdicts else PASS
