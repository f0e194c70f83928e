"""Orbax checkpoints of a training run: the last N, and the best by a metric.

Layout under `workdir`: `checkpoints/<step>/` (kept: the last `keep`) and `best/<step>/` (kept:
the one with the best metric). Each holds `state` (the `GanState`), `data` (the input
iterator's position, JSON) and `meta` (JSON: images seen, tick, config, metrics). Saves are
atomic (Orbax writes to a temporary directory and renames), so an interrupted save never
replaces a good checkpoint. Restores go into a target state built from the config, so a
checkpoint of another model fails with one clear line instead of loading half.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp

from flaxgan.train.state import GanState

__all__ = ["CheckpointError", "Checkpointer"]

_ITEMS = ("state", "data", "meta")


class CheckpointError(ValueError):
    """A checkpoint that cannot be restored into this run's state."""


class Checkpointer:
    """Keep-last-N and best-by-metric checkpoint managers of one workdir.

    Args:
      workdir: run directory.
      keep: how many of the latest checkpoints to keep.
      best_metric: metric name (a key of the `metrics` passed to `save`) that picks the best
        checkpoint, or None to keep no best checkpoint.
      higher_is_better: direction of `best_metric`.
    """

    def __init__(self, workdir: str, keep: int = 3, best_metric: str | None = None,
                 higher_is_better: bool = False):
        self.workdir = os.path.abspath(workdir)
        self.best_metric = best_metric
        self._last = ocp.CheckpointManager(
            os.path.join(self.workdir, "checkpoints"), item_names=_ITEMS,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                                 enable_async_checkpointing=False))
        self._best = None
        if best_metric:
            self._best = ocp.CheckpointManager(
                os.path.join(self.workdir, "best"), item_names=_ITEMS,
                options=ocp.CheckpointManagerOptions(
                    max_to_keep=1, best_fn=lambda m: m[best_metric],
                    best_mode="max" if higher_is_better else "min",
                    keep_checkpoints_without_metrics=False, create=True,
                    enable_async_checkpointing=False))

    @staticmethod
    def _args(state: GanState, data: dict[str, Any], meta: dict[str, Any]) -> ocp.args.Composite:
        return ocp.args.Composite(state=ocp.args.StandardSave(state),
                                  data=ocp.args.JsonSave(data), meta=ocp.args.JsonSave(meta))

    def save(self, step: int, state: GanState, data: dict[str, Any], meta: dict[str, Any],
             metrics: dict[str, float] | None = None) -> None:
        """Saves a checkpoint; also as the best one when `metrics[best_metric]` improves."""
        self._last.save(step, args=self._args(state, data, meta), force=True)
        if self._best is not None and metrics and self.best_metric in metrics:
            self._best.save(step, args=self._args(state, data, {**meta, "metrics": metrics}),
                            metrics=metrics, force=True)
        self._last.wait_until_finished()
        if self._best is not None:
            self._best.wait_until_finished()

    def latest_step(self) -> int | None:
        return self._last.latest_step()

    def best_step(self) -> int | None:
        return None if self._best is None else self._best.best_step()

    def restore(self, target: GanState, step: int | None = None, best: bool = False
                ) -> tuple[GanState, dict[str, Any], dict[str, Any]]:
        """Restores `(state, data, meta)` into the structure, dtypes and shardings of `target`.

        Raises:
          CheckpointError: no checkpoint, or one that does not match `target`.
        """
        manager = self._best if best else self._last
        if manager is None:
            raise CheckpointError(f"{self.workdir}: this run keeps no best checkpoint")
        step = (manager.best_step() if best else manager.latest_step()) if step is None else step
        if step is None:
            raise CheckpointError(f"{manager.directory}: no checkpoint to restore")
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        try:
            restored = manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), data=ocp.args.JsonRestore(),
                meta=ocp.args.JsonRestore()))
        except (ValueError, KeyError, TypeError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise CheckpointError(f"{manager.directory}/{step}: does not match this run's model "
                                  f"and optimizer ({first})") from None
        return restored["state"], dict(restored["data"] or {}), dict(restored["meta"] or {})

    def close(self) -> None:
        self._last.close()
        if self._best is not None:
            self._best.close()
