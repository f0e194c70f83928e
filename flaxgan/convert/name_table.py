"""Official state_dict entries <-> Flax variables, by one regex rule table.

Flax layout: `variables = {'params': nested dict, 'buffers': nested dict}` where the nested path
is the official dotted name split on '.' (`synthesis.b4.conv1.affine.weight` ->
`variables['params']['synthesis']['b4']['conv1']['affine']['weight']`). Official trainable
parameters go to 'params' and buffers to 'buffers'; a collection with no entries is left out,
as `Module.init` leaves it out. Only the array layout changes, by the first rule in `RULES`
whose pattern matches the dotted name and whose `ndim` matches the array:

| name ends in          | ndim | official    | flax        | why                            |
|-----------------------|------|-------------|-------------|--------------------------------|
| `resample_filter`,    | any  | FIR taps    | (dropped)   | constants that the Flax module |
| `up_filter`,          |      |             |             | designs from its constructor   |
| `down_filter`         |      |             |             | arguments                      |
| `weight`              | 4    | OIHW        | HWIO        | NHWC convolutions              |
| `weight`              | 2    | `[out, in]` | `[in, out]` | dense layers compute `x @ w`   |
| `const`               | 3    | `[C, H, W]` | `[H, W, C]` | NHWC learned input             |
| anything else         |      | unchanged   | unchanged   | biases, gains, noise, w_avg... |

The table serves StyleGAN2 and StyleGAN3 alike: every 2-D `weight` is an `[out, in]` matrix
applied as `x @ weight.T` in the official code (FullyConnectedLayer, the `affine` style layers,
StyleGAN3's `SynthesisInput.weight`), every 4-D one a convolution kernel. StyleGAN3's
`magnitude_ema`, `transform`, `freqs` and `phases` stay buffers, unchanged. Frozen (Freeze-D)
weights are buffers in both trees and convert the same way.

The dropped filters are pure functions of the constructor arguments, which the Flax modules
recompute (`flaxgan.models` tests them against the official buffers). `from_flax` therefore
omits them; load such a state_dict into an official network with
`load_state_dict(sd, strict=False)` or `misc.copy_params_and_buffers`, which keep the network's
own (identical) filters.
"""

from __future__ import annotations

import os
import re
import zipfile
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from flaxgan import files
from flaxgan.convert.snapshot import SnapshotError

__all__ = [
    "COLLECTIONS",
    "RULES",
    "Rule",
    "check_against",
    "from_flax",
    "load_state_dict_npz",
    "official_shapes",
    "save_state_dict_npz",
    "to_flax",
]

COLLECTIONS = ("params", "buffers")
_BUFFER_LIST = "__buffers__"  # npz entry naming the buffers; official names never start "__".


class Rule(NamedTuple):
    """How entries whose dotted name matches `pattern` (and rank `ndim`) change layout.

    Attributes:
      pattern: regex searched in the official dotted name.
      ndim: the rank the rule applies to (None: any).
      perm: axes permutation official -> flax (`np.transpose`); None drops the entry.
      why: one line for the table's documentation.
    """

    pattern: re.Pattern
    ndim: int | None
    perm: tuple[int, ...] | None
    why: str


def _rule(name: str, ndim: int | None, perm: tuple[int, ...] | None, why: str) -> Rule:
    return Rule(re.compile(rf"(^|\.)(?:{name})$"), ndim, perm, why)


RULES: tuple[Rule, ...] = (
    _rule("resample_filter|up_filter|down_filter", None, None,
          "FIR filter constant, rebuilt from constructor args"),
    _rule("weight", 4, (2, 3, 1, 0), "convolution kernel OIHW -> HWIO"),
    _rule("weight", 2, (1, 0), "dense matrix [out, in] -> [in, out]"),
    _rule("const", 3, (1, 2, 0), "learned constant input CHW -> HWC"),
)


def _find_rule(name: str, ndim: int) -> Rule | None:
    for rule in RULES:
        if (rule.ndim is None or rule.ndim == ndim) and rule.pattern.search(name):
            return rule
    return None


def _to_flax_array(name: str, value: Any) -> np.ndarray | None:
    value = np.asarray(value)
    rule = _find_rule(name, value.ndim)
    if rule is None:
        return value
    return None if rule.perm is None else np.ascontiguousarray(value.transpose(rule.perm))


def _from_flax_array(name: str, value: Any) -> np.ndarray:
    value = np.asarray(value)
    rule = _find_rule(name, value.ndim)  # Permutations keep the rank, so the same rule fires.
    if rule is None:
        return value
    if rule.perm is None:
        raise ValueError(f"{name!r}: flax variables never hold {rule.pattern.pattern} entries")
    return np.ascontiguousarray(value.transpose(np.argsort(rule.perm)))


# ------------------------------------------------------------------------ nesting


def nest(flat: Mapping[str, Any], sep: str = ".") -> dict[str, Any]:
    """`{'a.b.c': x}` -> `{'a': {'b': {'c': x}}}` (names split at `sep`: '.' for PyTorch
    state_dicts, '/' for TensorFlow variables).

    Raises:
      ValueError: a malformed name, or one that is both a leaf and a prefix of another.
    """
    tree: dict[str, Any] = {}
    for name, value in flat.items():
        *parents, leaf = name.split(sep)
        if not all(parents) or not leaf:
            raise ValueError(f"malformed official name {name!r}")
        node = tree
        for i, key in enumerate(parents):
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ValueError(f"{name!r} nests under the entry {sep.join(parents[:i + 1])!r}")
        if leaf in node:
            raise ValueError(f"{name!r} is both an entry and a module")
        node[leaf] = value
    return tree


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings -> `{'a.b.c': leaf}`."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


# ------------------------------------------------------------------------ conversion


def to_flax(parameters: Mapping[str, Any], buffers: Mapping[str, Any]) -> dict[str, Any]:
    """Official state_dict (split into parameters and buffers) -> Flax variables.

    Args:
      parameters: trainable entries by official dotted name, official layouts.
      buffers: buffer entries likewise. Designed FIR filters are dropped from either (`RULES`).

    Returns:
      `{'params': ..., 'buffers': ...}` of numpy arrays in Flax layouts (see `RULES`); an empty
      collection is left out.

    Raises:
      ValueError: a name is in both inputs, or is malformed, or clashes with another.
    """
    both = sorted(set(parameters) & set(buffers))
    if both:
        raise ValueError(f"{both[0]!r} is both a parameter and a buffer")
    variables = {}
    for collection, flat in zip(COLLECTIONS, (parameters, buffers), strict=True):
        converted = {name: _to_flax_array(name, value) for name, value in flat.items()}
        tree = nest({name: v for name, v in converted.items() if v is not None})
        if tree:
            variables[collection] = tree
    return variables


def from_flax(variables: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Flax variables -> official `(parameters, buffers)`; the inverse of `to_flax`.

    Args:
      variables: `{'params': ..., 'buffers': ...}` (either may be missing); leaves are arrays.

    Returns:
      Flat dicts by official dotted name in official layouts, without the designed filters.

    Raises:
      ValueError: a collection other than 'params' / 'buffers'.
    """
    unknown = sorted(set(variables) - set(COLLECTIONS))
    if unknown:
        raise ValueError(f"unexpected variable collection {unknown[0]!r}; "
                         f"expected only {COLLECTIONS}")
    parameters, buffers = (
        {name: _from_flax_array(name, value)
         for name, value in _flatten(variables.get(collection, {})).items()}
        for collection in COLLECTIONS)
    return parameters, buffers


def check_against(target_variables: Mapping[str, Any], variables: Mapping[str, Any],
                  source: str) -> None:
    """Checks that `variables` has exactly the entries and shapes of `target_variables`.

    Args:
      target_variables: what the Flax module expects, e.g. `jax.eval_shape(module.init, ...)`;
        leaves need only a `.shape`.
      variables: converted variables (`to_flax`).
      source: the file they came from, for the message.

    Raises:
      SnapshotError: one line naming `source`, the first offending entry (official dotted name
        and collection) and its expected vs. actual Flax shape, and how many more there are.
    """
    want, got = _shapes(target_variables), _shapes(variables)
    problems = []
    for key in sorted(want.keys() | got.keys()):
        collection, name = key
        where = f"{collection} {name!r}"
        if key not in got:
            problems.append(f"{where} is missing (expected shape {want[key]})")
        elif key not in want:
            problems.append(f"{where} is unexpected (shape {got[key]})")
        elif want[key] != got[key]:
            problems.append(f"{where} has shape {got[key]}, expected {want[key]}")
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise SnapshotError(f"{source}: {problems[0]}{more}")


def official_shapes(target_variables: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """Official state_dict shapes by dotted name of Flax variables (leaves need a `.shape`,
    e.g. `jax.eval_shape` of `Module.init`), by the inverse `RULES`; nothing is allocated."""
    out = {}
    for (_, name), shape in _shapes(target_variables).items():
        rule = _find_rule(name, len(shape))
        perm = rule.perm if rule is not None and rule.perm is not None else None
        out[name] = shape if perm is None else tuple(shape[i] for i in np.argsort(perm))
    return out


def _shapes(variables: Mapping[str, Any]) -> dict[tuple[str, str], tuple[int, ...]]:
    """`{(collection, dotted name): shape}` over every leaf."""
    return {
        (collection, name): tuple(getattr(leaf, "shape", np.shape(leaf)))
        for collection, tree in variables.items()
        for name, leaf in _flatten(tree).items()
    }


# ------------------------------------------------------------------------ npz files


def save_state_dict_npz(path: str | os.PathLike, parameters: Mapping[str, Any],
                        buffers: Mapping[str, Any]) -> None:
    """Writes an official-layout state_dict as `.npz`, atomically (temp file + rename).

    Entries are stored under their official names, plus `__buffers__`: the buffer names, so that
    `load_state_dict_npz` splits them again (PyTorch users: pop it before `load_state_dict`).

    Raises:
      ValueError: a name is in both inputs or is reserved.
    """
    both = sorted(set(parameters) & set(buffers))
    if both:
        raise ValueError(f"{both[0]!r} is both a parameter and a buffer")
    if _BUFFER_LIST in parameters or _BUFFER_LIST in buffers:
        raise ValueError(f"{_BUFFER_LIST!r} is a reserved name")
    arrays = {name: np.asarray(v) for name, v in {**parameters, **buffers}.items()}
    arrays[_BUFFER_LIST] = np.array(list(buffers), dtype=np.str_)
    files.save_npz(path, arrays, allow_pickle=False)


def load_state_dict_npz(
        path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Reads a `save_state_dict_npz` file back as `(parameters, buffers)`, exactly.

    Raises:
      SnapshotError: one line naming `path`: unreadable, not an npz, not written by
        `save_state_dict_npz`, or holding object arrays (never unpickled).
    """
    name = os.fspath(path)
    try:
        with open(name, "rb") as fh:
            if not zipfile.is_zipfile(fh):
                raise SnapshotError(f"{name}: not an npz file")
            with np.load(fh, allow_pickle=False) as f:
                arrays = {key: f[key] for key in f.files}
    except SnapshotError:
        raise
    except OSError as e:
        raise SnapshotError(f"{name}: cannot read ({e.strerror or e})") from None
    except Exception as e:  # Corrupt members, object arrays (never unpickled), ...
        message = " ".join(str(e).split())[:200]
        raise SnapshotError(f"{name}: not a readable npz ({type(e).__name__}: {message})"
                            ) from None
    if _BUFFER_LIST not in arrays:
        raise SnapshotError(f"{name}: not a flaxgan state_dict npz (no {_BUFFER_LIST!r} entry)")
    buffer_names = arrays.pop(_BUFFER_LIST)
    if buffer_names.ndim != 1 or buffer_names.dtype.kind != "U":
        raise SnapshotError(f"{name}: {_BUFFER_LIST!r} is not a list of names")
    buffer_names = buffer_names.tolist()
    missing = sorted(set(buffer_names) - set(arrays))
    if missing:
        raise SnapshotError(f"{name}: buffer {missing[0]!r} is listed but not stored")
    buffers = {k: arrays.pop(k) for k in buffer_names}
    return arrays, buffers
