"""Resumable work folders: settings + numbered chunk files, each written atomically.

A synthetic-dataset job is cut into chunks of candidates that are processed in order; chunk `k`
is `chunks/chunk-<k>.npz`, written with `files.save_npz` (a killed process leaves a whole file
or none). The job is a pure function of its settings and the candidate order, so after an
interruption the completed chunks are read back, the state they imply (how many images were
accepted per cell, ...) is recomputed from them, and work continues at the first missing
chunk: nothing is generated twice and nothing is lost.

`settings.json` records the job's settings; resuming with other settings (another network,
ψ, seeds, thresholds, ...) is refused in one line instead of mixing two jobs in one dataset.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from flaxgan import files
from flaxgan.errors import InvalidArgument

__all__ = ["ChunkStore", "SETTINGS_FILE"]

SETTINGS_FILE = "settings.json"
_CHUNK = re.compile(r"^chunk-(\d{6})\.npz$")


class ChunkStore:
    """A work folder `root` holding `settings.json` and `chunks/chunk-NNNNNN.npz`.

    Args:
      root: the folder (created when missing).
      settings: the job's settings (JSON-able). A folder holding other settings is refused
        (`InvalidArgument` naming the first key that differs), unless `overwrite`, which
        removes its chunks first.
      overwrite: start again.
    """

    def __init__(self, root: str | os.PathLike, settings: Mapping[str, Any],
                 overwrite: bool = False):
        self.root = os.fspath(root)
        self.chunk_dir = os.path.join(self.root, "chunks")
        settings = json.loads(json.dumps(dict(settings)))  # as it reads back from the file
        path = os.path.join(self.root, SETTINGS_FILE)
        if os.path.isfile(path) and not overwrite:
            try:
                with open(path, encoding="utf-8") as f:
                    old = json.load(f)
            except (OSError, ValueError) as e:
                raise InvalidArgument(f"{path}: unreadable ({e}); pass --overwrite to start "
                                      "again") from None
            if old != settings:
                key = next(k for k in sorted(set(old) | set(settings))
                           if old.get(k) != settings.get(k))
                raise InvalidArgument(
                    f"{self.root} holds a job with other settings ({key}: "
                    f"{old.get(key)!r} there, {settings.get(key)!r} now); use another output "
                    "folder or --overwrite")
        if overwrite:
            for k in self.completed():
                os.remove(self._path(k))
        os.makedirs(self.chunk_dir, exist_ok=True)
        files.write_json(path, settings, indent=1)
        self.settings = settings

    def _path(self, index: int) -> str:
        return os.path.join(self.chunk_dir, f"chunk-{index:06d}.npz")

    def completed(self) -> list[int]:
        """Indices of the chunk files present, sorted."""
        if not os.path.isdir(self.chunk_dir):
            return []
        found = (_CHUNK.match(name) for name in os.listdir(self.chunk_dir))
        return sorted(int(m.group(1)) for m in found if m)

    def prefix(self) -> int:
        """How many chunks `0, 1, ...` are complete without a gap (work resumes there)."""
        done = self.completed()
        count = 0
        while count < len(done) and done[count] == count:
            count += 1
        return count

    def save(self, index: int, arrays: Mapping[str, np.ndarray]) -> None:
        """Writes chunk `index` atomically."""
        files.save_npz(self._path(index), {k: np.asarray(v) for k, v in arrays.items()},
                       allow_pickle=False)

    def load(self, index: int) -> dict[str, np.ndarray]:
        """Chunk `index`'s arrays."""
        with np.load(self._path(index), allow_pickle=False) as f:
            return {k: f[k] for k in f.files}

    def chunks(self, count: int | None = None) -> Iterator[dict[str, np.ndarray]]:
        """Chunks `0 .. count - 1` (default: the complete prefix) in order."""
        for k in range(self.prefix() if count is None else count):
            yield self.load(k)
