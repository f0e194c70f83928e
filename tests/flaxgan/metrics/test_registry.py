"""Registry: official names, evaluators over folders with a cheap detector, clear errors."""

import dataclasses

import numpy as np
import pytest
from PIL import Image

from flaxgan.metrics import features, fid, kid, registry, stats


def _folder(path, seed, n=24, shift=0):
    path.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(n):
        img = np.clip(rng.normal(128 + shift, 40, (4, 4, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(path / f'{i:03d}.png')
    return features.folder_source(path)


def _toy_extractor():
    def extract(images):
        return images.reshape(len(images), -1).astype(np.float32) / 255.0

    return features.Extractor(extract, 'toy', 8)


@pytest.fixture
def ctx(tmp_path):
    return registry.MetricContext(real=_folder(tmp_path / 'real', 0),
                                  fake=_folder(tmp_path / 'fake', 1, shift=30),
                                  inception=_toy_extractor(), cache_dir=str(tmp_path / 'cache'),
                                  progress=False)


def test_official_names_registered():
    for name in ('fid50k_full', 'fid50k', 'fid10k', 'kid50k_full', 'kid50k', 'pr50k3_full',
                 'pr50k3', 'is50k', 'ppl_zfull', 'ppl_wfull', 'ppl_zend', 'ppl_wend', 'ppl2_wend',
                 'ls', 'fid', 'kid', 'pr', 'fid1k_full', 'kid1k_full'):
        assert registry.is_valid_metric(name), name
    assert not registry.higher_is_better('fid50k_full')
    assert registry.higher_is_better('pr50k3_full_precision')


def test_fid_kid_pr_over_folders(ctx):
    out = registry.calc_metric('fid50k_full', ctx)
    assert out['num_images'] == {'real': 24, 'fake': 24} and out['seconds'] >= 0
    real = ctx.inception(np.concatenate(list(ctx.real.batches(99))))
    fake = ctx.inception(np.concatenate(list(ctx.fake.batches(99))))
    m = lambda x: stats.moments_update(stats.moments_init(x.shape[1]), x)
    assert out['results']['fid50k_full'] == pytest.approx(fid.fid_from_moments(m(fake), m(real)))
    assert registry.calc_metric('kid', ctx)['results']['kid'] == pytest.approx(
        kid.kid(fake, real))
    pr = registry.calc_metric('pr', ctx)['results']
    assert set(pr) == {'pr_precision', 'pr_recall'}


def test_fid_of_folder_with_itself_is_zero(ctx):
    same = registry.MetricContext(real=ctx.real, fake=ctx.real, inception=ctx.inception,
                                  cache_dir=ctx.cache_dir, progress=False)
    assert abs(registry.calc_metric('fid', same)['results']['fid']) < 1e-6


def test_missing_detectors_and_unimplemented(ctx):
    with pytest.raises(ValueError, match='VGG16'):
        registry.calc_metric('pr50k3_full', ctx)
    with pytest.raises(ValueError, match='softmax'):
        registry.calc_metric('is50k', ctx)
    with pytest.raises(ValueError, match='ppl_wend needs'):
        registry.calc_metric('ppl_wend', ctx)
    with pytest.raises(ValueError, match='ls needs'):
        registry.calc_metric('ls', ctx)
    with pytest.raises(ValueError, match='unknown metric'):
        registry.calc_metric('fid51k', ctx)


def test_num_gen_overrides_the_official_sample_count(ctx):
    import jax.numpy as jnp

    from flaxgan.metrics import ppl

    generator = ppl.LatentGenerator(
        mapping=lambda z, c: jnp.repeat(z[:, None], 2, axis=1),
        synthesis=lambda ws, key: jnp.tanh(ws.mean(1)[:, :48].reshape(-1, 4, 4, 3)), z_dim=48)
    quick = dataclasses.replace(ctx, generator=generator, num_gen=40,
                                lpips=lambda x: x.reshape(len(x), -1) / 255)
    result = registry.calc_metric('ppl2_wend', quick)
    assert result['num_images'] == {'fake': 40} and result['results']['ppl2_wend'] > 0
    result = registry.calc_metric('fid', dataclasses.replace(ctx, num_gen=6))
    assert result['num_images']['fake'] == 6


def test_fid_and_kid_of_one_context_share_the_generated_features(ctx):
    calls = []
    toy = ctx.inception

    def counting(images):
        calls.append(len(images))
        return toy.fn(images)

    counted = dataclasses.replace(ctx, inception=features.Extractor(counting, 'toy', 8),
                                  use_cache=False)
    fid_value = registry.calc_metric('fid', counted)['results']['fid']
    kid_value = registry.calc_metric('kid', counted)['results']['kid']
    # No disk cache: the reals once per statistic (moments, features), the fakes only once.
    assert sum(calls) == 24 + 24 + 24
    fresh = dataclasses.replace(counted)  # a new context extracts its fakes again
    assert not fresh.generated_features
    assert registry.calc_metric('fid', fresh)['results']['fid'] == pytest.approx(fid_value)
    assert registry.calc_metric('kid', fresh)['results']['kid'] == pytest.approx(kid_value)


def test_lone_fid_streams_the_generated_moments(ctx):
    """Without a KID to share them with, FID keeps no generated features, same value."""
    streamed = dataclasses.replace(ctx, keep_generated_features=False)
    value = registry.calc_metric('fid', streamed)['results']['fid']
    assert not streamed.generated_features
    # The same float64 moments summed in another order (per batch vs all features at once;
    # BLAS's order depends on the CPU and its threads), ~1e-16 per entry, then the matrix square
    # root of a rank-deficient product (24 images, 192 features), which amplifies it (seen: 1.2e-9
    # relative). A moment missing or counted twice moves the FID by far more than 1e-6.
    assert value == pytest.approx(registry.calc_metric('fid', ctx)['results']['fid'], rel=1e-6)
