"""What the doctor found: checks grouped in tests, printed for people or as JSON."""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from typing import Any

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
MARKS = {OK: "\u2705", WARN: "\u26a0\ufe0f ", FAIL: "\u274c", SKIP: "\u23ed\ufe0f "}
ASCII_MARKS = {OK: "[OK]  ", WARN: "[WARN]", FAIL: "[FAIL]", SKIP: "[SKIP]"}


@dataclass
class Check:
    """One line of the report: what was checked, how it went, and what to do about it."""

    status: str
    name: str
    detail: str = ""
    recommendation: str = ""


@dataclass
class TestResult:
    """One of the five tests and its checks."""

    name: str
    checks: list[Check] = field(default_factory=list)

    def add(self, status: str, name: str, detail: str = "", recommendation: str = "") -> Check:
        check = Check(status, name, detail, recommendation)
        self.checks.append(check)
        return check

    @property
    def status(self) -> str:
        states = {c.status for c in self.checks}
        return FAIL if FAIL in states else WARN if WARN in states else OK


def error_text(exc: BaseException) -> str:
    """The exception as one line: its type and message."""
    return f"{type(exc).__name__}: {exc}"


def _marks(stream: Any) -> dict[str, str]:
    encoding = getattr(stream, "encoding", None) or "ascii"
    try:
        "".join(MARKS.values()).encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return ASCII_MARKS
    return MARKS


def print_report(results: list[TestResult], quiet: bool, stream: Any = None,
                 title: str = "System Check") -> None:
    """Human report; --quiet keeps only problems and the summary."""
    stream = stream or sys.stdout
    marks = _marks(stream)
    if not quiet:
        print("=" * 60, file=stream)
        print(f" Flask Vending Machine - {title}", file=stream)
        print("=" * 60, file=stream)
    for result in results:
        lines = [c for c in result.checks if not quiet or c.status not in (OK, SKIP)]
        if not quiet:
            print(f"\nRunning {result.name} test...", file=stream)
        for check in lines:
            detail = f": {check.detail}" if check.detail else ""
            print(f"{marks[check.status]} {check.name}{detail}", file=stream)
            if check.recommendation and check.status not in (OK, SKIP):
                print(f"      -> {check.recommendation}", file=stream)
    counts = summary(results)
    verdict = "FAILED" if counts[FAIL] else "passed"
    skipped = f", {counts[SKIP]} skipped" if counts[SKIP] else ""
    print(f"\n{title.capitalize()} {verdict}: {counts[OK]} ok, {counts[WARN]} warning(s),"
          f" {counts[FAIL]} problem(s){skipped}", file=stream)


def summary(results: list[TestResult]) -> dict[str, int]:
    """How many checks ended in each state."""
    counts = {OK: 0, WARN: 0, FAIL: 0, SKIP: 0}
    for result in results:
        for check in result.checks:
            counts[check.status] += 1
    return counts


def as_json(results: list[TestResult], code: int, **extra: Any) -> dict[str, Any]:
    """The report for --json: every test and check, the counts and the exit code."""
    return {
        "tests": [{"name": r.name, "status": r.status, "checks": [asdict(c) for c in r.checks]}
                  for r in results],
        **extra,
        "summary": summary(results),
        "exit_code": code,
    }
