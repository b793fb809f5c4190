"""requirements.txt read without pip or packaging: the doctor runs before they are installed."""

from __future__ import annotations

import re
from pathlib import Path

_SPEC = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*(?:\[[^\]]*\])?\s*([^;#]*)")


def parse_requirements(path: Path) -> list[tuple[str, list[tuple[str, str]]]]:
    """(distribution, [(operator, version), ...]) for each plain line of requirements.txt."""
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        match = _SPEC.match(line)
        if not match:
            continue
        specs = re.findall(r"(==|!=|<=|>=|<|>|~=)\s*([0-9][0-9A-Za-z.*+\-]*)", match.group(2))
        entries.append((match.group(1), specs))
    return entries


def _version_key(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split("."):
        digits = re.match(r"\d+", piece)
        if not digits:
            break
        parts.append(int(digits.group()))
    while parts and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def version_satisfies(version: str, specs: list[tuple[str, str]]) -> bool:
    """Whether `version` meets every (operator, bound); release numbers only, enough here."""
    have = _version_key(version)
    for op, bound in specs:
        want = _version_key(bound)
        ok = {"==": have == want, "!=": have != want, "<=": have <= want, ">=": have >= want,
              "<": have < want, ">": have > want,
              "~=": have >= want and have[:max(1, len(want) - 1)] == want[:max(1, len(want) - 1)],
              }[op]
        if not ok:
            return False
    return True
