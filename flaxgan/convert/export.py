"""flaxgan export folders: networks as official-format state_dicts plus their constructor kwargs.

An export folder holds `network.json` (`{key: {"class_name": ..., **official kwargs}}`) and
one `<key>.npz` per network (`G`, `D`, `G_ema`): an official-layout state_dict
(`save_state_dict_npz`), so PyTorch users can `load_state_dict` it. The training loop writes
one per snapshot, `flaxgan.sample.load` reads them, bundled models are such folders.

    from flaxgan.convert import export
    export.write_network("snap/", "G_ema", kwargs, variables)
    kwargs, parameters, buffers = export.read_network("snap/", "G_ema")
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from flaxgan import files
from flaxgan import pretrained as pretrained_lib
from flaxgan.convert.name_table import from_flax, load_state_dict_npz, save_state_dict_npz
from flaxgan.convert.snapshot import SnapshotError

__all__ = [
    "NETWORK_JSON",
    "network_kwargs",
    "networks",
    "read_network",
    "resolve_network",
    "write_network",
]

NETWORK_JSON = "network.json"


def resolve_network(path: str | os.PathLike) -> str:
    """`path` itself when it exists, else the folder of the bundled model of that name (else
    `path` unchanged, so that loading it reports the missing file)."""
    path = os.fspath(path)
    if os.path.exists(path):
        return path
    model = pretrained_lib.find(path)
    return str(model.path) if model else path


def networks(directory: str) -> dict[str, Any]:
    """`{network key: official kwargs}` of an export folder's `network.json`.

    Raises:
      SnapshotError: one line naming the file: missing, not JSON, or not an object.
    """
    meta_path = os.path.join(directory, NETWORK_JSON)
    if not os.path.isfile(meta_path):
        name = os.path.basename(directory.rstrip("/")) or directory
        raise SnapshotError(f"{name}: not a flaxgan export (no {NETWORK_JSON})")
    try:
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SnapshotError(f"{meta_path}: not readable as JSON ({e})") from None
    if not isinstance(meta, dict):
        raise SnapshotError(f"{meta_path}: expected an object of networks "
                            '{"G_ema": {"class_name": ...}}, got '
                            f"{type(meta).__name__}")
    return meta


def network_kwargs(directory: str, key: str) -> dict[str, Any]:
    """Network `key`'s official kwargs (with `class_name`) from an export's `network.json`.

    Raises:
      SnapshotError: one line naming the file: missing, not JSON, or not the
        `{key: {"class_name": ..., ...}}` that `write_network` writes.
    """
    meta = networks(directory)
    meta_path = os.path.join(directory, NETWORK_JSON)
    if key not in meta:
        raise SnapshotError(f"{meta_path}: has no network {key!r} (has "
                            f"{sorted(map(str, meta))[:10]})")
    kwargs = meta[key]
    if not isinstance(kwargs, dict) or not isinstance(kwargs.get("class_name"), str):
        raise SnapshotError(f"{meta_path}: network {key!r} must be an object of "
                            "constructor arguments with a string 'class_name'")
    return kwargs


def read_network(directory: str, key: str) -> tuple[dict[str, Any], dict[str, np.ndarray],
                                                    dict[str, np.ndarray]]:
    """Network `key` of an export folder: `(kwargs with class_name, parameters, buffers)`,
    floating-point arrays as float32 (bundled models store parameters in float16).

    Raises:
      SnapshotError: one line naming the file and the problem.
    """
    kwargs = network_kwargs(directory, key)
    npz = os.path.join(directory, f"{key}.npz")
    if not os.path.isfile(npz):
        raise SnapshotError(f"{npz}: missing ({NETWORK_JSON} lists network {key!r})")
    parameters, buffers = load_state_dict_npz(npz)
    return kwargs, _float16_to_32(parameters), _float16_to_32(buffers)


def _float16_to_32(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v.astype(np.float32) if v.dtype == np.float16 else v for k, v in arrays.items()}


def write_network(directory: str | os.PathLike, key: str, kwargs: Mapping[str, Any],
                  variables: Mapping[str, Any], param_dtype: Any = None) -> str:
    """Adds network `key` (official kwargs with `class_name`, Flax variables of a generator or
    a discriminator) to the export `directory`: `<key>.npz` + its entry in `network.json`.

    Args:
      directory: the export folder (created if missing).
      key: `G`, `D` or `G_ema`.
      kwargs: official constructor kwargs with `class_name`.
      variables: `{'params': ..., 'buffers': ...}`.
      param_dtype: e.g. `np.float16` stores the parameters in that precision (buffers keep
        theirs); `read_network` restores float32.

    Returns:
      The directory.
    """
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    parameters, buffers = from_flax(jax.tree.map(np.asarray, dict(variables)))
    if param_dtype is not None:
        parameters = {k: v.astype(param_dtype) if np.issubdtype(v.dtype, np.floating) else v
                      for k, v in parameters.items()}
    save_state_dict_npz(os.path.join(directory, f"{key}.npz"), parameters, buffers)
    meta_path = os.path.join(directory, NETWORK_JSON)
    meta = {}
    if os.path.isfile(meta_path):
        with open(meta_path) as f:
            meta = json.load(f)
    meta[key] = _jsonable(kwargs)
    files.write_json(meta_path, meta, indent=1)
    return directory


def _jsonable(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    return x
