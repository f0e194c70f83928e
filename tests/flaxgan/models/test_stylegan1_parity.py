"""Parity of the StyleGAN (v1) networks with the official TensorFlow code, over every v1 file.

Reference files (`tests/data/reference_stylegan1/README.md`) are recorded by
`tools/make_reference_stylegan1.py`; networks are built through the registry from each json's
`G_kwargs` / `D_kwargs`, and the official variables converted by
`flaxgan.convert.tf_stylegan1`. Every forward pass is jitted with its varying inputs (ψ, cutoff,
lod) traced, so each network compiles a handful of programs per file.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flaxgan.convert import tf_stylegan1
from flaxgan.models import build_discriminator, build_generator
from tests.conftest import reference_files
from tests.flaxgan.models import reference as ref

G_CLASS = "training.networks_stylegan.G_style"


FILES = reference_files("stylegan1")
pytestmark = pytest.mark.skipif(not FILES, reason="no StyleGAN v1 reference files")


def _variables(arrays, net: str, module, *args) -> dict:
    prefix = f"vars/{net}/"
    tf_vars = {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
    target = ref.init_shapes(module, *args)
    return jax.tree.map(jnp.asarray, tf_stylegan1.to_flax_checked(tf_vars, target, "reference"))


@pytest.fixture(scope="module", params=FILES, ids=[p.stem for p in FILES])
def case(request):
    arrays, meta = ref.load(request.param)
    G = build_generator(G_CLASS, meta["G_kwargs"])
    D = build_discriminator(meta["D_kwargs"]["class_name"], meta["D_kwargs"])
    z = jnp.asarray(arrays["io/z"])
    labels = jnp.asarray(arrays.get("io/labels", np.zeros([z.shape[0], 0], np.float32)))
    g_vars = _variables(arrays, "G", G, z, labels)
    d_vars = _variables(arrays, "D", D, ref.nhwc(arrays["io/d_real_img"]), labels)
    # Every non-training output was recorded with dlatent_avg before the training-mode pass.
    g_vars["buffers"]["dlatent_avg"] = jnp.asarray(arrays["io/dlatent_avg_before"])
    return arrays, meta, G, g_vars, D, d_vars, z, labels


@functools.partial(jax.jit, static_argnums=0)
def _map(G, g_vars, z, labels, psi, cutoff):
    return G.apply(g_vars, z, labels, psi, cutoff, method=G.map)


@functools.partial(jax.jit, static_argnums=0)
def _generate(G, g_vars, z, labels, psi, cutoff, lod):
    return G.apply(g_vars, z, labels, lod=lod, truncation_psi=psi, truncation_cutoff=cutoff,
                   randomize_noise=False)


@functools.partial(jax.jit, static_argnums=0)
def _synthesize(G, g_vars, dlatents):
    return G.apply(g_vars, dlatents, noise_mode="const", method=G.synthesize)


@functools.partial(jax.jit, static_argnums=0)
def _train_pass(G, g_vars, z, labels, latents2, cutoff):
    return G.apply(g_vars, z, labels, is_training=True, randomize_noise=False,
                   latents2=latents2, mixing_cutoff=cutoff, mutable=["buffers"])


@functools.partial(jax.jit, static_argnums=0)
def _score(D, d_vars, images, labels, lod):
    return D.apply(d_vars, images, labels, lod)


def test_variables_round_trip(case):
    arrays, _, _, g_vars, _, d_vars, *_ = case
    for net, variables in (("G", g_vars), ("D", d_vars)):
        back = tf_stylegan1.from_flax(variables)
        want = {k.split("/", 2)[2]: v for k, v in arrays.items() if k.startswith(f"vars/{net}/")}
        if net == "G":
            want["dlatent_avg"] = arrays["io/dlatent_avg_before"]
        assert sorted(back) == sorted(want)
        for name, value in want.items():
            np.testing.assert_array_equal(back[name], value, err_msg=name)


def test_mapping_and_truncation(case):
    arrays, meta, G, g_vars, _, _, z, labels = case
    ref.assert_close(_map(G, g_vars, z, labels, 1.0, G.num_ws), arrays["io/dlatents"],
                     "dlatents")
    for tag, spec in meta["truncation"].items():
        ws = _map(G, g_vars, z, labels, spec["psi"], spec["cutoff"])
        ref.assert_close(ws, arrays[f"io/dlatents_{tag}"], f"dlatents_{tag}")


def test_synthesis_network(case):
    arrays, _, G, g_vars, *_ = case
    img = _synthesize(G, g_vars, jnp.asarray(arrays["io/dlatents"]))
    ref.assert_close(ref.nchw(img), arrays["io/img_synthesis"], "img_synthesis")


def test_generator_truncation_and_lod(case):
    arrays, meta, G, g_vars, _, _, z, labels = case
    runs = [("io/img_psi1.0", 1.0, 0, 0.0)]
    runs += [(f"io/img_{tag}", s["psi"], s["cutoff"], 0.0) for tag, s in meta["truncation"].items()]
    runs += [(f"io/img_lod{lod}", 1.0, 0, lod) for lod in meta["lods"]]
    for key, psi, cutoff, lod in runs:
        img = _generate(G, g_vars, z, labels, psi, cutoff, lod)
        ref.assert_close(ref.nchw(img), arrays[key], key)


def test_style_mixing_and_dlatent_avg_update(case):
    arrays, _, G, g_vars, _, _, z, labels = case
    img, updated = _train_pass(G, g_vars, z, labels, jnp.asarray(arrays["io/mix_latents2"]),
                               jnp.asarray(arrays["io/mix_cutoff"]))
    ref.assert_close(ref.nchw(img), arrays["io/img_mix"], "img_mix")
    ref.assert_close(updated["buffers"]["dlatent_avg"], arrays["io/dlatent_avg_after"],
                     "dlatent_avg_after")


def test_discriminator(case):
    arrays, meta, _, _, D, d_vars, _, labels = case
    real = ref.nhwc(arrays["io/d_real_img"])
    ref.assert_close(_score(D, d_vars, real, labels, 0.0), arrays["io/d_scores_real"], "real")
    ref.assert_close(_score(D, d_vars, ref.nhwc(arrays["io/img_psi1.0"]), labels, 0.0),
                     arrays["io/d_scores_fake"], "fake")
    for lod in meta["lods"]:
        key = f"io/d_scores_real_lod{lod}"
        ref.assert_close(_score(D, d_vars, real, labels, lod), arrays[key], key)
