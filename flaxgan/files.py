"""Files written atomically, and nested dicts of arrays as ``.npz``.

Every file flaxgan writes for later reading (exports, weight and statistics caches, logs
rewritten in place, sample grids, directions) goes through :func:`atomic_write`: the bytes go
to a hidden temporary file beside the target, which replaces the target only once complete,
so a killed process leaves the old file or the new one, never half of one.

    from flaxgan import files
    files.write_json("run/config.json", config)
    files.save_npz_tree("cache/weights.npz", {"conv": {"weight": w}}, sha256=digest)
    tree, meta = files.load_npz_tree("cache/weights.npz")   # {"conv": {"weight": w}}, {...}
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterator, Mapping
from typing import IO, Any

import numpy as np
from flax import traverse_util

__all__ = [
    "atomic_write",
    "flatten_tree",
    "load_npz_tree",
    "save_npz",
    "save_npz_tree",
    "unflatten_tree",
    "write_json",
    "write_text",
]

SEP = "/"  # Joins the keys of a nested dict into one npz entry name: `conv/weight`.


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", **open_kwargs: Any
                 ) -> Iterator[IO]:
    """Opens a temporary file beside `path` for writing; renames it to `path` on success.

    Args:
      path: the target; its folder is created if missing.
      mode: `'wb'` or `'w'` (text).
      open_kwargs: passed to `open` (e.g. `encoding`).

    Yields:
      The open temporary file (`.<name>.<random>.tmp` in the target's folder, so the rename is
      atomic and no glob for the target's name sees it). On an exception it is removed and
      `path` is left as it was.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write writes whole files: mode 'w' or 'wb', got {mode!r}")
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(tmp, mode.replace("w", "x"), **open_kwargs) as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    """Writes `text` (UTF-8) to `path` atomically."""
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write(text)


def write_json(path: str | os.PathLike, value: Any, **dump_kwargs: Any) -> None:
    """Writes `json.dumps(value, **dump_kwargs)` to `path` atomically."""
    write_text(path, json.dumps(value, **dump_kwargs))


def save_npz(path: str | os.PathLike, arrays: Mapping[str, Any], *,
             allow_pickle: bool = True) -> None:
    """`np.savez` of `arrays` (entry name -> array-like) to `path` atomically; the name is kept
    as given (numpy would append `.npz` to a path without it)."""
    with atomic_write(path) as f:
        np.savez(f, allow_pickle=allow_pickle, **arrays)


def flatten_tree(tree: Mapping[str, Any]) -> dict[str, Any]:
    """A nested dict (of arrays, or any leaves) -> `{'a/b/c': leaf}`; empty sub-dicts dropped."""
    return traverse_util.flatten_dict(_as_dict(tree), sep=SEP)


def unflatten_tree(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`flatten_tree`: `{'a/b/c': x}` -> `{'a': {'b': {'c': x}}}`."""
    return traverse_util.unflatten_dict(dict(flat), sep=SEP)


def _as_dict(tree: Any) -> Any:
    """Mappings (FrozenDict, ConfigDict-like) as plain dicts, recursively."""
    if isinstance(tree, Mapping):
        return {str(k): _as_dict(v) for k, v in tree.items()}
    return tree


def save_npz_tree(path: str | os.PathLike, tree: Mapping[str, Any], **meta: str) -> None:
    """Writes a nested dict of arrays as `'a/b/c'` entries, atomically; each `meta` item as
    the string entry `__key__`."""
    flat = {k: np.asarray(v) for k, v in flatten_tree(tree).items()}
    flat.update({f"__{k}__": np.array(v) for k, v in meta.items()})
    save_npz(path, flat)


def load_npz_tree(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, str]]:
    """Inverse of :func:`save_npz_tree`: `(tree of np.ndarray, meta)`."""
    flat: dict[str, np.ndarray] = {}
    meta: dict[str, str] = {}
    with np.load(path) as f:
        for key in f.files:
            if key.startswith("__") and key.endswith("__"):
                meta[key[2:-2]] = str(f[key])
            else:
                flat[key] = np.asarray(f[key])
    return unflatten_tree(flat), meta
