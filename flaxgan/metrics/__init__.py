"""Quality metrics computed as the official StyleGAN2-ADA / StyleGAN3 code computes them.

    from flaxgan import metrics
    metrics.compute_fid('real/', 'fake/')   # two folders, one call (as clean-fid)
    metrics.compute_kid('real/', 'fake/')

Every official metric, with the pieces spelled out:

    from flaxgan.metrics import features, inception, registry
    params = inception.load_params()                      # TorchScript -> cached .npz
    extract = features.make_extractor(inception.inception_features, params)  # jit + shard_map
    ctx = registry.MetricContext(real=features.folder_source('real/'),
                                 fake=features.folder_source('fake/'), inception=extract)
    registry.calc_metric('fid50k_full', ctx)['results']

Modules: ``inception`` (Flax FID Inception + weight reader), ``features`` (sharded extraction,
image sources), ``stats`` (float64 moments, cache), ``fid``, ``kid``, ``pr``, ``ppl``, ``registry``.
"""

from flaxgan.metrics import features, fid, inception, kid, ppl, pr, registry, stats
from flaxgan.metrics.api import compute_fid, compute_kid

__all__ = ['compute_fid', 'compute_kid', 'features', 'fid', 'inception', 'kid', 'ppl', 'pr',
           'registry', 'stats']
