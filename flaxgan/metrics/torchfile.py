"""Shared pieces of the pretrained metric networks: torch weight files read without torch, the
official detectors' bilinear resize, and the ``.npz`` conversion cache.

Torch files come in three containers, all read here with ``zipfile`` + ``pickle`` + numpy and a
restricted unpickler that resolves only tensors, storages, ``OrderedDict``, TorchScript list
builders and TorchScript module classes (nothing in a file runs):

* a TorchScript zip (``torch.jit.save``; NVIDIA's ``inception-2015-12-05.pt``, ``vgg16.pt``):
  ``<archive>/data.pkl`` pickles the module tree, ``<archive>/data/<key>`` hold the raw storages;
* a ``torch.save`` zip (torch >= 1.6 state_dicts): the same layout, the pickle is a dict;
* a legacy ``torch.save`` stream (older state_dicts, e.g. torchvision's 2017
  ``vgg16-397923af.pth``): five pickles (magic, protocol, sys_info, the object, the storage
  keys), then per key an int64 element count and the raw little-endian elements.

:func:`read_torch_file` flattens any of them into ``{'dotted.name': ndarray | attribute}``.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import glob
import hashlib
import io
import json
import os
import pickle
import re
import struct
import zipfile
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from flaxgan import files
from flaxgan.convert import torch_io
from flaxgan.convert.torch_io import Budget, TensorView

__all__ = [
    'cache_path',
    'default_cache_dir',
    'drop_legacy_copies',
    'file_sha256',
    'read_torch_file',
    'read_torchscript',
    'resize_bilinear',
    'sample_positions',
    'sha256_file',
]

# ---------------------------------------------------------------------------------------------
# Resize: the official affine_grid / grid_sample bilinear resampling, as static gathers.
# ---------------------------------------------------------------------------------------------


@functools.cache
def sample_positions(size: int, out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights of the official detectors' resize along one axis.

    Mirrors torch's float32 CPU arithmetic step by step: ``linspace(-1, 1, out)`` (two-sided),
    ``* (out - 1) / out`` (``affine_grid``, ``align_corners=False``), ``+ (1/size - 1/out)``
    (the theta correction), ``(g + 1) * (size / 2) - 0.5`` and the border clamp to
    ``[0, size - 1]`` (``grid_sample``). Mathematically ``u_j = j * size / out``.

    Returns:
      ``(i0, i1, t)``: int32 ``[out]`` lower/upper source indices (upper clamped in range) and
      float32 ``[out]`` fractional offsets ``t = u - floor(u)``.
    """
    f32 = np.float32
    idx = np.arange(out)
    step = f32(2.0) / f32(out - 1)
    lo = f32(-1.0) + step * idx.astype(f32)
    hi = f32(1.0) - step * (out - 1 - idx).astype(f32)
    base = np.where(idx < out // 2, lo, hi).astype(f32)
    base = base * f32(out - 1) / f32(out)
    shift = f32(f32(1.0) / f32(size)) - f32(f32(1.0) / f32(out))
    u = (base + shift + f32(1.0)) * (f32(size) / f32(2.0)) - f32(0.5)
    u = np.clip(u, f32(0.0), f32(size - 1)).astype(f32)
    i0 = np.floor(u).astype(np.int32)
    t = (u - i0.astype(f32)).astype(f32)
    i1 = np.minimum(i0 + 1, size - 1).astype(np.int32)  # weight t is 0 where this clamps
    return i0, i1, t


def resize_bilinear(x: jax.Array, out: int) -> jax.Array:
    """The official detectors' bilinear resize of ``x [N, H, W, C]`` to ``[N, out, out, C]``.

    ``affine_grid`` + ``grid_sample`` (bilinear, border padding, ``align_corners=False``) with
    ``theta[0, 2] += 1/W - 1/out``, ``theta[1, 2] += 1/H - 1/out``:
    ``res = nw * x[y0, x0] + ne * x[y0, x1] + sw * x[y1, x0] + se * x[y1, x1]`` with
    ``nw = (1 - tx)(1 - ty)``, ``ne = tx (1 - ty)``, ``sw = (1 - tx) ty``, ``se = tx ty``,
    in torch's order of operations. (Float32 rounding of the sample positions makes even an
    ``out x out`` input move by up to ~1e-2 grey levels, in the official code too.)
    """
    _, h, w, _ = x.shape
    y0, y1, ty = sample_positions(h, out)
    x0, x1, tx = sample_positions(w, out)
    one = np.float32(1.0)
    ty, tx = ty[:, None, None], tx[None, :, None]
    nw, ne = (one - tx) * (one - ty), tx * (one - ty)
    sw, se = (one - tx) * ty, tx * ty
    top, bottom = x[:, y0], x[:, y1]
    return (top[:, :, x0] * nw + top[:, :, x1] * ne) + bottom[:, :, x0] * sw + bottom[:, :, x1] * se


# ---------------------------------------------------------------------------------------------
# Torch files -> numpy.
# ---------------------------------------------------------------------------------------------

_MAX_ENTRIES = 100_000  # Names and objects visited; NVIDIA's Inception has ~1000.


class _ScriptObject:
    """Stand-in for a pickled TorchScript module: just its attribute dict."""

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)


# Storage key, dtype, element count -> the 1-D storage array tensors view.
_Storages = Callable[[torch_io.StorageSpec], np.ndarray]


class _TorchUnpickler(torch_io.RestrictedUnpickler):
    """Resolves only tensors, storages, OrderedDict, TorchScript list builders, module classes.

    ``storages(spec)`` returns the 1-D storage array for a persistent id.
    """

    def __init__(self, file: Any, storages: _Storages, budget: Budget):
        super().__init__(file, budget)
        self._storages = storages

    def find_class(self, module: str, name: str) -> Any:
        if module == 'torch._utils' and name in ('_rebuild_tensor_v2', '_rebuild_tensor'):
            return torch_io.rebuild_tensor
        if module == 'torch' and name in torch_io.STORAGE_TYPES:
            return torch_io.STORAGE_TYPES[name]
        if (module, name) == ('collections', 'OrderedDict'):
            return collections.OrderedDict
        if module == 'torch.jit._pickle' and name.startswith('build_'):
            return list
        if module == '__torch__' or module.startswith('__torch__.'):
            return type(name, (_ScriptObject,), {})
        raise pickle.UnpicklingError(f'refusing to load {module[:100]}.{name[:100]}')

    def persistent_load(self, pid: tuple) -> np.ndarray:
        return self._storages(torch_io.storage_spec(pid, 'storage'))


def _flatten(obj: Any, prefix: str, out: dict[str, Any], budget: Budget, depth: int = 0) -> None:
    """Module attributes / nested dicts -> ``out['dotted.name']``. Names are the output, so a
    shared sub-tree is expanded once per name: the count of names and visits is bounded."""
    budget.visit(depth, 'module tree')
    items = obj.items() if isinstance(obj, dict) else vars(obj).items()
    for k, v in items:
        if k in ('training', '_is_full_backward_hook'):
            continue
        name = f'{prefix}.{k}' if prefix else str(k)
        if isinstance(v, _ScriptObject | dict):
            _flatten(v, name, out, budget, depth + 1)
        else:
            out[name] = v
            budget.expansion(len(out), 'entries')


def _materialise(tree: dict[str, Any], budget: Budget,
                 storages: dict[int, np.ndarray] | None = None) -> dict[str, Any]:
    """Copies every tensor view out of its storage (native byte order, C order), charging each
    copy to ``budget`` first. ``storages``: real storages by ``id`` of the placeholder the
    views refer to (legacy files)."""
    storages = storages or {}

    def copy(v: Any, name: str, depth: int = 0) -> Any:
        budget.visit(depth, name)
        if isinstance(v, TensorView):
            v = v._replace(storage=storages.get(id(v.storage), v.storage))
            return torch_io.materialise(v, budget, name)
        if isinstance(v, np.ndarray):
            return v.astype(v.dtype.newbyteorder('='), order='C', copy=True)
        if isinstance(v, list | tuple):
            return type(v)(copy(x, name, depth + 1) for x in v)
        return v
    return {k: copy(v, k) for k, v in tree.items()}


def _read_zip(zf: zipfile.ZipFile, budget: Budget) -> Any:
    """The object a TorchScript / ``torch.save`` zip pickles, its storages read on demand."""
    prefix = torch_io.zip_archive_prefix(zf, budget, 'zip')
    loaded: dict[str, np.ndarray] = {}

    def storage(spec: torch_io.StorageSpec) -> np.ndarray:
        if spec.key not in loaded:  # Each storage read once, however many tensors view it.
            raw = torch_io.read_zip_entry(zf, f'{prefix}data/{spec.key}', budget, exact=False,
                                          nbytes=spec.numel * spec.dtype.itemsize,
                                          what=f'storage {spec.key}')
            loaded[spec.key] = np.frombuffer(raw, dtype=spec.dtype, count=spec.numel)
        elif loaded[spec.key].dtype != spec.dtype or loaded[spec.key].size != spec.numel:
            raise ValueError(f'storage {spec.key} is declared twice differently')
        return loaded[spec.key]

    budget.storage(zf.getinfo(f'{prefix}data.pkl').file_size, 'data.pkl')
    with zf.open(f'{prefix}data.pkl') as f:
        return _TorchUnpickler(f, storage, budget).load()


def _read_legacy(stream: io.BufferedIOBase, budget: Budget
                 ) -> tuple[Any, dict[int, np.ndarray]]:
    """A legacy stream -> ``(root, storages)``: the root's tensor views refer to placeholder
    storages (stride 0, nothing allocated: the data follows the pickles), ``storages`` maps
    ``id(placeholder)`` to the real array, each allocated once its size is checked against
    the file."""
    specs: dict[str, torch_io.StorageSpec] = {}
    placeholders: dict[str, np.ndarray] = {}

    def storage(spec: torch_io.StorageSpec) -> np.ndarray:
        if specs.setdefault(spec.key, spec) != spec:
            raise ValueError(f'storage {spec.key} is declared twice differently')
        if spec.key not in placeholders:
            placeholders[spec.key] = np.lib.stride_tricks.as_strided(
                np.zeros(1, spec.dtype), shape=(spec.numel,), strides=(0,), writeable=False)
        return placeholders[spec.key]

    def load() -> Any:
        return _TorchUnpickler(stream, storage, budget).load()

    torch_io.check_legacy_header(load, 'stream')
    root, keys = load(), load()
    if not isinstance(keys, list) or set(map(str, keys)) != set(specs):
        raise ValueError('storage key list does not match the tensors')
    arrays = torch_io.read_legacy_storages(stream, keys, specs, budget, what='storage')
    return root, {id(placeholders[key]): array for key, array in arrays.items()}


def read_torch_file(path: str | os.PathLike, what: str = 'a torch weight file') -> dict[str, Any]:
    """Reads a TorchScript zip, a ``torch.save`` zip or a legacy ``torch.save`` file.

    Args:
      path: the file.
      what: how error messages describe the expected file (e.g. ``'vgg16.pt or
        vgg16-397923af.pth'``).
    Returns:
      A flat ``{'dotted.name': value}`` dict: module attributes / state_dict entries, tensors as
      fresh numpy arrays in native byte order.
    Raises:
      ValueError: one line naming ``path`` when the file is neither format or is damaged.
    """
    path = os.fspath(path)
    try:
        budget = Budget(os.path.getsize(path), max_visits=_MAX_ENTRIES)
        storages: dict[int, np.ndarray] = {}
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                root = _read_zip(zf, budget)
        else:
            with open(path, 'rb') as f:
                root, storages = _read_legacy(f, budget)
        if not isinstance(root, dict | _ScriptObject):
            raise ValueError(f'holds a {type(root).__name__}, not a module or state_dict')
        out: dict[str, Any] = {}
        _flatten(root, '', out, budget)
        return _materialise(out, budget, storages)
    except (ValueError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, KeyError,
            struct.error, TypeError, AttributeError, IndexError, OSError, MemoryError,
            RecursionError) as e:
        msg = ' '.join(str(e).split())[:200]
        raise ValueError(f'{path}: not a readable torch file, expected {what} '
                         f'({type(e).__name__}: {msg})') from None


def read_torchscript(path: str | os.PathLike, what: str = 'a TorchScript file'
                     ) -> dict[str, Any]:
    """Reads a TorchScript zip into a flat ``{'net.layers.conv.weight': ndarray, ...}`` dict.

    Module attributes (``stride``, ``padding``) are kept too. No torch needed: ``data.pkl`` is
    unpickled with a restricted unpickler, tensors are copies of the raw storages.
    """
    path = os.fspath(path)
    if not zipfile.is_zipfile(path):
        raise ValueError(f'{path}: not a TorchScript zip (expected {what})')
    return read_torch_file(path, what)


# ---------------------------------------------------------------------------------------------
# Conversion cache.
# ---------------------------------------------------------------------------------------------


def default_cache_dir() -> str:
    """``$FLAXGAN_CACHE`` or ``~/.cache/flaxgan``."""
    default = os.path.join(os.path.expanduser('~'), '.cache', 'flaxgan')
    return os.environ.get('FLAXGAN_CACHE', default)


def sha256_file(path: str) -> str:
    """The sha256 hex digest of a file's bytes (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return h.hexdigest()


DIGEST_INDEX = 'sha256-index.json'  # In the cache dir: {abspath: [size, mtime_ns, sha256]}.


def _read_digests(index: str) -> dict[str, list]:
    """The digest index, without malformed entries ({} when missing or unreadable)."""
    try:
        with open(index) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, list) and len(v) == 3
            and all(type(x) is int for x in v[:2]) and isinstance(v[2], str)}


def _write_digests(index: str, digests: dict[str, list]) -> None:
    """Writes the index atomically, dropping files that no longer exist; a read-only cache
    only costs hashing again next time."""
    kept = {k: v for k, v in digests.items() if os.path.exists(k)}
    with contextlib.suppress(OSError):
        files.write_json(index, kept, indent=0, sort_keys=True)


def file_sha256(path: str | os.PathLike, cache_dir: str | None = None) -> str:
    """The sha256 of ``path``'s content, hashed once per (absolute path, size, mtime).

    The digests are memoised in ``<cache>/sha256-index.json``, so an unchanged weight file is
    not read again on every run; a changed size or modification time hashes it again.
    """
    path = os.path.abspath(os.fspath(path))
    stat = os.stat(path)
    stamp = [stat.st_size, stat.st_mtime_ns]
    index = os.path.join(cache_dir or default_cache_dir(), DIGEST_INDEX)
    entry = _read_digests(index).get(path)
    if entry is not None and entry[:2] == stamp:
        return entry[2]
    digest = sha256_file(path)
    digests = _read_digests(index)  # again: another process may have added entries meanwhile
    digests[path] = [*stamp, digest]
    _write_digests(index, digests)
    return digest


def cache_path(path: str, cache_dir: str | None, stem: str) -> str:
    """``<cache>/<stem>-<16 hex of the sha256 of path's content>.npz`` for the converted file.

    Keyed by content: copies of one weight file at other paths or with other modification
    times share one converted ``.npz`` (the digest itself is memoised, :func:`file_sha256`).
    Files of the former path-and-mtime keying that hold the same content are removed
    (:func:`drop_legacy_copies`): they would never be read again.
    """
    digest = file_sha256(path, cache_dir)
    cache = os.path.join(cache_dir or default_cache_dir(), f'{stem}-{digest[:16]}.npz')
    drop_legacy_copies(cache, digest)
    return cache


def drop_legacy_copies(cache: str, digest: str) -> list[str]:
    """Removes converted files of the old path-and-mtime keying (``<stem>-<12 hex>.npz`` beside
    ``cache``) that record the same source sha256: copies of the content-keyed ``cache``.

    Returns:
      The removed paths (files of other content, or unreadable ones, are kept).
    """
    stem = os.path.basename(cache).rsplit('-', 1)[0]
    removed = []
    for old in glob.glob(os.path.join(glob.escape(os.path.dirname(cache)), f'{stem}-*.npz')):
        if not re.fullmatch(r'[0-9a-f]{12}', os.path.basename(old)[len(stem) + 1:-4]):
            continue
        try:
            with np.load(old) as f:
                same = '__sha256__' in f.files and str(f['__sha256__']) == digest
            if same:
                os.remove(old)
                removed.append(old)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile):
            continue
    return removed
