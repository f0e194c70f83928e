"""Progressive growing as StyleGAN (v1) trains: the official schedule and the state it drives.

The official `training_loop.training_schedule(cur_nimg)` (NVlabs/stylegan) derives everything
that changes during training from the real images shown so far: the level of detail `lod`
(0 = full resolution, each unit halves it; fractional while new layers fade in), the current
resolution, the global minibatch, the learning rates and the tick length. `training_stage` is
that function, so a resumed run recovers its progressive position from `state.nimg` alone.

How the loop uses it (`flaxgan.train.loop`, through a `Plan`):
  * `lod` enters the networks as their `lod` buffers (the official `tf.assign` of `lod_in` to G's
    and D's `lod` variables); buffers are traced, so a changing `lod` never recompiles. The
    reals are faded to the same `lod` in the D step (`fade_reals`, the official
    `process_reals`).
  * Learning rates are traced too (`optax.inject_hyperparams`); Adam's moments are reset when
    `floor(lod)` or `ceil(lod)` changes (the official `reset_opt_for_new_lod`), i.e. when a
    fade-in starts and when it ends. The lod of the last step is the `lod` buffer, so a resumed
    run makes the same reset decisions as an uninterrupted one.
  * The minibatch changes with the resolution; each minibatch is a new set of compiled steps
    (one compilation per resolution, at the start of its fade-in). Batches are assembled from a
    data iterator of `data_batch_size` images (the gcd of every minibatch), so the data position
    is the same unit whatever the stage.

Deviations from the official loop, all small: it evaluates the schedule every
`minibatch_repeats = 4` minibatches, here every minibatch (the same schedule, sampled 4x finer),
which keeps the stage a function of `nimg` only, whatever iteration a checkpoint falls on; its
`Gs` update runs with the D step (before that iteration's G step), here after both steps (as
StyleGAN2-ADA); its lower-resolution reals are rounded to uint8 per level (here averaged in
float).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from flaxgan import xla_cpu
from flaxgan.train.state import GanState

if TYPE_CHECKING:  # step.py imports this module (fade_reals, active_layers)
    from flaxgan.train.step import Hyperparameters

__all__ = ["Schedule", "Stage", "training_stage", "data_batch_size", "needs_optimizer_reset",
           "fade_reals", "active_layers", "set_lod", "Plan", "FixedPlan", "ProgressivePlan",
           "make_plan", "OFFICIAL_TICK_KIMG", "MAX_RESOLUTION"]

# The official default `tick_kimg_dict` (kimg per tick at each resolution).
OFFICIAL_TICK_KIMG = {4: 160, 8: 140, 16: 120, 32: 100, 64: 80, 128: 60, 256: 40, 512: 30,
                      1024: 20}
MAX_RESOLUTION = 8192


def _int_keys(d: Mapping[Any, Any] | None) -> dict[int, Any]:
    """Resolution-keyed dicts; configs store the keys as strings (ConfigDict needs str keys)."""
    return {int(k): v for k, v in (d or {}).items()}


@dataclasses.dataclass(frozen=True)
class Schedule:
    """The official `training_schedule` keyword arguments (their defaults); dicts map a
    resolution to its override."""

    lod_initial_resolution: int = 4
    lod_training_kimg: float = 600.0
    lod_transition_kimg: float = 600.0
    minibatch_base: int = 16
    minibatch_dict: Mapping[int, int] = dataclasses.field(default_factory=dict)
    max_minibatch_per_gpu: Mapping[int, int] = dataclasses.field(default_factory=dict)
    G_lrate_base: float = 0.001  # noqa: N815 (official name)
    G_lrate_dict: Mapping[int, float] = dataclasses.field(default_factory=dict)  # noqa: N815
    D_lrate_base: float = 0.001  # noqa: N815
    D_lrate_dict: Mapping[int, float] = dataclasses.field(default_factory=dict)  # noqa: N815
    lrate_rampup_kimg: float = 0.0
    tick_kimg_base: float = 160.0
    tick_kimg_dict: Mapping[int, float] = dataclasses.field(
        default_factory=lambda: dict(OFFICIAL_TICK_KIMG))

    @classmethod
    def from_config(cls, values: Mapping[str, Any]) -> Schedule:
        """From a config section (string resolution keys); unknown keys raise ValueError."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"config.schedule has unknown keys {unknown}")
        return cls(**{k: _int_keys(v) if k.endswith(("_dict", "_per_gpu")) else v
                      for k, v in values.items()})


class Stage(NamedTuple):
    """The training parameters at one point of the schedule (official `training_schedule`)."""

    kimg: float
    lod: float  # level of detail: 0 = full resolution; fractional during a fade-in
    resolution: int  # resolution of the highest layers in use (2**(log2 - floor(lod)))
    minibatch: int  # global minibatch
    g_lrate: float
    d_lrate: float
    tick_kimg: float


def training_stage(cur_nimg: int, resolution: int, num_gpus: int, schedule: Schedule) -> Stage:
    """The official `training_schedule`: the stage after `cur_nimg` real images.

    Phases of `lod_training_kimg` (stable) + `lod_transition_kimg` (fade-in) each halve `lod`
    from `log2(resolution / lod_initial_resolution)` to 0; the minibatch, learning rates and
    tick length are looked up by the resulting resolution. Pure numpy, as the official.

    Args:
      cur_nimg: real images shown so far.
      resolution: the dataset (final) resolution, a power of two.
      num_gpus: devices the minibatch is divided among (it is rounded down to a multiple).
      schedule: the official schedule arguments.
    """
    s = schedule
    kimg = cur_nimg / 1000.0
    resolution_log2 = int(np.log2(resolution))
    phase_dur = s.lod_training_kimg + s.lod_transition_kimg
    phase_idx = int(np.floor(kimg / phase_dur)) if phase_dur > 0 else 0
    phase_kimg = kimg - phase_idx * phase_dur
    lod = resolution_log2 - np.floor(np.log2(s.lod_initial_resolution)) - phase_idx
    if s.lod_transition_kimg > 0:
        lod -= max(phase_kimg - s.lod_training_kimg, 0.0) / s.lod_transition_kimg
    lod = max(float(lod), 0.0)
    res = 2 ** (resolution_log2 - int(np.floor(lod)))
    return Stage(kimg=kimg, lod=lod, resolution=res,
                 minibatch=_minibatch(res, num_gpus, s),
                 g_lrate=_lrate(s.G_lrate_dict, s.G_lrate_base, res, kimg, s),
                 d_lrate=_lrate(s.D_lrate_dict, s.D_lrate_base, res, kimg, s),
                 tick_kimg=float(_int_keys(s.tick_kimg_dict).get(res, s.tick_kimg_base)))


def _minibatch(res: int, num_gpus: int, s: Schedule) -> int:
    minibatch = _int_keys(s.minibatch_dict).get(res, s.minibatch_base)
    minibatch -= minibatch % num_gpus
    per_gpu = _int_keys(s.max_minibatch_per_gpu)
    if res in per_gpu:
        minibatch = min(minibatch, per_gpu[res] * num_gpus)
    if minibatch <= 0:
        raise ValueError(f"schedule: minibatch at {res}x{res} is 0 on {num_gpus} devices")
    return int(minibatch)


def _lrate(table: Mapping[Any, float], base: float, res: int, kimg: float,
           s: Schedule) -> float:
    lrate = float(_int_keys(table).get(res, base))
    if s.lrate_rampup_kimg > 0:
        lrate *= min(kimg / s.lrate_rampup_kimg, 1.0)
    return lrate


def data_batch_size(schedule: Schedule, num_gpus: int) -> int:
    """The gcd of the minibatches of every resolution (4 .. `MAX_RESOLUTION`): the batch of
    the data iterator, whose batches make up every stage's minibatch."""
    sizes = [_minibatch(2**k, num_gpus, schedule)
             for k in range(2, int(np.log2(MAX_RESOLUTION)) + 1)]
    return functools.reduce(math.gcd, sizes)


def needs_optimizer_reset(prev_lod: float, lod: float) -> bool:
    """The official `reset_opt_for_new_lod` test: new layers appear (`ceil` changes) or the
    fade-in ends (`floor` changes)."""
    return bool(np.floor(lod) != np.floor(prev_lod) or np.ceil(lod) != np.ceil(prev_lod))


# ------------------------------------------------------------------------------- traced parts


def _box_down(x: jax.Array, factor: int) -> jax.Array:
    n, h, w, c = x.shape
    return jnp.mean(x.reshape(n, h // factor, factor, w // factor, factor, c), axis=(2, 4))


def _nearest_up(x: jax.Array, factor: int) -> jax.Array:
    return jnp.repeat(jnp.repeat(x, factor, axis=1), factor, axis=2)


def fade_reals(images: jax.Array, lod: jax.Array | float) -> jax.Array:
    """Reals as the networks see them at level of detail `lod` (official `process_reals`).

    The official reads the dataset at resolution `R / 2**floor(lod)` (the full images averaged
    over `2**floor(lod)` blocks), cross-fades it with its own 2x2 average by `lod - floor(lod)`
    and upscales it (nearest) back to `R`. Here the level is made by the same box average of
    the full images (in float; the official dataset rounds each level to uint8).

    Args:
      images: `[N, R, R, C]` float.
      lod: scalar, may be traced (`lax.switch` over the integer levels: no recompilation).

    Returns:
      `[N, R, R, C]`.
    """
    levels = int(np.log2(images.shape[1])) - 1  # lod 0 .. log2(R) - 2 (4x4)
    lod = jnp.clip(jnp.asarray(lod, jnp.float32), 0, levels - 1)  # 4x4 is the coarsest
    level = jnp.floor(lod)
    alpha = lod - level

    def at_level(k: int) -> Callable[[jax.Array], jax.Array]:
        def branch(x):
            x = _box_down(x, 2**k)
            x = x + (_nearest_up(_box_down(x, 2), 2) - x) * alpha.astype(x.dtype)
            return _nearest_up(x, 2**k)
        return branch

    return jax.lax.switch(level.astype(jnp.int32), [at_level(k) for k in range(levels)], images)


def active_layers(num_layers: int, lod: jax.Array) -> jax.Array:
    """Synthesis layers in use at `lod` (two per resolution; the official `cur_layers` of
    style mixing): `num_layers - 2 floor(lod)`, int32."""
    return num_layers - 2 * jnp.floor(jnp.asarray(lod, jnp.float32)).astype(jnp.int32)


def set_lod(buffers: Any, lod: jax.Array) -> Any:
    """`buffers` with every `lod` leaf (G's, G_synthesis's, D's) set to `lod`."""
    def put(path, leaf):
        key = getattr(path[-1], "key", None) if path else None
        return jnp.asarray(lod, leaf.dtype) if key == "lod" else leaf
    return jax.tree_util.tree_map_with_path(put, buffers)


def _set_lrate(opt_state: Any, lrate: jax.Array) -> Any:
    """An `optax.inject_hyperparams` state with its learning rate replaced."""
    hyper = dict(opt_state.hyperparams)
    hyper["learning_rate"] = jnp.asarray(lrate, hyper["learning_rate"].dtype)
    return opt_state._replace(hyperparams=hyper)


def _reset_where(reset: jax.Array, fresh: Any, current: Any) -> Any:
    return jax.tree.map(lambda f, c: jnp.where(reset, f, c), fresh, current)


def _configure(g_opt: optax.GradientTransformation, d_opt: optax.GradientTransformation,
               state: GanState, lod: jax.Array, g_lrate: jax.Array, d_lrate: jax.Array,
               reset: jax.Array) -> GanState:
    """Sets `lod` in G's and D's buffers and the stage's learning rates; resets Adam when
    `reset` (the moments and step count, as the official re-initialises its optimizer)."""
    g_state = _reset_where(reset, g_opt.init(state.g_params), state.g_opt_state)
    d_state = _reset_where(reset, d_opt.init(state.d_params), state.d_opt_state)
    return state.replace(g_buffers=set_lod(state.g_buffers, lod),
                         d_buffers=set_lod(state.d_buffers, lod),
                         g_opt_state=_set_lrate(g_state, g_lrate),
                         d_opt_state=_set_lrate(d_state, d_lrate))


@functools.cache
def _configure_fn(hp: Hyperparameters) -> Callable[..., GanState]:
    """`_configure` jitted for the optimizers of `hp` (one compilation per process)."""
    from flaxgan.train.step import make_optimizers  # noqa: PLC0415 (step imports this module)
    g_opt, d_opt = make_optimizers(hp)
    return xla_cpu.jit(functools.partial(_configure, g_opt, d_opt), donate_argnums=0)


# ------------------------------------------------------------------------------------ plans


class Plan:
    """What the loop asks of a schedule: the stage at `nimg`, its hyperparameters, the state
    it needs, the data batch and the tick record's fields."""

    data_batch_size: int

    def stage(self, cur_nimg: int) -> Stage:
        raise NotImplementedError

    def hyperparameters(self, stage: Stage) -> Hyperparameters:
        raise NotImplementedError

    def start(self, state: GanState, resumed: bool) -> None:
        """Called once before the first step (after a restore when `resumed`)."""

    def configure(self, state: GanState, stage: Stage) -> GanState:
        return state

    def record(self, stage: Stage) -> dict[str, Any]:
        return {}


@dataclasses.dataclass
class FixedPlan(Plan):
    """StyleGAN2-ADA / StyleGAN3: one stage for the whole run."""

    hp: Hyperparameters
    kimg_per_tick: float

    @property
    def data_batch_size(self) -> int:
        return self.hp.batch_size

    def stage(self, cur_nimg: int) -> Stage:
        return Stage(cur_nimg / 1000.0, 0.0, 0, self.hp.batch_size, self.hp.g_lr, self.hp.d_lr,
                     self.kimg_per_tick)

    def hyperparameters(self, stage: Stage) -> Hyperparameters:
        return self.hp


@dataclasses.dataclass
class ProgressivePlan(Plan):
    """StyleGAN (v1): the official progressive schedule (module doc).

    Attributes:
      schedule: the official schedule arguments.
      hp: hyperparameters (`batch_size` is replaced by each stage's minibatch).
      resolution: dataset resolution.
      num_devices: devices of the mesh (the official `num_gpus`).
      kimg_per_tick: when set, overrides the schedule's tick lengths.
    """

    schedule: Schedule
    hp: Hyperparameters
    resolution: int
    num_devices: int
    kimg_per_tick: float | None = None
    prev_lod: float = -1.0


    @property
    def data_batch_size(self) -> int:
        return data_batch_size(self.schedule, self.num_devices)

    def stage(self, cur_nimg: int) -> Stage:
        stage = training_stage(cur_nimg, self.resolution, self.num_devices, self.schedule)
        if self.kimg_per_tick is not None:
            stage = stage._replace(tick_kimg=float(self.kimg_per_tick))
        return stage

    def hyperparameters(self, stage: Stage) -> Hyperparameters:
        return dataclasses.replace(self.hp, batch_size=stage.minibatch)

    def start(self, state: GanState, resumed: bool) -> None:
        # The lod of the last step taken is in the buffers; a fresh run resets at once (a
        # no-op on fresh moments), as the official `prev_lod = -1`.
        self.prev_lod = float(jax.device_get(state.d_buffers["lod"])) if resumed else -1.0

    def configure(self, state: GanState, stage: Stage) -> GanState:
        reset = needs_optimizer_reset(self.prev_lod, stage.lod)
        self.prev_lod = stage.lod
        return _configure_fn(self.hp)(state, np.float32(stage.lod), np.float32(stage.g_lrate),
                                      np.float32(stage.d_lrate), np.bool_(reset))

    def record(self, stage: Stage) -> dict[str, Any]:
        return {"Progress/lod": stage.lod, "Progress/minibatch": stage.minibatch,
                "Progress/resolution": stage.resolution, "Progress/g_lrate": stage.g_lrate,
                "Progress/d_lrate": stage.d_lrate}


def make_plan(schedule: Mapping[str, Any] | None, hp: Hyperparameters, resolution: int,
              num_devices: int, kimg_per_tick: float | None) -> Plan:
    """`ProgressivePlan` when the config has a `schedule` section, else `FixedPlan`."""
    if not schedule:
        return FixedPlan(hp, float(kimg_per_tick if kimg_per_tick is not None else 4.0))
    if not hp.progressive:
        raise ValueError("config.schedule (progressive growing) needs train.progressive=True")
    return ProgressivePlan(Schedule.from_config(schedule), hp, resolution, num_devices,
                           kimg_per_tick)
