"""Everything above the networks on a StyleGAN (v1) generator: the sample API, the
`experiments.generate` entry point on a v1 export, and the metrics' generator paths (FID source,
PPL / LS latent generator)."""

from __future__ import annotations

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from flaxgan import sample
from flaxgan.metrics import evaluation, ppl
from flaxgan.models import build_generator
from tests.conftest import REPO_ROOT

KWARGS = dict(class_name="training.networks_stylegan.G_style", resolution=16, num_channels=3,
              label_size=0, latent_size=16, dlatent_size=16, mapping_layers=2,
              mapping_fmaps=16, fmap_base=64, fmap_max=16)


def _variables():
    """Init variables with what training moves away from its start: a non-zero `dlatent_avg`
    (truncation centre) and noise weights (zero at init, so noise would change nothing)."""
    G = build_generator(KWARGS["class_name"], KWARGS)
    variables = jax.jit(lambda: G.init({"params": jax.random.key(0)}, jnp.zeros([1, 16]),
                                       jnp.zeros([1, 0]), noise_mode="const"))()
    variables = jax.tree.map(np.asarray, variables)
    variables["buffers"]["dlatent_avg"] = np.random.RandomState(1).randn(16).astype(np.float32)

    def noisy(path, x):
        return np.full_like(x, 0.5) if "Noise" in jax.tree_util.keystr(path) else x
    variables["params"] = jax.tree_util.tree_map_with_path(noisy, variables["params"])
    return G, variables


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    G, variables = _variables()
    directory = tmp_path_factory.mktemp("v1") / "export"
    sample.export_variables(directory, "G_ema", KWARGS, variables)
    return directory


@pytest.fixture(scope="module")
def g(export_dir):
    return sample.load(export_dir)


def test_loads_with_v1_truncation_centre_layers_and_noise(g):
    assert g.is_stylegan1 and g.has_noise and (g.num_ws, g.w_dim) == (6, 16)
    np.testing.assert_array_equal(g.w_avg, _variables()[1]["buffers"]["dlatent_avg"])
    # Two layers per resolution: 4², 4², 8², 8², 16², 16².
    assert sample.layer_indices(g, "coarse") == (0, 1, 2, 3)
    assert sample.layer_indices(g, "middle") == (4, 5)
    assert sample.layer_indices(g, "fine") == ()


def test_truncation_about_dlatent_avg_with_cutoff(g):
    z = sample.seeds_to_z(g, [0, 1])
    ws = sample.mapping(g, z)
    centre = sample.mapping(g, z, truncation_psi=0.0)
    np.testing.assert_allclose(centre, np.broadcast_to(g.w_avg, centre.shape), atol=1e-6)
    cut = sample.mapping(g, z, truncation_psi=0.5, truncation_cutoff=2)
    np.testing.assert_allclose(cut[:, :2], g.w_avg + 0.5 * (ws[:, :2] - g.w_avg), atol=1e-5)
    np.testing.assert_allclose(cut[:, 2:], ws[:, 2:], atol=1e-6)  # other programs: ~1 ulp
    same = sample.generate(g, [0, 1, 2], truncation_psi=0.0)  # every seed -> the centre
    assert np.array_equal(np.asarray(same[0]), np.asarray(same[2]))


def test_noise_modes_and_per_layer_subsets(g):
    ws = sample.mapping(g, sample.seeds_to_z(g, [3]))
    const = sample.synthesize(g, ws, noise_mode="const")
    np.testing.assert_array_equal(const, sample.synthesize(g, ws, noise_mode="const"))
    r0 = sample.synthesize(g, ws, noise_mode="random", seed=0)
    np.testing.assert_array_equal(r0, sample.synthesize(g, ws, noise_mode="random", seed=0))
    assert not np.allclose(r0, sample.synthesize(g, ws, noise_mode="random", seed=1))
    none = sample.synthesize(g, ws, noise_mode="none")
    assert not np.allclose(none, const)
    np.testing.assert_array_equal(sample.synthesize(g, ws, noise_layers=[]), none)
    np.testing.assert_array_equal(sample.synthesize(g, ws, noise_layers="all"), const)
    fine_only = sample.synthesize(g, ws, noise_layers="middle")  # 16² layers only
    assert not np.allclose(fine_only, none) and not np.allclose(fine_only, const)


def test_style_mix_interpolate_blend(g):
    grid, tiles = sample.style_mix(g, [0, 1], [2], layers="coarse")
    assert grid.size == (2 * 16, 3 * 16)
    ws = dict(zip([0, 1, 2], sample.mapping(g, sample.seeds_to_z(g, [0, 1, 2])), strict=True))
    mixed = ws[0].copy()
    mixed[:4] = ws[2][:4]
    want = sample.to_pil(sample.synthesize(g, mixed[None]))[0]
    assert np.array_equal(np.asarray(tiles[(0, 2)]), np.asarray(want))
    frames = sample.interpolate(g, 0, 1, steps=3, space="w")
    ends = sample.generate(g, [0, 1])
    assert np.array_equal(np.asarray(frames[0]), np.asarray(ends[0]))
    assert np.array_equal(np.asarray(frames[-1]), np.asarray(ends[1]))
    assert len(sample.interpolate(g, 0, 1, steps=4, space="z")) == 4
    blended, image = sample.blend(g, [0, 1], [1.0, 0.0])
    np.testing.assert_allclose(blended, ws[0], atol=1e-6)
    assert image.size == (16, 16)


def test_generate_entry_point_on_a_v1_export(export_dir, g, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "experiments.generate", f"--network={export_dir}",
         "--seeds=0-1", "--trunc=0.7", "--trunc_cutoff=4", f"--outdir={tmp_path}", "--grid=2"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    want = sample.generate(g, [0, 1], truncation_psi=0.7, truncation_cutoff=4)
    for seed, image in zip([0, 1], want, strict=True):
        got = np.asarray(Image.open(tmp_path / f"seed{seed:04d}.png"))
        np.testing.assert_array_equal(got, np.asarray(image))
    assert Image.open(tmp_path / "grid.png").size == (32, 16)


def test_fid_source_is_untruncated_with_random_noise(g, monkeypatch):
    """The official v1 metrics run `Gs` with `is_validation=True`: ψ = 1 although `G_style`
    truncates by default (ψ 0.7, cutoff 8)."""
    assert g.module.truncation_psi == 0.7  # the official default, used by a plain call
    monkeypatch.setattr(evaluation.features, "generator_source",
                        lambda draw, seed, name: draw)  # the source's `(key, n) -> uint8`
    draw = evaluation.network_source(g.module, g.variables, 0)
    key = jax.random.key(5)
    images = draw(key, 8)
    z = jax.random.normal(jax.random.split(key, 3)[0], (8, g.z_dim))
    ws = sample.mapping(g, np.asarray(z))
    untruncated = sample.synthesize(g, ws, noise_mode="none")
    truncated = sample.synthesize(g, sample.mapping(g, np.asarray(z), truncation_psi=0.7,
                                                    truncation_cutoff=8), noise_mode="none")
    err = lambda x: np.abs(images.astype(np.float32) - sample.to_uint8(x)).mean()  # noqa: E731
    assert images.shape == (8, 16, 16, 3) and err(untruncated) < err(truncated)


def test_ppl_on_v1_draws_the_noise_buffers_per_batch(g):
    gen = evaluation.latent_generator(g.module, g.variables)
    ws = jnp.asarray(sample.mapping(g, sample.seeds_to_z(g, [0, 1])))
    a, b = gen.synthesis(ws, jax.random.key(0)), gen.synthesis(ws, jax.random.key(1))
    assert not np.allclose(a, b)  # v1's noise<i> buffers are redrawn from the key
    np.testing.assert_array_equal(a, gen.synthesis(ws, jax.random.key(0)))
    # Each space and each sampling once: what is v1-specific is the noise, not the pairs.
    for space, sampling in (("z", "full"), ("w", "end")):
        value = ppl.ppl(gen.mapping, gen.synthesis, lambda x: x.reshape(len(x), -1) / 255,
                        gen.z_dim, num_samples=16, space=space, sampling=sampling,
                        batch_size=8, progress=False)
        assert np.isfinite(value) and value > 0, (space, sampling)


def test_fid_and_ls_through_the_registry_on_v1(g, tmp_path):
    """The study's Table I metrics on a v1 generator with tiny counts and toy detectors."""
    from flaxgan.metrics import features, ls, registry  # noqa: PLC0415

    def toy_features(images):  # per-channel means and stds: a 6-d "Inception"
        x = images.astype(np.float32) / 255
        return np.concatenate([x.mean(axis=(1, 2)), x.std(axis=(1, 2))], axis=1)

    reals = tmp_path / "reals"
    reals.mkdir()
    for i, image in enumerate(sample.generate(g, range(100, 116), noise_mode="random")):
        image.save(reals / f"{i:03d}.png")
    fake = evaluation.network_source(g.module, g.variables, 0)
    ctx = registry.MetricContext(real=features.folder_source(reals), fake=fake, progress=False,
                                 inception=features.Extractor(toy_features, "toy", 8),
                                 cache_dir=str(tmp_path / "cache"), num_gen=32)
    result = registry.calc_metric("fid50k_full", ctx)
    assert np.isfinite(result["results"]["fid50k_full"])
    gen = evaluation.latent_generator(g.module, g.variables)

    def brightness(images):  # one "attribute": P(bright) from the mean intensity
        return jax.nn.sigmoid((jnp.mean(images.astype(jnp.float32), axis=(1, 2, 3)) - 128)
                              / 8)[:, None]
    scores = ls.linear_separability(gen, brightness, num_samples=64, batch_size=32,
                                    progress=False)
    assert set(scores) == {"ls_z", "ls_w"} and all(v >= 1 for v in scores.values())
