"""StyleGAN2-ADA objective as pure functions (Karras et al. 2020, sec. 2 and app. B).

Each function takes logits, images or small callables (`D(img) -> logits`,
`synthesis(ws) -> img`) and returns per-sample values, as the official `StyleGAN2Loss` reports
them; a training step takes their mean. Defaults are the official ones.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "generator_loss",
    "discriminator_loss",
    "r1_penalty",
    "path_length_noise",
    "path_length_penalty",
    "mix_styles",
    "lazy_regularization",
    "ema_beta",
    "blur_sigma",
    "blur_images",
]


def generator_loss(fake_logits: jax.Array) -> jax.Array:
    """Non-saturating loss `-log sigmoid(D(G(z)))` = softplus(-logits), per sample."""
    return jax.nn.softplus(-fake_logits)


def discriminator_loss(fake_logits: jax.Array, real_logits: jax.Array) -> jax.Array:
    """Logistic loss `softplus(D(G(z))) + softplus(-D(x))`, per sample."""
    return jax.nn.softplus(fake_logits) + jax.nn.softplus(-real_logits)


def r1_penalty(discriminator: Callable[[jax.Array], jax.Array],
               real_img: jax.Array) -> tuple[jax.Array, jax.Array]:
    """R1 gradient penalty `||∇_x D(x)||²` on reals (Mescheder et al. 2018), per sample.

    Args:
      discriminator: `img [N, H, W, C] -> logits [N, 1]`.
      real_img: `[N, H, W, C]`.

    Returns:
      `(penalty [N], real_logits [N, 1])`; the loss is `penalty * gamma / 2`.
    """
    logits, vjp = jax.vjp(discriminator, real_img)
    (grads,) = vjp(jnp.ones_like(logits))
    return jnp.sum(jnp.square(grads), axis=(1, 2, 3)), logits


def path_length_noise(key: jax.Array, img_shape: tuple[int, ...]) -> jax.Array:
    """`y ~ N(0, I) / sqrt(H W)` for an NHWC image shape."""
    _, h, w, _ = img_shape
    return jax.random.normal(key, img_shape) / np.sqrt(h * w)


def path_length_penalty(
    synthesis: Callable[[jax.Array], jax.Array],
    ws: jax.Array,
    noise: jax.Array,
    pl_mean: jax.Array,
    pl_decay: float = 0.01,
    axis_name: str | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Path-length regularisation (StyleGAN2 paper, eq. 4), per sample.

    `a = ||J_w^T y||` averaged over the ws; the running mean `pl_mean <- lerp(pl_mean, mean(a),
    pl_decay)` is part of the graph, as in the official code.

    Args:
      synthesis: `ws [N, num_ws, w_dim] -> img [N, H, W, C]`.
      ws: `[N, num_ws, w_dim]`.
      noise: `[N, H, W, C]` from `path_length_noise`.
      pl_mean: scalar running mean of the path lengths.
      pl_decay: weight of this batch in the running mean.
      axis_name: inside `shard_map`, the mesh axis over which the batch mean of the lengths is
        taken, so that every device keeps the same `pl_mean`.

    Returns:
      `(penalty [N], new pl_mean)`; the loss is `penalty * pl_weight`.
    """
    projected, vjp = jax.vjp(lambda w: jnp.sum(synthesis(w) * noise), ws)
    (grads,) = vjp(jnp.ones_like(projected))
    lengths = jnp.sqrt(jnp.mean(jnp.sum(jnp.square(grads), axis=2), axis=1))
    batch_mean = jnp.mean(lengths)
    if axis_name is not None:
        batch_mean = jax.lax.pmean(batch_mean, axis_name)
    new_mean = pl_mean + pl_decay * (batch_mean - pl_mean)
    return jnp.square(lengths - new_mean), new_mean


def mix_styles(key: jax.Array, ws: jax.Array, ws_other: jax.Array,
               prob: float = 0.9, num_active: int | jax.Array | None = None) -> jax.Array:
    """Style-mixing regularisation: with probability `prob`, ws from a random layer cutoff
    in [1, num_active) on come from `ws_other` (one cutoff for the whole batch, as the official).

    `num_active` (default `num_ws`) bounds the crossover: StyleGAN v1 draws it among the layers
    in use at the current level of detail (`progressive.active_layers`), so that mixing is not
    diluted by layers that do not reach the image yet.
    """
    num_ws = ws.shape[1]
    high = num_ws if num_active is None else jnp.maximum(num_active, 2)
    k_cut, k_mix = jax.random.split(key)
    cutoff = jax.random.randint(k_cut, (), 1, high)
    cutoff = jnp.where(jax.random.uniform(k_mix) < prob, cutoff, num_ws)
    take_other = jnp.arange(num_ws)[None, :, None] >= cutoff
    return jnp.where(take_other, ws_other, ws)


def lazy_regularization(learning_rate: float, betas: tuple[float, float],
                        interval: int | None) -> tuple[float, tuple[float, float]]:
    """Adam settings for a network regularised every `interval` minibatches (app. B):
    `lr * c` and `beta ** c` with `c = interval / (interval + 1)`."""
    if not interval:
        return learning_rate, betas
    c = interval / (interval + 1)
    return learning_rate * c, (betas[0] ** c, betas[1] ** c)


def ema_beta(batch_size: int, ema_kimg: float = 10.0, ema_rampup: float | None = 0.05,
             cur_nimg: int | jax.Array = 0) -> float | jax.Array:
    """Decay of the generator EMA for one step: half-life of `ema_kimg` thousand images,
    shortened to `cur_nimg * ema_rampup` early in training.

    `cur_nimg` may be a Python number (-> float) or an array traced inside a jitted step
    (-> float32 array), so the training step and its tests use this one formula.
    """
    traced = isinstance(cur_nimg, jax.Array)
    minimum, maximum = (jnp.minimum, jnp.maximum) if traced else (min, max)
    ema_nimg = ema_kimg * 1000.0
    if ema_rampup is not None:
        ema_nimg = minimum(ema_nimg, cur_nimg * ema_rampup)
    return 0.5 ** (batch_size / maximum(ema_nimg, 1e-8))


def blur_sigma(cur_nimg: jax.Array, blur_init_sigma: float, blur_fade_kimg: float) -> jax.Array:
    """StyleGAN3's blur of D inputs early in training: sigma fades linearly from
    `blur_init_sigma` to 0 over `blur_fade_kimg` thousand images (0 when fading is off)."""
    if blur_fade_kimg <= 0 or blur_init_sigma <= 0:
        return jnp.zeros((), jnp.float32)
    progress = jnp.asarray(cur_nimg, jnp.float32) / (blur_fade_kimg * 1e3)
    return jnp.maximum(1.0 - progress, 0.0) * blur_init_sigma


def blur_images(images: jax.Array, sigma: jax.Array, max_sigma: float) -> jax.Array:
    """Separable blur `[N, H, W, C]` with taps `2^-(t / sigma)^2`, |t| <= floor(3 sigma), as the
    official StyleGAN3 loss; `sigma` may be traced (taps beyond its radius are zero, so the
    kernel size is fixed by `max_sigma` and a fading sigma never recompiles). Zero padding,
    same output size; sigma < 1/3 leaves the images unchanged."""
    radius = int(np.floor(max_sigma * 3))
    if radius == 0:
        return images
    t = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
    safe_sigma = jnp.maximum(sigma, 1e-8)
    taps = jnp.where(jnp.abs(t) <= jnp.floor(sigma * 3), jnp.exp2(-jnp.square(t / safe_sigma)), 0.0)
    taps = taps / jnp.sum(taps)
    channels = images.shape[-1]
    dtype = images.dtype
    for kernel_shape in ((2 * radius + 1, 1), (1, 2 * radius + 1)):
        kernel = jnp.tile(taps.reshape(kernel_shape + (1, 1)), (1, 1, 1, channels)).astype(dtype)
        images = jax.lax.conv_general_dilated(
            images, kernel, window_strides=(1, 1), padding="SAME",
            dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=channels)
    return images
