"""StyleGAN3 generator, configs T and R (Karras et al. 2021, "Alias-Free GANs"), Flax, NHWC.

The layer schedule (cutoffs, stopbands, sampling rates, sizes, channels), the Kaiser / jinc
filter design and the padding are computed in NumPy exactly as the official
`training/networks_stylegan3.py`, so module names (`L3_52_64`) and buffers match official
snapshots. The discriminator is StyleGAN2's (`flaxgan.models.stylegan2.Discriminator`).

Variables: 'params' and 'buffers' (`mapping.w_avg`, `synthesis.input.{transform,freqs,phases}`,
`synthesis.<layer>.magnitude_ema`). The FIR filters are compile-time constants derived from the
constructor arguments (official snapshots also store them as `up_filter` / `down_filter`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import scipy.special

from flaxgan.models.stylegan2 import GeneratorBase, MappingNetwork, default_reduced_dtype
from flaxgan.nn.conv import conv2d
from flaxgan.nn.filtered_lrelu import filtered_lrelu
from flaxgan.nn.layers import FullyConnectedLayer

__all__ = [
    "LayerSpec",
    "layer_schedule",
    "design_lowpass_filter",
    "modulated_conv2d",
    "SynthesisInput",
    "SynthesisLayer",
    "SynthesisNetwork",
    "Generator",
    "make_transform",
]


# ----------------------------------------------------------------------------- schedule


def design_lowpass_filter(numtaps: int, cutoff: float, width: float, fs: float,
                          radial: bool = False) -> np.ndarray | None:
    """Kaiser-windowed low-pass filter (sec. 3.2 and appendix C.1).

    Returns None for 1 tap (identity), separable taps `[numtaps]` (windowed sinc via
    `scipy.signal.firwin`), or a radially symmetric 2-D jinc filter `[numtaps, numtaps]`.
    """
    if numtaps < 1:
        raise ValueError(f"numtaps must be >= 1, got {numtaps}")
    if numtaps == 1:
        return None
    # Imported here: scipy.signal takes ~2 s to import, and every entry point imports this module.
    from scipy import signal  # noqa: PLC0415
    if not radial:
        return signal.firwin(numtaps=numtaps, cutoff=cutoff, width=width,
                             fs=fs).astype(np.float32)
    x = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    r = np.hypot(*np.meshgrid(x, x))
    f = scipy.special.j1(2 * cutoff * (np.pi * r)) / (np.pi * r)
    beta = signal.kaiser_beta(signal.kaiser_atten(numtaps, width / (fs / 2)))
    window = np.kaiser(numtaps, beta)
    f = f * np.outer(window, window)
    return (f / np.sum(f)).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class LayerSpec:
    """Static description of one synthesis layer (everything derived from the schedule)."""

    name: str
    is_torgb: bool
    is_critically_sampled: bool
    use_fp16: bool
    in_channels: int
    out_channels: int
    in_size: int
    out_size: int
    in_sampling_rate: int
    out_sampling_rate: int
    in_cutoff: float
    out_cutoff: float
    in_half_width: float
    out_half_width: float
    conv_kernel: int
    up_factor: int
    down_factor: int
    up_taps: int
    down_taps: int
    down_radial: bool
    padding: tuple[int, int, int, int]

    @property
    def up_filter(self) -> np.ndarray | None:
        return design_lowpass_filter(self.up_taps, self.in_cutoff, self.in_half_width * 2,
                                     self.in_sampling_rate * self.up_factor)

    @property
    def down_filter(self) -> np.ndarray | None:
        return design_lowpass_filter(self.down_taps, self.out_cutoff, self.out_half_width * 2,
                                     self.out_sampling_rate * self.down_factor,
                                     radial=self.down_radial)


@dataclasses.dataclass(frozen=True)
class InputSpec:
    channels: int
    size: int
    sampling_rate: float
    bandwidth: float


def layer_schedule(
    img_resolution: int,
    img_channels: int,
    channel_base: int = 32768,
    channel_max: int = 512,
    num_layers: int = 14,
    num_critical: int = 2,
    first_cutoff: float = 2,
    first_stopband: float = 2**2.1,
    last_stopband_rel: float = 2**0.3,
    margin_size: int = 10,
    num_fp16_res: int = 4,
    conv_kernel: int = 3,
    filter_size: int = 6,
    lrelu_upsampling: int = 2,
    use_radial_filters: bool = False,
) -> tuple[InputSpec, list[LayerSpec]]:
    """The input and per-layer specification of the synthesis network (sec. 3 and app. C).

    Cutoffs f_c and minimum stopbands f_t follow geometric progressions from the first layer to
    the last `num_critical` (critically sampled) layers; sampling rates are the smallest powers
    of two >= 2 f_t (capped at the resolution); channels are inversely proportional to f_c.
    """
    last_cutoff = img_resolution / 2
    last_stopband = last_cutoff * last_stopband_rel
    exponents = np.minimum(np.arange(num_layers + 1) / (num_layers - num_critical), 1)
    cutoffs = first_cutoff * (last_cutoff / first_cutoff) ** exponents
    stopbands = first_stopband * (last_stopband / first_stopband) ** exponents
    sampling_rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, img_resolution))))
    half_widths = np.maximum(stopbands, sampling_rates / 2) - cutoffs
    sizes = sampling_rates + margin_size * 2
    sizes[-2:] = img_resolution
    channels = np.rint(np.minimum((channel_base / 2) / cutoffs, channel_max))
    channels[-1] = img_channels

    input_spec = InputSpec(int(channels[0]), int(sizes[0]), float(sampling_rates[0]),
                           float(cutoffs[0]))
    layers = []
    for idx in range(num_layers + 1):
        prev = max(idx - 1, 0)
        is_torgb = idx == num_layers
        critical = idx >= num_layers - num_critical
        in_rate, out_rate = int(sampling_rates[prev]), int(sampling_rates[idx])
        tmp_rate = max(in_rate, out_rate) * (1 if is_torgb else lrelu_upsampling)
        up_factor = int(np.rint(tmp_rate / in_rate))
        down_factor = int(np.rint(tmp_rate / out_rate))
        up_taps = filter_size * up_factor if up_factor > 1 and not is_torgb else 1
        down_taps = filter_size * down_factor if down_factor > 1 and not is_torgb else 1
        kernel = 1 if is_torgb else conv_kernel
        in_size, out_size = int(sizes[prev]), int(sizes[idx])
        # Output size before downsampling, minus the upsampled input, plus the filters' loss;
        # the low side gets the extra half so samples sit symmetrically (app. C.3).
        pad_total = (out_size - 1) * down_factor + 1
        pad_total -= (in_size + kernel - 1) * up_factor
        pad_total += up_taps + down_taps - 2
        pad_lo = (pad_total + up_factor) // 2
        pad_hi = pad_total - pad_lo
        out_channels = int(channels[idx])
        layers.append(LayerSpec(
            name=f"L{idx}_{out_size}_{out_channels}", is_torgb=is_torgb,
            is_critically_sampled=critical,
            use_fp16=bool(sampling_rates[idx] * (2**num_fp16_res) > img_resolution),
            in_channels=int(channels[prev]), out_channels=out_channels, in_size=in_size,
            out_size=out_size, in_sampling_rate=in_rate, out_sampling_rate=out_rate,
            in_cutoff=float(cutoffs[prev]), out_cutoff=float(cutoffs[idx]),
            in_half_width=float(half_widths[prev]), out_half_width=float(half_widths[idx]),
            conv_kernel=kernel, up_factor=up_factor, down_factor=down_factor, up_taps=up_taps,
            down_taps=down_taps, down_radial=use_radial_filters and not critical,
            padding=(int(pad_lo), int(pad_hi), int(pad_lo), int(pad_hi)),
        ))
    return input_spec, layers


# ----------------------------------------------------------------------------- layers


def modulated_conv2d(x: jax.Array, weight: jax.Array, styles: jax.Array, demodulate: bool = True,
                     padding: int = 0, input_gain: jax.Array | None = None,
                     fused: bool | None = None) -> jax.Array:
    """StyleGAN3's modulated convolution, NHWC / HWIO.

    Differs from StyleGAN2's by pre-normalising weight (per output channel, RMS) and styles
    (RMS over the whole `[N, I]` array) before demodulation, and by an optional input gain.

    Args:
      x: `[N, H, W, I]`; weight: `[K, K, I, O]`; styles: `[N, I]`.
      padding: zero padding on every side (the official layers use K - 1).
      input_gain: scalar or `[I]` / `[N, I]` scale of the input channels.
      fused: one grouped convolution with per-sample weights (the official form), or scale
        the activations around one shared convolution (faster under XLA, and partitions over
        a sharded batch); equal results. None = fused for batch 1 only.

    Returns:
      `[N, H + 2 padding - K + 1, ..., O]`.
    """
    batch = x.shape[0]
    kh, kw, in_channels, out_channels = weight.shape
    if demodulate:
        weight = weight * jax.lax.rsqrt(jnp.mean(jnp.square(weight), axis=(0, 1, 2),
                                                 keepdims=True))
        styles = styles * jax.lax.rsqrt(jnp.mean(jnp.square(styles)))
    w = weight[None] * styles[:, None, None, :, None]  # [N, K, K, I, O]
    dcoefs = (jax.lax.rsqrt(jnp.sum(jnp.square(w), axis=(1, 2, 3)) + 1e-8) if demodulate
              else jnp.ones((batch, out_channels)))  # [N, O]
    gain = jnp.ones((batch, in_channels)) if input_gain is None else jnp.broadcast_to(
        input_gain, (batch, in_channels))
    conv = lambda lhs, rhs, groups: conv2d(lhs, rhs, 1, (padding, padding), groups)

    if not (batch == 1 if fused is None else fused):
        x = x * (styles * gain).astype(x.dtype)[:, None, None, :]
        return conv(x, weight, 1) * dcoefs.astype(x.dtype)[:, None, None, :]

    w = w * dcoefs[:, None, None, None, :] * gain[:, None, None, :, None]
    _, h, wd, _ = x.shape
    x = jnp.transpose(x, (1, 2, 0, 3)).reshape(1, h, wd, batch * in_channels)
    w = jnp.transpose(w, (1, 2, 3, 0, 4)).reshape(kh, kw, in_channels, batch * out_channels)
    x = conv(x, w, batch)
    _, h, wd, _ = x.shape
    return jnp.transpose(x.reshape(h, wd, batch, out_channels), (2, 0, 1, 3))


def make_transform(translate: tuple[float, float] = (0.0, 0.0), angle: float = 0.0) -> np.ndarray:
    """The official `make_transform`: rotation by `angle` degrees and translation, `[3, 3]`.

    StyleGAN3's input stores the *inverse* of the wanted image transform: pass
    `np.linalg.inv(make_transform(...))` as `transform` to move the image by `translate` and
    rotate it by `angle`, as the official `gen_images.py` does.
    """
    s, c = np.sin(angle / 360.0 * np.pi * 2), np.cos(angle / 360.0 * np.pi * 2)
    return np.array([[c, s, translate[0]], [-s, c, translate[1]], [0, 0, 1]], np.float64)


class SynthesisInput(nn.Module):
    """Fourier features on a grid, rotated/translated per sample by an affine of w."""

    w_dim: int
    channels: int
    size: int
    sampling_rate: float
    bandwidth: float

    @nn.compact
    def __call__(self, w: jax.Array, transform: jax.Array | None = None) -> jax.Array:
        """`w [N, w_dim]` -> features `[N, size, size, channels]`.

        Args:
          transform: `[3, 3]` inverse image transform overriding the `transform` buffer.
        """
        def init_freqs():
            key = self.make_rng("params")
            freqs = jax.random.normal(key, (self.channels, 2))
            radii = jnp.sqrt(jnp.sum(jnp.square(freqs), axis=1, keepdims=True))
            return freqs / (radii * jnp.exp(jnp.square(radii)) ** 0.25) * self.bandwidth

        freqs = self.variable("buffers", "freqs", init_freqs).value
        phases = self.variable("buffers", "phases", lambda: jax.random.uniform(
            self.make_rng("params"), (self.channels,)) - 0.5).value
        stored = self.variable("buffers", "transform", lambda: jnp.eye(3)).value
        transform = stored if transform is None else jnp.asarray(transform, jnp.float32)
        weight = self.param("weight", jax.random.normal, (self.channels, self.channels))

        # t = (r_c, r_s, t_x, t_y), rotation normalised to unit length.
        t = FullyConnectedLayer(4, weight_init=0.0, bias_init=(1.0, 0.0, 0.0, 0.0),
                                name="affine")(w)
        t = t / jnp.linalg.norm(t[:, :2], axis=1, keepdims=True)
        n = w.shape[0]
        zeros, ones = jnp.zeros(n), jnp.ones(n)
        m_r = jnp.stack([jnp.stack([t[:, 0], -t[:, 1], zeros], -1),
                         jnp.stack([t[:, 1], t[:, 0], zeros], -1),
                         jnp.stack([zeros, zeros, ones], -1)], 1)  # inverse rotation
        m_t = jnp.stack([jnp.stack([ones, zeros, -t[:, 2]], -1),
                         jnp.stack([zeros, ones, -t[:, 3]], -1),
                         jnp.stack([zeros, zeros, ones], -1)], 1)  # inverse translation
        transforms = m_r @ m_t @ transform[None]  # [N, 3, 3]

        phases = phases[None] + (freqs[None] @ transforms[:, :2, 2:])[..., 0]  # [N, C]
        freqs = freqs[None] @ transforms[:, :2, :2]  # [N, C, 2]
        # Dampen frequencies pushed above the band by the user transform.
        amplitudes = jnp.clip(1 - (jnp.linalg.norm(freqs, axis=2) - self.bandwidth)
                              / (self.sampling_rate / 2 - self.bandwidth), 0, 1)

        # Pixel centres of an align_corners=False grid spanning [-s/2, s/2] / sampling rate.
        extent = 0.5 * self.size / self.sampling_rate
        coords = ((2 * jnp.arange(self.size) + 1) / self.size - 1) * extent
        gy, gx = jnp.meshgrid(coords, coords, indexing="ij")
        grid = jnp.stack([gx, gy], -1)  # [H, W, 2] as (x, y)
        x = jnp.einsum("hwk,nck->nhwc", grid, freqs) + phases[:, None, None, :]
        x = jnp.sin(x * (2 * np.pi)) * amplitudes[:, None, None, :]
        return x @ (weight / np.sqrt(self.channels))  # weight is [in, out]


class SynthesisLayer(nn.Module):
    """Modulated conv + filtered leaky ReLU with the magnitude-EMA input gain."""

    spec: LayerSpec
    w_dim: int
    conv_clamp: float | None = 256
    magnitude_ema_beta: float = 0.999
    reduced_dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, w: jax.Array, update_emas: bool = False,
                 force_fp32: bool = False, fused_modconv: bool | None = None) -> jax.Array:
        """`x [N, in_size, in_size, in_channels]` -> `[N, out_size, out_size, out_channels]`."""
        s = self.spec
        magnitude_ema = self.variable("buffers", "magnitude_ema", lambda: jnp.ones(()))
        if update_emas and not self.is_initializing():
            current = jnp.mean(jnp.square(jax.lax.stop_gradient(x).astype(jnp.float32)))
            magnitude_ema.value = current + self.magnitude_ema_beta * (
                magnitude_ema.value - current)
        input_gain = jax.lax.rsqrt(magnitude_ema.value)

        styles = FullyConnectedLayer(s.in_channels, bias_init=1.0, name="affine")(w)
        if s.is_torgb:
            styles = styles * (1 / np.sqrt(s.in_channels * s.conv_kernel**2))
        weight = self.param("weight", jax.random.normal,
                            (s.conv_kernel, s.conv_kernel, s.in_channels, s.out_channels))
        bias = self.param("bias", nn.initializers.zeros, (s.out_channels,))

        dtype = (self.reduced_dtype or default_reduced_dtype()) if (
            s.use_fp16 and not force_fp32) else jnp.float32
        x = modulated_conv2d(x.astype(dtype), weight, styles, demodulate=not s.is_torgb,
                             padding=s.conv_kernel - 1, input_gain=input_gain,
                             fused=fused_modconv)
        return filtered_lrelu(
            x, s.up_filter, s.down_filter, bias.astype(dtype), up=s.up_factor,
            down=s.down_factor, padding=s.padding, gain=1.0 if s.is_torgb else float(np.sqrt(2)),
            slope=1.0 if s.is_torgb else 0.2, clamp=self.conv_clamp)


class SynthesisNetwork(nn.Module):
    """ws `[N, num_layers + 2, w_dim]` -> images `[N, R, R, C]` (raw, scaled by output_scale)."""

    w_dim: int
    img_resolution: int
    img_channels: int
    channel_base: int = 32768
    channel_max: int = 512
    num_layers: int = 14
    num_critical: int = 2
    first_cutoff: float = 2
    first_stopband: float = 2**2.1
    last_stopband_rel: float = 2**0.3
    margin_size: int = 10
    output_scale: float = 0.25
    num_fp16_res: int = 4
    conv_kernel: int = 3
    filter_size: int = 6
    lrelu_upsampling: int = 2
    use_radial_filters: bool = False
    conv_clamp: float | None = 256
    magnitude_ema_beta: float = 0.999
    reduced_dtype: Any = None

    @property
    def num_ws(self) -> int:
        return self.num_layers + 2

    def schedule(self) -> tuple[InputSpec, list[LayerSpec]]:
        return layer_schedule(
            self.img_resolution, self.img_channels, self.channel_base, self.channel_max,
            self.num_layers, self.num_critical, self.first_cutoff, self.first_stopband,
            self.last_stopband_rel, self.margin_size, self.num_fp16_res, self.conv_kernel,
            self.filter_size, self.lrelu_upsampling, self.use_radial_filters)

    @nn.compact
    def __call__(self, ws: jax.Array, update_emas: bool = False, force_fp32: bool = False,
                 transform: jax.Array | None = None, noise_mode: str = "const",
                 fused_modconv: bool | None = None, noise_layers=None) -> jax.Array:
        """Synthesizes images; layer outputs via `apply(..., capture_intermediates=True)`.

        `noise_mode` and `noise_layers` exist for API compatibility with StyleGAN2: StyleGAN3
        has no noise inputs. `fused_modconv`: see `modulated_conv2d` (equal results).
        """
        del noise_mode
        if noise_layers:
            raise ValueError("StyleGAN3 has no noise inputs; noise_layers does not apply")
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"ws must be [N, {self.num_ws}, {self.w_dim}], got {ws.shape}")
        ws = ws.astype(jnp.float32)
        input_spec, layers = self.schedule()
        x = SynthesisInput(self.w_dim, input_spec.channels, input_spec.size,
                           input_spec.sampling_rate, input_spec.bandwidth,
                           name="input")(ws[:, 0], transform)
        for i, spec in enumerate(layers):
            x = SynthesisLayer(spec, self.w_dim, conv_clamp=self.conv_clamp,
                               magnitude_ema_beta=self.magnitude_ema_beta,
                               reduced_dtype=self.reduced_dtype, name=spec.name)(
                x, ws[:, i + 1], update_emas, force_fp32, fused_modconv)
        return (x * self.output_scale).astype(jnp.float32)


_MAPPING_ARGS = ("num_layers", "lr_multiplier", "w_avg_beta")


class Generator(GeneratorBase):
    """StyleGAN3 mapping + synthesis; `synthesis_kwargs` take the official flat names."""

    def setup(self):
        unknown = set(self.mapping_kwargs) - set(_MAPPING_ARGS)
        if unknown:
            raise TypeError(f"StyleGAN3 MappingNetwork got unexpected arguments {sorted(unknown)}")
        self.synthesis = SynthesisNetwork(self.w_dim, self.img_resolution, self.img_channels,
                                          **dict(self.synthesis_kwargs))
        mapping = {"num_layers": 2, "w_avg_beta": 0.998, **dict(self.mapping_kwargs)}
        self.mapping = MappingNetwork(self.z_dim, self.c_dim, self.w_dim, self.num_ws, **mapping)

    @property
    def num_ws(self) -> int:
        return dict(self.synthesis_kwargs).get("num_layers", 14) + 2
