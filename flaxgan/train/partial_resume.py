"""Partial resume: start a network from a snapshot of a slightly different one.

The official code resumes with `misc.copy_params_and_buffers(resume_data[name], module,
require_all=False)`: every tensor of the new network whose name the snapshot has is copied, the
others keep their fresh initialisation. That is how a conditional model starts from an
unconditional one (`config.resume_partial`), with one rule more here, because the official copy
fails (a shape mismatch) where conditioning changes a shape:

  * same name and shape: copied;
  * a dense `weight` `[in, out]` whose input grew, same `out` (the mapping's first layer,
    which takes `concat([z, embed(c)])` once there are labels): *widened* -- the old rows are
    copied to the front, multiplied by `sqrt(in_new / in_old)` to undo the smaller
    equalized-learning-rate gain `1 / sqrt(in)`, and the new rows are 0, so the layer computes
    exactly what it did and the new inputs (the label embedding) start with no effect (they
    get gradients at once: the rows are 0, not their inputs);
  * anything else in the new network (the label embedding, a conditional D's mapping and
    projection head): freshly initialised, and listed by `notice`.

Variables are `{'params': ..., 'buffers': ...}` trees whose dotted paths are the official
names; `merge` is pure (numpy / jax arrays in, a new tree out).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from flaxgan import files

__all__ = ["PartialCopy", "can_widen", "merge", "merge_leaf", "notice", "widen_input"]


@dataclasses.dataclass(frozen=True)
class PartialCopy:
    """What `merge` did, by `collection/dotted.name`.

    Attributes:
      copied: taken from the snapshot as they were.
      widened: dense weights whose input grew (see the module doc).
      fresh: kept at their new initialisation (absent from the snapshot, or another shape).
      dropped: in the snapshot but not in the new network.
    """

    copied: tuple[str, ...] = ()
    widened: tuple[str, ...] = ()
    fresh: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()


def can_widen(name: str, old_shape: Sequence[int], new_shape: Sequence[int]) -> bool:
    """Whether `widen_input` applies: a dense `weight` `[in, out]` (conv weights are 4-D) with
    the same `out` and a larger `in`."""
    return (name.endswith("weight") and len(old_shape) == 2 and len(new_shape) == 2
            and old_shape[1] == new_shape[1] and old_shape[0] < new_shape[0])


def widen_input(old: np.ndarray, new_in: int) -> np.ndarray:
    """`[in_old, out]` -> `[new_in, out]`: rows `* sqrt(new_in / in_old)` then zeros, so that
    `x @ (w * 1 / sqrt(in))` is unchanged for `x = concat([x_old, anything])`."""
    old = np.asarray(old, np.float32)
    out = np.zeros((new_in, old.shape[1]), np.float32)
    out[: old.shape[0]] = old * np.sqrt(new_in / old.shape[0])
    return out


def merge_leaf(key: str, new: Any, old: Any | None) -> tuple[Any, str]:
    """One leaf of `merge`: `(value, kind)`, kind `copied`, `widened` or `fresh` (the new
    network's own `new`); values keep `new`'s dtype."""
    if old is None:
        return new, "fresh"
    dtype = np.asarray(new).dtype
    if np.shape(old) == np.shape(new):
        return np.asarray(old, dtype), "copied"
    if can_widen(key, np.shape(old), np.shape(new)):
        return widen_input(old, np.shape(new)[0]).astype(dtype), "widened"
    return new, "fresh"


def merge(target: Mapping[str, Any], source: Mapping[str, Any]
          ) -> tuple[dict[str, Any], PartialCopy]:
    """The new network's variables with what `source` (a snapshot's) can give them.

    Args:
      target: the new network's freshly initialised variables (`{'params', 'buffers'}`).
      source: the snapshot's variables, same layout (`convert.to_flax`).

    Returns:
      `(variables, report)`: `target`'s tree with copied / widened leaves (dtypes of
      `target`), and what was done (`PartialCopy`).
    """
    old_flat = {c: files.flatten_tree(dict(t)) for c, t in source.items()}
    kinds: dict[str, list[str]] = {"copied": [], "widened": [], "fresh": []}
    merged, seen = {}, set()
    for collection, tree in target.items():
        out = {}
        for key, leaf in files.flatten_tree(dict(tree)).items():
            out[key], kind = merge_leaf(key, leaf, old_flat.get(collection, {}).get(key))
            kinds[kind].append(f"{collection}/{key.replace('/', '.')}")
            seen.add((collection, key))
        merged[collection] = files.unflatten_tree(out)
    dropped = tuple(f"{c}/{k.replace('/', '.')}" for c, leaves in old_flat.items()
                    for k in leaves if (c, k) not in seen)
    return merged, PartialCopy(tuple(kinds["copied"]), tuple(kinds["widened"]),
                               tuple(kinds["fresh"]), dropped)


def notice(reports: Mapping[str, PartialCopy], source: str) -> str:
    """One line: per network, how many arrays were copied, which were widened and which
    modules start fresh (`resume_partial from celeba32: G copied 63/66, widened
    mapping.fc0.weight, fresh mapping.embed; D ...`)."""
    parts = []
    for key, r in reports.items():
        total = len(r.copied) + len(r.widened) + len(r.fresh)
        text = f"{key} copied {len(r.copied)}/{total}"
        for what, names in (("widened", _leaves(r.widened)), ("fresh", _modules(r.fresh)),
                            ("not used", _modules(r.dropped))):
            if names:
                text += f", {what} " + " ".join(names)
        parts.append(text)
    return f"resume_partial from {source}: " + "; ".join(parts)


def _leaves(names: Sequence[str]) -> list[str]:
    """`params/mapping.fc0.weight` -> `mapping.fc0.weight` (the official dotted name)."""
    return [n.split("/", 1)[1] for n in names]


def _modules(names: Sequence[str]) -> list[str]:
    """The modules of some leaves, in first-seen order: `mapping.fc0.weight`,
    `mapping.fc0.bias` -> `mapping.fc0`."""
    return list(dict.fromkeys(n.rsplit(".", 1)[0] for n in _leaves(names)))
