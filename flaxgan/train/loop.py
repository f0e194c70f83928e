"""The training loop: kimg ticks, logging, sample grids, checkpoints, metrics and resume.

`train(config, workdir)` runs the official StyleGAN2-ADA schedule on every local device:

  * one iteration = the phases of `flaxgan.train.step` on a global batch of
    `config.train.batch_size` real images;
  * every tick (`config.log.kimg_per_tick` thousand images): one JSON line in
    `workdir/metrics.jsonl` (kimg, losses of every phase, R1/PL penalties, ADA p and r_t,
    sec/kimg, images/s, the process's peak host RSS `Resources/peak_host_rss_mib` and, where
    the backend reports it, peak device memory `Resources/peak_gpu_mem_gb`) and the same as
    TensorBoard scalars under `workdir/tensorboard/`. TensorBoard's step is whole kimg, as the
    official `global_step=int(cur_nimg / 1e3)` (ticks inside one kimg share a step; the exact
    kimg is in each JSON line), and metric values are tagged `Metrics/<name>` as there;
  * every `image_every_ticks`: a grid of G_ema samples at fixed latents (`samples/fakesNNNNNN.png`,
    plus TensorBoard); every `snapshot_every_ticks`: an Orbax checkpoint (last N kept) and an
    official-format export of G, D and G_ema (`snapshots/network-snapshot-KKKKKK/` at whole
    kimg, `network-snapshot-KKKKKK.III/` KKKKKK kimg + III images otherwise, with
    `network-snapshot-KKKKKK` then a link to the latest of them; loadable by
    `flaxgan.sample.load` and as PyTorch state dicts); every `metrics_every_ticks`: the metrics
    of `config.log.metrics` and a best checkpoint by the first of them;
  * restarting with the same `workdir` resumes from the latest checkpoint that restores (a
    damaged one is kept aside as `checkpoints/<step>.corrupt`): images seen, ADA p, optimizer
    states, EMA, RNG and the data position; `metrics.jsonl` lines of ticks after it are dropped
    (they are logged again); another batch size needs `train.allow_batch_size_change`;
  * a non-finite loss or parameter stops the run with `TrainingDiverged`; the last checkpoint,
    written before the divergence, stays intact.

Only this module and `experiments/` read `ConfigDict`s; everything below takes plain arguments.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import re
import resource
import shutil
import sys
import time
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from flaxgan import files, images, xla_cpu
from flaxgan.convert import export
from flaxgan.models import registry
from flaxgan.train import checkpoint as ckpt
from flaxgan.train import partial_resume, progressive, sharding
from flaxgan.train import state as state_lib
from flaxgan.train import step as step_lib

__all__ = ["TrainingDiverged", "DatasetNotPrepared", "build_networks", "hyperparameters",
           "tensorboard_step", "train"]


class TrainingDiverged(RuntimeError):
    """A loss or parameter became NaN/Inf; the last good checkpoint is kept."""


class DatasetNotPrepared(FileNotFoundError):
    """The configured dataset does not exist yet (the message names the command to build it)."""


# ------------------------------------------------------------------------------------ set-up


def build_networks(model: Mapping[str, Any], resolution: int, channels: int, c_dim: int):
    """Generator and discriminator kwargs (official names, with `class_name`) and modules."""
    g_kwargs = {"class_name": model["G_class"], **_plain(model["G_kwargs"]),
                **registry.dataset_kwargs(model["G_class"], resolution, channels, c_dim)}
    d_kwargs = {"class_name": model["D_class"], **_plain(model["D_kwargs"]),
                **registry.dataset_kwargs(model["D_class"], resolution, channels, c_dim)}
    G = registry.build_generator(g_kwargs["class_name"], g_kwargs)
    D = registry.build_discriminator(d_kwargs["class_name"], d_kwargs)
    return g_kwargs, d_kwargs, G, D


def hyperparameters(train_config: Mapping[str, Any], augment_config: Mapping[str, Any]
                    ) -> step_lib.Hyperparameters:
    """`Hyperparameters` from the `train` and `augment` config sections (unknown keys fail)."""
    fields = {f.name for f in dataclasses.fields(step_lib.Hyperparameters)}
    values = {k: v for k, v in _plain(train_config).items() if k in fields}
    unknown = set(_plain(train_config)) - fields - _LOOP_TRAIN_KEYS
    if unknown:
        raise ValueError(f"config.train has unknown keys {sorted(unknown)}")
    for key in ("betas", "ema_update_phases"):
        if key in values:
            values[key] = tuple(values[key])
    ada = _plain(augment_config)
    values.update(ada_target=ada.get("ada_target"), ada_interval=ada.get("ada_interval", 4),
                  ada_kimg=ada.get("ada_kimg", 500.0))
    return step_lib.Hyperparameters(**values)


# `config.train` keys read by the loop itself, not by the jitted step.
_LOOP_TRAIN_KEYS = {"total_kimg", "seed", "allow_batch_size_change"}


def _plain(x: Any) -> Any:
    if isinstance(x, ml_collections.ConfigDict):
        x = x.to_dict()
    if isinstance(x, Mapping):
        return {k: _plain(v) for k, v in x.items()}
    return x


def _make_augment(augment_config: Mapping[str, Any]):
    """The ADA pipeline as `(images, key, p) -> images`, or None when augmentation is off."""
    cfg = _plain(augment_config)
    if not cfg.get("pipe"):
        return None
    return _augment_fn(cfg["pipe"], tuple(sorted(cfg.get("kwargs", {}).items())))


@functools.cache
def _augment_fn(pipe: str, overrides: tuple):
    from flaxgan import augment  # noqa: PLC0415 (only needed for augmented runs)
    return augment.make_augment_fn(pipe, **dict(overrides))


# Jitted phases per (G, D, hp, mesh, augment): a second `train` call in one process (a resumed
# run, a notebook) reuses the compiled steps instead of compiling them again.
_cached_train_steps = functools.cache(step_lib.make_train_steps)


def _train_steps(G, D, hp: step_lib.Hyperparameters, mesh, augment=None,
                 class_probs: tuple[float, ...] | None = None) -> step_lib.TrainSteps:
    return _cached_train_steps(G, D, hp, mesh, augment, None, class_probs)


def _open_data(data: Mapping[str, Any], batch_size: int, seed: int, process_index: int,
               process_count: int):
    """`(metadata, iterator)`: this process's `batch_size` examples (its `process_index`-th
    slice) of every global batch, the global batches the same for any number of processes."""
    from data_pipelines import input as data_input  # keeps the TFDS import lazy
    kwargs = data_input.section_kwargs(data)
    try:
        meta = data_input.dataset_metadata(**kwargs)
    except (FileNotFoundError, ValueError) as e:
        hint = data.get("prepare")
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        if hint:
            raise DatasetNotPrepared(f"dataset {data['name']!r} is not available ({message}); "
                                     f"prepare it with: {hint}") from None
        raise
    iterator = data_input.make_dataset(batch_size=batch_size, shuffle=True, seed=seed,
                                       xflip=data.get("xflip", False), one_hot=True,
                                       process_index=process_index,
                                       process_count=process_count, split_batches=True,
                                       **kwargs)
    return meta, iterator


def _class_frequencies(data: Mapping[str, Any]) -> tuple[float, ...]:
    from data_pipelines import input as data_input  # keeps the TFDS import lazy
    probs = data_input.class_frequencies(**data_input.section_kwargs(data))
    return tuple(float(p) for p in probs)


# ----------------------------------------------------------------------------------- logging


class _Writers:
    """metrics.jsonl (append) + TensorBoard event files (when tensorboardX is installed)."""

    def __init__(self, workdir: str, enabled: bool):
        self.enabled = enabled
        self.jsonl = None
        self.tb = None
        if not enabled:
            return
        self.jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")  # noqa: SIM115
        try:
            from tensorboardX import SummaryWriter  # noqa: PLC0415
            self.tb = SummaryWriter(os.path.join(workdir, "tensorboard"))
        except ImportError:
            logging.warning("tensorboardX not installed: no TensorBoard events")

    def scalars(self, record: Mapping[str, Any], kimg: float) -> None:
        """One metrics.jsonl line; TensorBoard scalars at step `tensorboard_step(kimg)`, metric
        values (keys without a `/`) under `Metrics/<name>` as the official code."""
        if not self.enabled:
            return
        self.jsonl.write(json.dumps(record) + "\n")
        self.jsonl.flush()
        if self.tb is not None:
            step = tensorboard_step(kimg)
            for key, value in record.items():
                if isinstance(value, int | float) and key not in ("kimg", "tick"):
                    self.tb.add_scalar(key if "/" in key else f"Metrics/{key}", value, step)
            self.tb.flush()

    def image(self, tag: str, image: np.ndarray, kimg: float) -> None:
        if self.tb is not None:
            self.tb.add_image(tag, image, tensorboard_step(kimg),
                              dataformats="HW" if image.ndim == 2 else "HWC")

    def close(self) -> None:
        if self.jsonl is not None:
            self.jsonl.close()
        if self.tb is not None:
            self.tb.close()


def tensorboard_step(kimg: float) -> int:
    """The TensorBoard global step of a tick: whole kimg, as the official
    `global_step=int(cur_nimg / 1e3)` (ticks within one kimg share a step)."""
    return int(kimg)


def _memory_gib() -> float | None:
    stats = jax.local_devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return None if peak is None else round(peak / 2**30, 3)


def _peak_host_rss_mib() -> float:
    """This process's peak resident memory in MiB (`ru_maxrss`: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)


# ------------------------------------------------------------------------------ sample grids


def _grid_latents(G, grid_size: tuple[int, int], labels: np.ndarray, seed: int):
    cols, rows = grid_size
    n = cols * rows
    z = np.random.RandomState(seed).randn(n, G.z_dim).astype(np.float32)
    c = labels[np.arange(n) % max(len(labels), 1)] if labels.size else np.zeros((n, 0), np.float32)
    return z, c


def _save_grid(path: str, images_uint8: np.ndarray, cols: int) -> np.ndarray:
    image = images.grid(images_uint8, cols)
    with files.atomic_write(path) as f:
        image.save(f, format="PNG")
    return np.asarray(image)


# --------------------------------------------------------------------------------- the loop


def _data_state(iterator) -> dict[str, Any]:
    get_state = getattr(iterator, "get_state", None)
    return {"iterator": get_state()} if get_state else {}


@xla_cpu.jit
def _all_finite(tree) -> jax.Array:
    """Whether every float leaf of `tree` is finite: one program per tree (checked leaf by leaf
    outside jit, each leaf shape compiled two one-op programs, ~50 at a run's first snapshot)."""
    flags = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
             if jnp.issubdtype(x.dtype, jnp.floating)]
    return jnp.all(jnp.stack(flags)) if flags else jnp.bool_(True)


def _finite(tree) -> bool:
    return bool(_all_finite(tree))


def train(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Trains (or resumes) the configured GAN in `workdir`; returns the last tick's record.

    Raises:
      DatasetNotPrepared: the dataset is missing (names the command that prepares it).
      TrainingDiverged: a non-finite loss or parameter.
      checkpoint.CheckpointError: the workdir holds a checkpoint of another model, of another
        batch size (without `train.allow_batch_size_change`), or none that restores.
    """
    sharding.initialize_distributed()
    is_chief = jax.process_index() == 0
    workdir = os.path.abspath(workdir)
    os.makedirs(os.path.join(workdir, "samples"), exist_ok=True)
    mesh = sharding.make_mesh()
    seed = int(config.get("seed", 0))
    log = _plain(config.log)
    train_cfg = _plain(config.train)
    hp = hyperparameters(config.train, config.augment)
    total_nimg = int(train_cfg["total_kimg"] * 1000)
    # The stage (minibatch, tick length; StyleGAN v1: lod, learning rates) at any kimg.
    schedule = _plain(config.get("schedule")) or None
    data_batch = (progressive.data_batch_size(progressive.Schedule.from_config(schedule),
                                              mesh.size) if schedule else hp.batch_size)

    meta_data, iterator = _open_data(
        _plain(config.data), sharding.process_batch_size(data_batch, mesh), seed,
        sharding.process_batch_index(mesh), jax.process_count())
    c_dim = meta_data.c_dim if config.data.get("use_labels", False) else 0
    # Generated images take classes as often as the training stream holds them (official).
    class_probs = _class_frequencies(_plain(config.data)) if c_dim else None
    g_kwargs, d_kwargs, G, D = build_networks(
        config.model, meta_data.resolution, meta_data.channels, c_dim)
    augment = _make_augment(config.augment)
    plan = progressive.make_plan(schedule, hp, meta_data.resolution, mesh.size,
                                 log.get("kimg_per_tick", 4))
    g_opt, d_opt = step_lib.make_optimizers(hp)

    ada_p = float(_plain(config.augment).get("p", 0.0))

    def init_variables():
        return state_lib.init_variables(G, D, jax.random.key(seed), meta_data.resolution,
                                        meta_data.channels, c_dim)

    def new_state(g_vars, d_vars, ema_vars=None) -> state_lib.GanState:
        return state_lib.create_state(g_vars, d_vars, g_opt, d_opt, jax.random.key(seed + 1),
                                      ada_p=ada_p, ema_variables=ema_vars)

    checkpointer = ckpt.Checkpointer(
        workdir, keep=log.get("keep_checkpoints", 3),
        best_metric=(log.get("metrics") or [None])[0],
        higher_is_better=_higher_is_better((log.get("metrics") or [None])[0]))
    tick = 0
    resumed = checkpointer.latest_step() is not None
    if resumed:
        # The restore target is shapes, dtypes and shardings only: nothing is initialised.
        abstract = jax.tree.map(
            lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding.replicated(mesh)),
            jax.eval_shape(lambda: new_state(*init_variables())))
        state, data_state, meta = checkpointer.restore_latest(abstract)
        data_state = _resume_batch_size(meta, data_state, data_batch,
                                        bool(train_cfg.get("allow_batch_size_change")), workdir)
        state = sharding.replicate(state, mesh)
        if data_state.get("iterator") is not None and hasattr(iterator, "set_state"):
            iterator.set_state(data_state["iterator"])
        tick = int(meta.get("tick", 0))
        logging.info("resumed %s at %.3f kimg (tick %d)", workdir, int(state.nimg) / 1e3, tick)
    else:
        resume_pkl = config.get("resume_pkl")
        resume_partial = bool(config.get("resume_partial", False))
        # A whole snapshot replaces every initial value (the import checks that it has exactly
        # the networks' entries and shapes): then shapes are all it needs, nothing is compiled.
        if resume_pkl and not resume_partial:
            g_vars, d_vars = jax.eval_shape(init_variables)
        else:
            g_vars, d_vars = xla_cpu.jit(init_variables)()
        ema_vars = None
        if resume_pkl:  # outside jit: snapshot weights are data, not constants
            g_vars, d_vars, ema_vars = _import_snapshot(resume_pkl, g_vars, d_vars,
                                                        resume_partial)
            logging.info("starting from the networks of %s", resume_pkl)
        state = sharding.replicate(new_state(g_vars, d_vars, ema_vars), mesh)
    plan.start(state, resumed=resumed)
    if is_chief:  # what `experiments.eval --workdir` reads the dataset from
        files.write_text(os.path.join(workdir, "config.json"),
                         config.to_json_best_effort(indent=2) + "\n")
        _drop_records_after(os.path.join(workdir, "metrics.jsonl"), tick)
    cur_nimg, step = int(state.nimg), int(state.step)

    writers = _Writers(workdir, is_chief)

    def save(state: state_lib.GanState, step: int, tick: int, nimg: int,
             metrics: dict[str, float] | None) -> None:
        """The tick's Orbax checkpoint (with its metric values) and network snapshot."""
        meta = {"tick": tick, "kimg": nimg / 1e3, "batch_size": data_batch,
                "config": config.to_json_best_effort()}
        checkpointer.save(step, state, _data_state(iterator), meta, metrics=metrics)
        if is_chief:
            _export_snapshot(os.path.join(workdir, "snapshots"), nimg,
                             {"G": (g_kwargs, state.g_variables),
                              "D": (d_kwargs, state.d_variables),
                              "G_ema": (g_kwargs, state.ema_variables)})
    grid_cols, grid_rows = log.get("grid_size", (8, 4))

    def next_batch():
        batch = next(iterator)
        return {"image": batch["image"], "label": np.asarray(batch["label"])[:, :c_dim]}

    def minibatch(first_batch, size: int):
        """`size // data_batch` iterator batches (the first one given, if any), joined."""
        parts = [first_batch] if first_batch is not None else []
        parts += [next_batch() for _ in range(size // data_batch - len(parts))]
        if len(parts) == 1:
            return parts[0]
        return {k: np.concatenate([np.asarray(p[k]) for p in parts]) for k in parts[0]}

    first = next_batch()
    grid_z, grid_c = _grid_latents(G, (grid_cols, grid_rows), _global_labels(first["label"]),
                                   seed)
    render = _grid_renderer(G, grid_z, grid_c, float(log.get("grid_truncation_psi", 1.0)))
    if cur_nimg == 0:
        fakes = render(state.ema_variables)  # on every process: one program over all devices
        if is_chief:
            reals = np.asarray(first["image"])[: grid_cols * grid_rows]
            _save_grid(os.path.join(workdir, "samples", "reals.png"), reals, grid_cols)
            _save_grid(os.path.join(workdir, "samples", "fakes_init.png"), fakes, grid_cols)

    progress = _progress(log.get("progress", True) and is_chief, total_nimg, cur_nimg)
    tick_start_nimg, tick_start = cur_nimg, time.time()
    tick_metrics: list[dict[str, jax.Array]] = []
    record: dict[str, Any] = {}
    pending = first
    try:
        while cur_nimg < total_nimg:
            stage = plan.stage(cur_nimg)
            # Cached per hyperparameters: one compilation per minibatch size (per resolution).
            steps = _train_steps(G, D, plan.hyperparameters(stage), mesh, augment, class_probs)
            state = plan.configure(state, stage)
            batch = sharding.global_batch(minibatch(pending, stage.minibatch), mesh)
            pending = None
            state, metrics = steps.iteration(state, batch, step)
            tick_metrics.append(metrics)
            step += 1
            cur_nimg += stage.minibatch
            progress.update(stage.minibatch)
            done = cur_nimg >= total_nimg
            if not done and cur_nimg < tick_start_nimg + stage.tick_kimg * 1000:
                continue

            # ---- tick: statistics, divergence check, grids, checkpoints, metrics.
            tick += 1
            seconds = time.time() - tick_start
            record = _tick_record(tick, cur_nimg, tick_start_nimg, seconds, tick_metrics, state)
            record.update(plan.record(stage))
            tick_metrics = []
            nonfinite = [k for k, v in record.items() if isinstance(v, float) and not
                         math.isfinite(v)]
            if nonfinite or not _finite(state.g_params) or not _finite(state.d_params):
                raise TrainingDiverged(
                    f"non-finite {', '.join(nonfinite) or 'parameters'} at {cur_nimg / 1e3:.1f} "
                    f"kimg; the last checkpoint in {checkpointer.workdir} is intact")
            kimg = cur_nimg / 1e3
            if tick % log.get("image_every_ticks", 1) == 0 or done:
                grid = render(state.ema_variables)
                if is_chief:
                    image = _save_grid(os.path.join(workdir, "samples", f"fakes{kimg:010.3f}.png"),
                                       grid, grid_cols)
                    writers.image("fakes", image, kimg)

            evaluated = {}
            if log.get("metrics") and (tick % log.get("metrics_every_ticks", 10) == 0 or done):
                try:
                    evaluated = _evaluate(log["metrics"], G, state.ema_variables, config,
                                          workdir, kimg)
                except BaseException:
                    # A failed evaluation never costs the training since the last checkpoint.
                    save(state, step, tick, cur_nimg, None)
                    raise
                record.update(evaluated)
            writers.scalars(record, kimg)
            if tick % log.get("snapshot_every_ticks", 10) == 0 or done or evaluated:
                save(state, step, tick, cur_nimg, evaluated or None)
            if is_chief:
                logging.info("tick %d kimg %.1f %s", tick, kimg, _summary(record))
            tick_start_nimg, tick_start = cur_nimg, time.time()
    finally:
        progress.close()
        writers.close()
        checkpointer.close()
    return record


def _global_labels(local: np.ndarray) -> np.ndarray:
    """The labels of the whole first global batch (each process's slice, in process order):
    the grid's labels are constants of a program every process runs, so they must agree."""
    local = np.asarray(local)
    if jax.process_count() == 1:
        return local
    from jax.experimental import multihost_utils  # noqa: PLC0415
    return np.asarray(multihost_utils.process_allgather(local, tiled=True))


def _higher_is_better(metric: str | None) -> bool:
    if not metric:
        return False
    from flaxgan.metrics import registry as metric_registry  # noqa: PLC0415
    return metric_registry.higher_is_better(metric)


def _progress(enabled: bool, total: int, initial: int):
    from tqdm.auto import tqdm  # noqa: PLC0415
    return tqdm(total=total, initial=initial, unit="img", unit_scale=True, disable=not enabled,
                desc="train")


def _grid_renderer(G, z: np.ndarray, c: np.ndarray, truncation_psi: float):
    """`ema_variables -> uint8 [N, H, W, C]` at fixed latents (const noise)."""
    @xla_cpu.jit
    def render(variables):
        out = G.apply(variables, jnp.asarray(z), jnp.asarray(c), noise_mode="const",
                      truncation_psi=truncation_psi)
        return images.to_uint8(out)
    return lambda variables: np.asarray(render(variables))


def _tick_record(tick: int, cur_nimg: int, start_nimg: int, seconds: float,
                 tick_metrics: list[dict[str, jax.Array]], state) -> dict[str, Any]:
    """Means over the tick of every phase statistic, plus progress and timing."""
    fetched = jax.device_get(tick_metrics)
    keys = sorted({k for m in fetched for k in m})
    record: dict[str, Any] = {"tick": tick, "kimg": cur_nimg / 1e3}
    for key in keys:
        values = [float(m[key]) for m in fetched if key in m]
        record[key] = float(np.mean(values))
    signs = jax.device_get(state.ada_signs)
    nimg = max(cur_nimg - start_nimg, 1)
    record.update({
        "Progress/augment": float(jax.device_get(state.ada_p)),
        "Progress/rt": record.get("Loss/signs/real", float(signs[0] / max(signs[1], 1))),
        "Progress/pl_mean": float(jax.device_get(state.pl_mean)),
        "Timing/sec_per_tick": round(seconds, 3),
        "Timing/sec_per_kimg": round(seconds / nimg * 1e3, 3),
        "Timing/images_per_sec": round(nimg / max(seconds, 1e-9), 2),
    })
    record["Resources/peak_host_rss_mib"] = _peak_host_rss_mib()
    memory = _memory_gib()
    if memory is not None:
        record["Resources/peak_gpu_mem_gb"] = memory
    return record


_TICK_LINE = (("Loss/G/loss", "G_loss"), ("Loss/D/loss", "D_loss"),
              ("Progress/augment", "augment_p"), ("Timing/sec_per_kimg", "sec/kimg"))


def _summary(record: Mapping[str, Any]) -> str:
    """`G_loss=... D_loss=... augment_p=... sec/kimg=...` of a tick's record."""
    return " ".join(f"{name}={record[key]:.4g}" for key, name in _TICK_LINE if key in record)


def snapshot_name(nimg: int) -> str:
    """`network-snapshot-KKKKKK` (official: KKKKKK kimg) at a whole kimg, else
    `network-snapshot-KKKKKK.III` (plus III images): unique per export at fractional-kimg
    ticks, and sorted by name is sorted by images seen."""
    kimg, rest = divmod(int(nimg), 1000)
    return f"network-snapshot-{kimg:06d}" + (f".{rest:03d}" if rest else "")


def snapshot_kimg(path: str | os.PathLike) -> float | None:
    """The kimg a `snapshot_name` folder (any parent path, trailing slash allowed) was written
    at, `network-snapshot-000560.500` -> 560.5; None for any other name."""
    match = re.fullmatch(r"network-snapshot-(\d+)(?:\.(\d+))?",
                         os.path.basename(os.fspath(path).rstrip("/")))
    return int(match[1]) + int(match[2] or 0) / 1000 if match else None


def _export_snapshot(root: str, nimg: int, networks: Mapping[str, tuple[dict, dict]]) -> str:
    """Writes `root/snapshot_name(nimg)`: official-format state dicts (`<key>.npz`) +
    `network.json`, written to a temporary directory and renamed; `sample.load(directory)`
    reads G_ema back, PyTorch users `load_state_dict` the npz files. Returns the directory."""
    name = snapshot_name(nimg)
    directory = os.path.join(root, name)
    tmp = directory + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    for key, (kwargs, variables) in networks.items():
        export.write_network(tmp, key, kwargs, variables)
    if os.path.islink(directory):  # a whole-kimg name that was a link (re-run after a resume)
        os.unlink(directory)
    shutil.rmtree(directory, ignore_errors=True)  # the same images seen, exported again
    os.replace(tmp, directory)
    _link_whole_kimg(root, name)
    return directory


def _link_whole_kimg(root: str, name: str) -> None:
    """Points `network-snapshot-KKKKKK` at the fractional export `name` of that kimg (the name
    scripts and earlier runs used), unless an export at exactly KKKKKK kimg holds the name."""
    whole = name.split(".")[0]
    path = os.path.join(root, whole)
    if whole == name or (os.path.isdir(path) and not os.path.islink(path)):
        return
    tmp = os.path.join(root, f".{whole}.link")  # hidden: no glob of network-snapshot-* sees it
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(name, tmp)  # relative: the workdir can move
    os.replace(tmp, path)


def _drop_records_after(path: str, tick: int) -> None:
    """Rewrites `path` (JSON lines with a `tick`) without the ticks after `tick` and any
    unreadable line: a run killed after logging a tick but before its checkpoint logs it again.
    Atomic (a temporary file renamed), so a kill now loses nothing."""
    if not os.path.exists(path):
        return
    with open(path) as f:
        lines = f.readlines()
    keep = [line if line.endswith("\n") else line + "\n" for line in lines
            if _record_tick(line) is not None and _record_tick(line) <= tick]
    if len(keep) == len(lines):
        return
    with files.atomic_write(path, "w") as f:
        f.writelines(keep)
    logging.info("%s: dropped %d line(s) after tick %d (logged, not checkpointed)", path,
                 len(lines) - len(keep), tick)


def _record_tick(line: str) -> int | None:
    try:
        return int(json.loads(line)["tick"])
    except (ValueError, KeyError, TypeError):
        return None


def _saved_batch_size(meta: Mapping[str, Any]) -> int | None:
    """The batch size a checkpoint was trained with (older checkpoints: from their config)."""
    if "batch_size" in meta:
        return int(meta["batch_size"])
    try:
        return int(json.loads(meta["config"])["train"]["batch_size"])
    except (KeyError, TypeError, ValueError):
        return None


def _resume_batch_size(meta: Mapping[str, Any], data_state: dict[str, Any], batch_size: int,
                       allow: bool, workdir: str) -> dict[str, Any]:
    """Checks a resume keeps the checkpoint's batch size unless `allow`; returns `data_state`
    with the input position rescaled to the new batch when allowed.

    Raises:
      checkpoint.CheckpointError: another batch size without `train.allow_batch_size_change`.
    """
    saved = _saved_batch_size(meta)
    if saved is None or saved == batch_size:
        return data_state
    if not allow:
        raise ckpt.CheckpointError(
            f"{workdir}: the checkpoint was trained with train.batch_size={saved}, the config "
            f"asks for {batch_size}; resume with --config.train.batch_size={saved}, or set "
            f"--config.train.allow_batch_size_change=True to continue with {batch_size}")
    logging.warning("%s: train.batch_size changes from %d (checkpoint) to %d on resume "
                    "(train.allow_batch_size_change)", workdir, saved, batch_size)
    position = (data_state.get("iterator") or {}).get("next_index")
    if not isinstance(position, int):
        return data_state
    # grain counts this process's batches, each the same share of the global batch before and
    # after: keep the images seen, rounding up to whole new batches.
    iterator = {**data_state["iterator"], "next_index": -(-position * saved // batch_size)}
    return {**data_state, "iterator": iterator}


def _import_snapshot(path: str, g_vars, d_vars, partial: bool = False):
    """`(G, D, G_ema)` variables of an official snapshot (the official `--resume`; PyTorch, or
    TensorFlow StyleGAN / StyleGAN2), a flaxgan export folder or a bundled model's name
    (`celeba32`): each must match this run's networks -- or, with `partial`
    (`config.resume_partial`), gives what matches and the rest keeps its fresh initialisation
    (`partial_resume.merge`; one warning line lists it); G_ema falls back to G when the snapshot
    has none, and G to G_ema (bundled models ship G_ema and D only)."""
    from flaxgan import convert
    from flaxgan.convert import tf_snapshot, tf_stylegan1
    path = export.resolve_network(path)
    if os.path.isdir(path):
        present = set(export.networks(path))
        read = lambda key: convert.to_flax(*export.read_network(path, key)[1:])
    elif tf_snapshot.is_tf_snapshot(path):
        records = tf_snapshot.load_tf_snapshot(path)
        present = set(records)

        def read(key: str):  # v1 keeps its TF names; TF StyleGAN2 as legacy.py converts it
            record = records[key]
            if record.family == "stylegan1":
                return tf_stylegan1.to_flax(record.all_variables())
            return convert.to_flax(*tf_snapshot.stylegan2_state_dict(record, source=path))
    else:
        snapshot = convert.load_snapshot(path)
        present = {k for k, v in snapshot.items() if isinstance(v, convert.ModuleRecord)}
        read = lambda key: convert.to_flax(snapshot[key].parameters,  # noqa: E731
                                           snapshot[key].buffers)

    reports = {}

    def imported(key: str, target):
        if key not in present:
            raise convert.SnapshotError(
                f"{os.path.basename(path)}: snapshot has no network {key!r}")
        variables = read(key)
        if partial:
            variables, reports[key] = partial_resume.merge(target, variables)
        else:
            convert.check_against(target, variables, source=path)
        return jax.tree.map(jnp.asarray, variables)

    d = imported("D", d_vars)
    g_key = "G" if "G" in present or "G_ema" not in present else "G_ema"
    g = imported(g_key, g_vars)
    ema = imported("G_ema", g_vars) if "G_ema" in present else g
    if partial:  # G_ema is merged as G is: one report for the generator
        logging.warning("%s", partial_resume.notice({"G": reports[g_key], "D": reports["D"]},
                                                    path))
    return g, d, ema


def _evaluate(metrics, G, ema_variables, config, workdir: str, kimg: float) -> dict[str, float]:
    """Runs the metric hook on G_ema; returns `{metric: value}` (first value of each)."""
    from flaxgan.metrics import evaluation  # imports the metrics only when asked for
    data = _plain(config.data)
    if config.log.get("metrics_split"):  # e.g. held-out images instead of the training split
        data["split"] = config.log.metrics_split
    return evaluation.evaluate(list(metrics), G, ema_variables, data,
                               workdir=workdir, kimg=kimg, seed=int(config.get("seed", 0)),
                               cache_dir=config.log.get("metrics_cache_dir"),
                               weights=_plain(config.log.get("metrics_weights") or {}))

