"""Small helpers shared by the experiment entry points."""

from __future__ import annotations

import re

__all__ = ["parse_range"]


def parse_range(spec: str) -> list[int]:
    """Parses an official-style range list: '0-7,12' -> [0, 1, ..., 7, 12].

    Raises:
      ValueError: one line naming the bad part.
    """
    values: list[int] = []
    for part in filter(None, (p.strip() for p in str(spec).split(","))):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise ValueError(f"bad range {part!r} in {spec!r}: expected N or A-B (e.g. '0-7,12')")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo:
            raise ValueError(f"bad range {part!r} in {spec!r}: end before start")
        values.extend(range(lo, hi + 1))
    if not values:
        raise ValueError(f"empty range {spec!r}")
    return values
