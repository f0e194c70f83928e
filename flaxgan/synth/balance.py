"""Attribute balance of a set of faces, and rebalancing to a target by rejection sampling.

Balance report (`fractions`): the fraction of images with each attribute present (our
attribute classifier's logit > 0), e.g. `{"Male": 0.41, "Young": 0.78, "Eyeglasses": 0.06}`.

Rebalancing (`Quotas`): a target gives the wanted fraction of some attributes, e.g.
`Male=0.5,Eyeglasses=0.3`. The attributes are taken as independent, so the joint target of a
cell (one value per targeted attribute) is the product of its marginals; `Quotas` turns it into
whole image counts for `num` images (largest remainder: the counts sum to `num` and each is
within 1 of `num · p`). Candidates are drawn in seed order and each is accepted when its cell
still has room, rejected otherwise — rejection sampling whose acceptance is decided by the
quotas rather than a random draw, so the result has the requested proportions up to rounding
and is a pure function of the candidates' order (a resumed export accepts the same images).
Cells the generator rarely produces fill last; a cell it never produces leaves a shortfall
(`Quotas.shortfall`) once the candidates run out.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence

import numpy as np

from flaxgan import edit
from flaxgan.errors import InvalidArgument

__all__ = ["Quotas", "accept", "cells_of", "fractions", "parse_target"]

DEFAULT_REPORT = ("Male", "Young", "Eyeglasses", "Smiling", "Wearing_Hat", "Blond_Hair",
                  "Black_Hair", "Pale_Skin")  # gender, age, glasses, ...


def parse_target(spec: str) -> dict[str, float]:
    """`"male=0.5,Eyeglasses=0.3"` -> `{"Male": 0.5, "Eyeglasses": 0.3}` (names as
    `edit.resolve_attribute`).

    Raises:
      InvalidArgument: a part that is not `NAME=FRACTION` with 0 <= FRACTION <= 1.
    """
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, sep, value = part.partition("=")
        try:
            p = float(value)
        except ValueError:
            p = float("nan")
        if not sep or not 0 <= p <= 1:
            raise InvalidArgument(f"bad target {part!r} in {spec!r}: expected NAME=FRACTION "
                                  "with a fraction in [0, 1] (e.g. Male=0.5,Eyeglasses=0.3)")
        out[edit.resolve_attribute(name)] = p
    if not out:
        raise InvalidArgument(f"empty target {spec!r}")
    return out


def fractions(present: np.ndarray, names: Sequence[str]) -> dict[str, float]:
    """`{name: fraction of rows present}` of bool `[N, A]` (NaN for no rows)."""
    if not names:
        return {}
    present = np.asarray(present, bool).reshape(-1, len(names))
    mean = present.mean(axis=0) if len(present) else np.full(len(names), np.nan)
    return {n: float(v) for n, v in zip(names, mean, strict=True)}


def cells_of(present: np.ndarray) -> np.ndarray:
    """Cell index of each row of bool `[N, A]`: its values as a binary number (first attribute
    most significant) -> int64 `[N]`."""
    present = np.asarray(present, bool)
    weights = 1 << np.arange(present.shape[1] - 1, -1, -1, dtype=np.int64)
    return (present.astype(np.int64) * weights).sum(axis=1)


@dataclasses.dataclass(frozen=True)
class Quotas:
    """Whole image counts per cell of the targeted attributes.

    Attributes:
      names: the targeted attributes (cell bits, first most significant).
      counts: int64 `[2 ** len(names)]`, summing to the number of images.
    """

    names: tuple[str, ...]
    counts: np.ndarray

    @classmethod
    def from_target(cls, target: Mapping[str, float], num: int) -> Quotas:
        """Largest-remainder counts of `num · prod(marginals)` per cell."""
        names = tuple(target)
        p = np.array([target[n] for n in names], np.float64)
        joint = np.array([np.prod(np.where(bits, p, 1 - p))
                          for bits in itertools.product([False, True], repeat=len(names))])
        exact = joint * num
        counts = np.floor(exact).astype(np.int64)
        order = np.argsort(-(exact - counts), kind="stable")
        counts[order[:num - counts.sum()]] += 1
        return cls(names, counts)

    def shortfall(self, filled: np.ndarray) -> dict[str, int]:
        """`{cell label: missing images}` of the cells `filled` (per-cell counts) leaves short."""
        missing = self.counts - np.asarray(filled)
        return {self.label(c): int(m) for c, m in enumerate(missing) if m > 0}

    def label(self, cell: int) -> str:
        """`"Male=1,Eyeglasses=0"` for a cell index."""
        bits = [(cell >> (len(self.names) - 1 - i)) & 1 for i in range(len(self.names))]
        return ",".join(f"{n}={b}" for n, b in zip(self.names, bits, strict=True))


def accept(cells: np.ndarray, ok: np.ndarray, filled: np.ndarray, quotas: np.ndarray | None,
           room: int) -> tuple[np.ndarray, np.ndarray]:
    """Accepts candidates in order: one that passed the filters (`ok`) is taken while its cell
    is below its quota and fewer than `room` were taken.

    Args:
      cells: int `[N]` cell of each candidate (`cells_of`; ignored without quotas).
      ok: bool `[N]` passed the filters.
      filled: int64 `[C]` images accepted so far per cell (not modified).
      quotas: int64 `[C]` per-cell quotas, or None (no rebalancing: every `ok` one, in order).
      room: the most that may still be accepted.
    Returns:
      `(accepted bool [N], filled after them)`.
    """
    cells, ok = np.asarray(cells, np.int64), np.asarray(ok, bool)
    filled = np.array(filled, np.int64)
    taken = np.zeros(len(ok), bool)
    for i in np.flatnonzero(ok):
        if room <= 0:
            break
        if quotas is not None:
            if filled[cells[i]] >= quotas[cells[i]]:
                continue
            filled[cells[i]] += 1
        taken[i] = True
        room -= 1
    return taken, filled


def check_names(target: Mapping[str, float], available: Sequence[str]) -> None:
    """Every targeted attribute must be one the labeller scores."""
    missing = [n for n in target if n not in available]
    if missing:
        raise InvalidArgument(f"the balance target names {', '.join(missing)}, which the "
                              f"attribute classifier does not score")
