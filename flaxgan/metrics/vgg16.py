"""The official metrics' VGG16 in JAX: precision/recall features and LPIPS for PPL.

StyleGAN2-ADA / StyleGAN3 measure precision/recall (``pr50k3*``) and perceptual path length
(``ppl_*``) with NVIDIA's ``vgg16.pt``, a TorchScript port of the VGG16 + LPIPS network of
Zhang et al.'s TensorFlow code. The metrics call it as

* ``vgg16(images, return_features=True)`` (precision/recall): ``images`` uint8 NCHW, resized to
  224x224 (``resize_images=True`` by default) with the same ``affine_grid``/``grid_sample``
  half-pixel scheme as the FID Inception's 299 resize (:func:`torchfile.resize_bilinear`), then
  the 4096-d ``fc2`` activations after ReLU (``fc1 -> relu -> fc2 -> relu``);
* ``vgg16(images, resize_images=False, return_lpips=True)`` (PPL, projector): ``images`` float in
  [0, 255]; a vector per image whose squared L2 difference is the LPIPS distance.

This module is that network as pure functions over a parameter tree (NHWC):

* input normalisation ``(img / 127.5 - 1 - shift) / scale`` with ``params['normalize']``; the
  ImageNet statistics ``mean (0.485, 0.456, 0.406)``, ``std (0.229, 0.224, 0.225)`` applied to
  ``img / 255`` are exactly ``shift = 2 mean - 1``, ``scale = 2 std``, which are LPIPS's
  ``ScalingLayer`` constants ``[-.030, -.088, -.188]``, ``[.458, .448, .450]``;
* 13 3x3 convolutions (padding 1) with ReLU, 2x2 max pools after conv2, 4, 7, 10, 13;
* PR features: ``relu(fc2(relu(fc1(flatten(pool5)))))``; ``fc1`` rows are stored in
  (H, W, C) order here, converted from torch's (C, H, W) flatten;
* LPIPS: at relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 (outputs of conv2, 4, 7, 10, 13),
  ``f_hat = f / (||f||_channels + 1e-10)``; ``LPIPS(x, y) = sum_stages mean_hw sum_c w_c
  (f_hat_x - f_hat_y)^2`` with the per-channel weights ``params['lpips0'..'lpips4']``, so the
  feature vector is the concatenation of ``f_hat * sqrt(w_c) / sqrt(H W)``, flattened.

Weights (:func:`load_params`), either

* NVIDIA's ``vgg16.pt`` (TorchScript zip; keys ``layers.conv1..conv13.{weight,bias}``,
  ``layers.fc1..fc3.{weight,bias}``, ``lpips0..lpips4``): its own LPIPS weights, ImageNet
  normalisation; or
* torchvision's ``vgg16-397923af.pth`` (state_dict, keys ``features.{0,2,...,28}.*``,
  ``classifier.{0,3,6}.*``): the LPIPS v0.1 linear heads vendored in
  ``flaxgan/metrics/assets/lpips_vgg_heads.npz`` (BSD-2, PyPI ``lpips==0.1.4``) and the
  ``lpips`` package's ``ScalingLayer``; this combination is exactly ``lpips.LPIPS(net='vgg')``
  (version 0.1) -- checked against the package in ``tests/flaxgan/metrics/test_vgg16.py``.

Parameter tree (kernels HWIO, dense ``[in, out]``)::

    {'conv1': {'weight': [3, 3, 3, 64], 'bias': [64]}, ..., 'conv13': {...},
     'fc1': {'weight': [25088, 4096], 'bias': [4096]}, 'fc2': {'weight': [4096, 4096], ...},
     'normalize': {'shift': [3], 'scale': [3]},
     'lpips0': [64], 'lpips1': [128], 'lpips2': [256], 'lpips3': [512], 'lpips4': [512]}

``normalize`` and ``lpips*`` record which normalisation and LPIPS weights apply (the source's);
the converted ``.npz`` cache also names the source file and its sha256.

What could not be verified here, for want of NVIDIA's ``vgg16.pt`` (sha256 ``b437eb09...``):
the file's exact key names and shapes (taken from a third party's description), that its
``lpips*`` tensors are the weights ``w_c`` themselves (not their square roots), its ``fc1``
flatten order (assumed torch's (C, H, W), as in torchvision), the position of the
normalisation relative to the resize (equivalent up to float rounding: both are affine per
channel), and the element order of its ``return_lpips`` vector (irrelevant to distances).
The architecture, resize, normalisation and LPIPS formula are checked against torchvision's
VGG16, torch's ``grid_sample`` and the ``lpips`` package with seeded weights;
``tools/check_vgg16_official.py --weights=vgg16.pt`` compares with the official file where it
is available.
"""

from __future__ import annotations

import os
import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from flaxgan import files
from flaxgan.errors import UserError
from flaxgan.metrics import torchfile
from flaxgan.metrics.torchfile import default_cache_dir

__all__ = [
    'CONV_CHANNELS',
    'FEATURE_DIM',
    'INPUT_SIZE',
    'LPIPS_CHANNELS',
    'NVIDIA_URL',
    'TORCHVISION_FILE',
    'WeightsNotFoundError',
    'convert_nvidia',
    'convert_torchvision',
    'default_cache_dir',
    'load_lpips_heads',
    'load_params',
    'lpips_distance',
    'lpips_features',
    'resize_to_224',
    'save_params',
    'vgg16_features',
]

INPUT_SIZE = 224
FEATURE_DIM = 4096
NVIDIA_URL = 'https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/vgg16.pt'
TORCHVISION_FILE = 'vgg16-397923af.pth'
NVIDIA_SHA256 = 'b437eb095feaeb0b83eb3fa11200ebca4548ee39a07fb944a417ddc516cc07c3'

# Output channels of conv1..conv13; a 2x2 max pool follows the convs in POOL_AFTER.
CONV_CHANNELS = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)
POOL_AFTER = (2, 4, 7, 10, 13)
LPIPS_CHANNELS = (64, 128, 256, 512, 512)
LPIPS_EPS = 1e-10
# torchvision `features.<i>` index of conv1..conv13 and `classifier.<i>` of fc1..fc3.
TORCHVISION_CONV = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
TORCHVISION_FC = (0, 3, 6)
# LPIPS ScalingLayer (lpips 0.1.4) = 2 * ImageNet mean - 1, 2 * ImageNet std.
LPIPS_SHIFT = np.array([-.030, -.088, -.188], np.float32)
LPIPS_SCALE = np.array([.458, .448, .450], np.float32)
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)

_HEADS = os.path.join(os.path.dirname(__file__), 'assets', 'lpips_vgg_heads.npz')
_WHAT = f'NVIDIA vgg16.pt or torchvision {TORCHVISION_FILE}'

Params = dict[str, Any]
Precision = jax.lax.Precision | None


# ---------------------------------------------------------------------------------------------
# The network.
# ---------------------------------------------------------------------------------------------


def resize_to_224(x: jax.Array) -> jax.Array:
    """The detector's bilinear resize of float32 ``[N, H, W, C]`` to ``[N, 224, 224, C]``."""
    return torchfile.resize_bilinear(x, INPUT_SIZE)


def _check_images(images: jax.Array) -> None:
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f'expected images [N, H, W, 3], got shape {images.shape}')


def _normalize(params: Params, x: jax.Array) -> jax.Array:
    """float [0, 255] -> network input: ``(x / 127.5 - 1 - shift) / scale``."""
    norm = params['normalize']
    return (x / 127.5 - 1.0 - jnp.asarray(norm['shift'])) / jnp.asarray(norm['scale'])


def _conv(p: Params, x: jax.Array, precision: Precision) -> jax.Array:
    y = jax.lax.conv_general_dilated(
        x, jnp.asarray(p['weight'], x.dtype), (1, 1), ((1, 1), (1, 1)),
        dimension_numbers=('NHWC', 'HWIO', 'NHWC'), precision=precision)
    return jax.nn.relu(y + p['bias'])


def _max_pool(x: jax.Array) -> jax.Array:
    """2x2 stride-2 max pool (floor: an odd last row/column is dropped, as torch's)."""
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), 'VALID')


def _trunk(params: Params, x: jax.Array, precision: Precision, last: int = 13
           ) -> tuple[jax.Array, list[jax.Array]]:
    """Convs 1..``last`` on normalised input; returns the output and the LPIPS taps."""
    taps = []
    for i in range(1, last + 1):
        x = _conv(params[f'conv{i}'], x, precision)
        if i in POOL_AFTER:
            taps.append(x)  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
            x = _max_pool(x)
    return x, taps


def vgg16_features(params: Params, images: jax.Array,
                   precision: Precision = jax.lax.Precision.HIGHEST) -> jax.Array:
    """The official detector with ``return_features=True`` (precision/recall).

    Args:
      params: parameter tree from :func:`load_params`.
      images: uint8 (or float in [0, 255]) ``[N, H, W, 3]`` RGB images at any resolution.
      precision: convolution/matmul precision (HIGHEST = true float32).
    Returns:
      float32 ``[N, 4096]``: ``relu(fc2(relu(fc1(...))))`` of the image resized to 224x224.
    """
    _check_images(images)
    x = _normalize(params, resize_to_224(jnp.asarray(images).astype(jnp.float32)))
    x, _ = _trunk(params, x, precision)
    x = x.reshape(x.shape[0], -1)  # [N, 7 * 7 * 512] in (H, W, C) order, as fc1's rows
    for fc in ('fc1', 'fc2'):
        x = jnp.dot(x, params[fc]['weight'], precision=precision) + params[fc]['bias']
        x = jax.nn.relu(x)
    return x


def lpips_features(params: Params, images: jax.Array, resize: bool = False,
                   precision: Precision = jax.lax.Precision.HIGHEST) -> jax.Array:
    """The official ``vgg16(images, resize_images=resize, return_lpips=True)`` (PPL).

    Args:
      params: parameter tree from :func:`load_params`.
      images: float ``[N, H, W, 3]`` in [0, 255] (H, W >= 16).
      resize: resize to 224x224 first (the official default is True; PPL passes False).
      precision: convolution precision.
    Returns:
      float32 ``[N, F]``, ``F = sum_stages C_s H_s W_s`` (``64 H W + 128 H W / 4 + ...``):
      ``||lpips_features(a) - lpips_features(b)||^2`` is the LPIPS distance of ``a`` and ``b``.
    """
    _check_images(images)
    x = jnp.asarray(images).astype(jnp.float32)
    if resize:
        x = resize_to_224(x)
    _, taps = _trunk(params, _normalize(params, x), precision)
    out = []
    for s, f in enumerate(taps):
        norm = jnp.sqrt(jnp.sum(jnp.square(f), axis=-1, keepdims=True))
        f = f / (norm + LPIPS_EPS)
        scale = jnp.sqrt(jnp.asarray(params[f'lpips{s}'], jnp.float32)
                         / (f.shape[1] * f.shape[2]))
        out.append((f * scale).reshape(f.shape[0], -1))
    return jnp.concatenate(out, axis=1)


def lpips_distance(params: Params, a: jax.Array, b: jax.Array, resize: bool = False,
                   precision: Precision = jax.lax.Precision.HIGHEST) -> jax.Array:
    """LPIPS-VGG16 distance ``[N]`` of ``a`` and ``b`` (float ``[N, H, W, 3]`` in [0, 255])."""
    fa, fb = jnp.split(lpips_features(params, jnp.concatenate([a, b]), resize, precision), 2)
    return jnp.sum(jnp.square(fa - fb), axis=1)


# ---------------------------------------------------------------------------------------------
# Weights.
# ---------------------------------------------------------------------------------------------


class WeightsNotFoundError(UserError, FileNotFoundError):
    """No VGG16 weights at the given location or ``$FLAXGAN_VGG16``."""


def _expected_shapes() -> dict[tuple[str, str], tuple[int, ...]]:
    """Torch-layout shapes: conv ``OIHW``, fc ``[out, in]``."""
    shapes, cin = {}, 3
    for i, cout in enumerate(CONV_CHANNELS, 1):
        shapes[(f'conv{i}', 'weight')], shapes[(f'conv{i}', 'bias')] = (cout, cin, 3, 3), (cout,)
        cin = cout
    for name, (n_in, n_out) in (('fc1', (512 * 7 * 7, 4096)), ('fc2', (4096, 4096))):
        shapes[(name, 'weight')], shapes[(name, 'bias')] = (n_out, n_in), (n_out,)
    return shapes


def _convert_layers(get: Any, source: str) -> Params:
    """``get(layer, 'weight'|'bias') -> torch-layout array`` -> flaxgan params (no heads)."""
    params: Params = {}
    for (layer, kind), shape in _expected_shapes().items():
        value = get(layer, kind)
        if value is None:
            raise ValueError(f'{source}: missing {layer}.{kind}')
        value = np.asarray(value)
        if value.shape != shape:
            raise ValueError(f'{source}: {layer}.{kind} has shape {value.shape}, expected {shape}')
        if not np.issubdtype(value.dtype, np.floating):
            raise ValueError(f'{source}: {layer}.{kind} has dtype {value.dtype}, expected float')
        value = value.astype(np.float32, copy=False)
        if kind == 'weight' and layer.startswith('conv'):
            value = value.transpose(2, 3, 1, 0)  # OIHW -> HWIO
        elif kind == 'weight' and layer == 'fc1':
            # Rows (C, H, W) -> (H, W, C): a gather of whole columns then one 2-D transpose is
            # 4x faster than a 4-D transpose of the 400 MB matrix.
            chw_of_hwc = np.arange(512 * 7 * 7).reshape(512, 7, 7).transpose(1, 2, 0).ravel()
            value = value[:, chw_of_hwc].T
        elif kind == 'weight':
            value = value.T
        params.setdefault(layer, {})[kind] = np.ascontiguousarray(value)
    return params


def _heads(values: dict[int, Any], source: str) -> dict[str, np.ndarray]:
    out = {}
    for s, ch in enumerate(LPIPS_CHANNELS):
        if s not in values:
            raise ValueError(f'{source}: missing LPIPS weights lpips{s}')
        w = np.asarray(values[s], np.float32)
        if w.size != ch:
            raise ValueError(f'{source}: lpips{s} has shape {w.shape}, expected {ch} weights')
        if np.any(w < 0) or not np.all(np.isfinite(w)):
            raise ValueError(f'{source}: lpips{s} has negative or non-finite weights')
        out[f'lpips{s}'] = w.reshape(ch)
    return out


def load_lpips_heads(path: str = _HEADS) -> dict[str, np.ndarray]:
    """The LPIPS v0.1 VGG linear heads (``lpips==0.1.4`` ``weights/v0.1/vgg.pth``) as
    ``{'lpips0': [64], ..., 'lpips4': [512]}``."""
    with np.load(path) as f:
        values = {}
        for key in f.files:
            m = re.fullmatch(r'(?:vgg/)?lin(\d)\.model\.1\.weight', key)
            if m:
                values[int(m.group(1))] = f[key]
    return _heads(values, path)


def convert_nvidia(tree: dict[str, Any], source: str = 'vgg16.pt') -> Params:
    """NVIDIA's flat TorchScript dict (``layers.convN.*``, ``layers.fcN.*``, ``lpipsN``) ->
    params with ImageNet normalisation and the file's LPIPS weights."""
    layers, lp = {}, {}
    for key, value in tree.items():
        parts = key.split('.')
        if 'layers' in parts and len(parts) >= parts.index('layers') + 3:
            i = parts.index('layers')
            layers[(parts[i + 1], parts[i + 2])] = value
        m = re.fullmatch(r'lpips(\d)', parts[-1])
        if m and isinstance(value, np.ndarray):
            lp[int(m.group(1))] = value
    params = _convert_layers(lambda layer, kind: layers.get((layer, kind)), source)
    params['normalize'] = {'shift': (2 * IMAGENET_MEAN - 1).astype(np.float32),
                           'scale': (2 * IMAGENET_STD).astype(np.float32)}
    params.update(_heads(lp, source))
    return params


def convert_torchvision(state_dict: dict[str, Any], source: str = TORCHVISION_FILE,
                        heads: dict[str, np.ndarray] | None = None) -> Params:
    """torchvision VGG16 state_dict (``features.i.*``, ``classifier.i.*``; an optional
    ``module.`` / ``net.`` prefix is ignored) -> params with LPIPS's ``ScalingLayer`` and the
    vendored v0.1 heads (or ``heads``)."""
    flat = {}
    for key, value in state_dict.items():
        m = re.search(r'(features|classifier)\.(\d+)\.(weight|bias)$', key)
        if m:
            flat[(m.group(1), int(m.group(2)), m.group(3))] = value

    def get(layer: str, kind: str) -> Any:
        i = int(layer[4:] if layer.startswith('conv') else layer[2:])
        if layer.startswith('conv'):
            return flat.get(('features', TORCHVISION_CONV[i - 1], kind))
        return flat.get(('classifier', TORCHVISION_FC[i - 1], kind))

    params = _convert_layers(get, source)
    params['normalize'] = {'shift': LPIPS_SHIFT.copy(), 'scale': LPIPS_SCALE.copy()}
    params.update(load_lpips_heads() if heads is None else _heads(
        {int(k[-1]): v for k, v in heads.items()}, 'heads'))
    return params


def _convert_file(path: str) -> tuple[Params, str]:
    tree = torchfile.read_torch_file(path, _WHAT)
    if any(re.search(r'(^|\.)features\.\d+\.weight$', k) for k in tree):
        return convert_torchvision(tree, path), 'torchvision'
    if any(re.search(r'(^|\.)layers\.conv\d+\.weight$', k) for k in tree):
        return convert_nvidia(tree, path), 'nvidia'
    raise ValueError(f'{path}: neither NVIDIA vgg16.pt (layers.conv1.weight, ...) nor a '
                     f'torchvision VGG16 state_dict (features.0.weight, ...)')


def save_params(params: Params, path: str, **meta: str) -> None:
    """Writes ``params`` as a converted ``.npz`` that :func:`load_params` reads."""
    files.save_npz_tree(path, params, **meta)


def load_params(path: str | os.PathLike | None = None, cache_dir: str | None = None) -> Params:
    """Loads VGG16 params, converting a torch file once into ``<cache>/vgg16-*.npz`` (keyed
    by the file's sha256: copies at other paths share it).

    Args:
      path: NVIDIA's ``vgg16.pt`` (TorchScript), torchvision's ``vgg16-397923af.pth``
        (state_dict, zip or legacy format) or a converted ``.npz``; ``None`` reads
        ``$FLAXGAN_VGG16``.
      cache_dir: where converted ``.npz`` files live (default :func:`default_cache_dir`).
    Returns:
      The parameter tree of numpy float32 arrays (see the module docstring).
    Raises:
      WeightsNotFoundError: no path given / set, or no file there (one line naming both files).
      ValueError: one line naming the file when it is unreadable or not a VGG16.
    """
    path = os.fspath(path) if path is not None else os.environ.get('FLAXGAN_VGG16') or None
    if path is None or not os.path.isfile(path):
        raise WeightsNotFoundError(
            f'VGG16 weights not found{f" at {path}" if path else ""}: pass NVIDIA vgg16.pt '
            f'({NVIDIA_URL}) or torchvision {TORCHVISION_FILE} with --vgg16=PATH or set '
            'FLAXGAN_VGG16')
    if path.endswith('.npz'):
        try:
            params, _ = files.load_npz_tree(path)
        except (OSError, ValueError, EOFError) as e:
            raise ValueError(f'{path}: not a readable .npz ({type(e).__name__})') from None
        missing = [k for k in ('conv1', 'conv13', 'fc1', 'fc2', 'normalize', 'lpips4')
                   if k not in params]
        if missing:
            raise ValueError(f'{path}: not converted VGG16 params (missing {missing[0]})')
        return params
    cache = torchfile.cache_path(path, cache_dir, 'vgg16')
    if os.path.isfile(cache):
        return files.load_npz_tree(cache)[0]
    params, source = _convert_file(path)
    save_params(params, cache, source=source, file=os.path.basename(path),
                sha256=torchfile.file_sha256(path, cache_dir))
    return params
