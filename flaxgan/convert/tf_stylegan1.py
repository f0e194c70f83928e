"""Official TensorFlow StyleGAN (v1) variables <-> `flaxgan.models.stylegan1` variables.

A `dnnlib.tflib.Network` names its variables by scope, `G_synthesis/8x8/Conv0_up/weight`
(`Network.vars`, and the `variables` list of a pickled network with its components' names
prefixed by the component's name). Here that name split on '/' is the Flax path, in
'buffers' for the official non-trainable variables and in 'params' for the rest:

| name ends in          | collection | official       | flax           | why                    |
|-----------------------|------------|----------------|----------------|------------------------|
| `lod`, `dlatent_avg`  | buffers    | unchanged      | unchanged      | not trained            |
| `noise<i>`            | buffers    | `[1, 1, R, R]` | `[1, R, R, 1]` | not trained; NHWC      |
| `const`               | params     | `[1, C, 4, 4]` | `[1, 4, 4, C]` | NCHW -> NHWC           |
| anything else         | params     | unchanged      | unchanged      | TF kernels are HWIO,   |
|                       |            |                |                | dense weights [in, out]|

`D_basic`'s `4x4/Dense0/weight` stays as is: the Flax head flattens its features in the official
NCHW order.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from flaxgan.convert.name_table import check_against, nest

__all__ = ["BUFFER_PATTERN", "LAYOUTS", "is_buffer", "to_flax", "from_flax", "to_flax_checked"]

BUFFER_PATTERN = re.compile(r"(^|/)(lod|dlatent_avg|noise\d+)$")
_NCHW_TO_NHWC = (0, 2, 3, 1)
# (pattern, rank, permutation official -> flax).
LAYOUTS: tuple[tuple[re.Pattern, int, tuple[int, ...]], ...] = (
    (re.compile(r"(^|/)const$"), 4, _NCHW_TO_NHWC),
    (re.compile(r"(^|/)noise\d+$"), 4, _NCHW_TO_NHWC),
)


def is_buffer(name: str) -> bool:
    """Whether the official variable `name` is non-trainable (a Flax buffer)."""
    return BUFFER_PATTERN.search(name) is not None


def _perm(name: str, ndim: int) -> tuple[int, ...] | None:
    for pattern, rank, perm in LAYOUTS:
        if rank == ndim and pattern.search(name):
            return perm
    return None


def to_flax(tf_vars: Mapping[str, Any]) -> dict[str, Any]:
    """Official variables (name -> array, official layouts) -> `{'params', 'buffers'}`.

    An empty collection is left out, as `Module.init` leaves it out.

    Raises:
      ValueError: a malformed name, or one that is both a variable and a scope.
    """
    collections: dict[str, dict[str, np.ndarray]] = {}
    for name, value in tf_vars.items():
        value = np.asarray(value)
        perm = _perm(name, value.ndim)
        if perm is not None:
            value = np.ascontiguousarray(value.transpose(perm))
        collections.setdefault("buffers" if is_buffer(name) else "params", {})[name] = value
    return {kind: nest(flat, sep="/") for kind, flat in collections.items()}


def from_flax(variables: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """`{'params', 'buffers'}` -> official variables by name, official layouts (sorted by name).

    Raises:
      ValueError: a collection other than 'params' / 'buffers', or a variable in the wrong one.
    """
    unknown = sorted(set(variables) - {"params", "buffers"})
    if unknown:
        raise ValueError(f"unexpected variable collection {unknown[0]!r}")
    out = {}
    for collection in ("params", "buffers"):
        for name, value in _flatten(variables.get(collection, {})).items():
            if is_buffer(name) != (collection == "buffers"):
                raise ValueError(f"{name!r} does not belong in {collection!r}")
            value = np.asarray(value)
            perm = _perm(name, value.ndim)
            out[name] = value if perm is None else np.ascontiguousarray(
                value.transpose(np.argsort(perm)))
    return dict(sorted(out.items()))


def to_flax_checked(tf_vars: Mapping[str, Any], target: Mapping[str, Any],
                    source: str) -> dict[str, Any]:
    """`to_flax`, then checks names and shapes against `target` (e.g. `jax.eval_shape` of the
    module's `init`); raises `SnapshotError` naming `source` and the first mismatch."""
    variables = to_flax(tf_vars)
    check_against(target, variables, source)
    return variables


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}/"))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
