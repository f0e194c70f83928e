"""Structural tests of the StyleGAN2 networks beyond the reference configurations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flaxgan.models import build_discriminator, build_generator, stylegan2


def _g_kwargs(**synthesis):
    return {"class_name": "training.networks.Generator", "z_dim": 8, "c_dim": 0, "w_dim": 8,
            "img_resolution": 16, "img_channels": 3, "mapping_kwargs": {"num_layers": 2},
            "synthesis_kwargs": {"channel_base": 128, "channel_max": 8, **synthesis}}


def _init(module, *args, **kwargs):
    # Jitted: one program instead of hundreds of one-op compiles (same values).
    return jax.jit(lambda: module.init({"params": jax.random.key(0),
                                        "noise": jax.random.key(1)}, *args, **kwargs))()


def _apply(module, variables, *args, **kwargs):
    # Jitted as `_init` (XLA's fusion moves float32 results by ~1e-7; the tests bound far more).
    return jax.jit(lambda v, *a: module.apply(v, *a, **kwargs))(variables, *args)


@pytest.mark.parametrize("architecture", ["orig", "skip", "resnet"])
def test_generator_architectures_build_the_official_variables(architecture):
    G = build_generator("training.networks.Generator", _g_kwargs(architecture=architecture))
    variables = _init(G, jnp.zeros([2, 8]), noise_mode="random")
    blocks = variables["params"]["synthesis"]
    assert set(blocks) == {"b4", "b8", "b16"}
    assert ("torgb" in blocks["b8"]) == (architecture == "skip")
    assert ("skip" in blocks["b8"]) == (architecture == "resnet")
    assert "torgb" in blocks["b16"]
    assert blocks["b4"]["const"].shape == (4, 4, 8)
    assert variables["buffers"]["synthesis"]["b16"]["conv0"]["noise_const"].shape == (16, 16)
    img = _apply(G, variables, jnp.ones([2, 8]), noise_mode="random",
                 rngs={"noise": jax.random.key(2)})
    assert img.shape == (2, 16, 16, 3) and img.dtype == jnp.float32


@pytest.mark.parametrize("architecture", ["orig", "skip", "resnet"])
def test_conditional_discriminator_and_freeze_d(architecture):
    D = build_discriminator("training.networks.Discriminator", {
        "c_dim": 4, "img_resolution": 16, "img_channels": 3, "architecture": architecture,
        "channel_base": 128, "channel_max": 8, "block_kwargs": {"freeze_layers": 2},
        "mapping_kwargs": {"num_layers": 1}, "epilogue_kwargs": {"mbstd_group_size": 2}})
    variables = _init(D, jnp.zeros([4, 16, 16, 3]), jnp.zeros([4, 4]))
    assert set(variables["params"]["mapping"]) == {"embed", "fc0"}
    # Freeze-D: the first two layers (b16.fromrgb, b16.conv0) keep their weights as buffers.
    frozen = variables["buffers"]["b16"]
    assert set(frozen) == {"fromrgb", "conv0"}
    assert "conv1" in variables["params"]["b16"]
    logits = _apply(D, variables, jnp.ones([4, 16, 16, 3]), jnp.eye(4))
    assert logits.shape == (4, 1)


def test_reduced_precision_blocks_stay_close_to_float32():
    kwargs = _g_kwargs(num_fp16_res=2, conv_clamp=256)
    G32 = build_generator(kwargs["class_name"], kwargs)
    kwargs["synthesis_kwargs"]["reduced_dtype"] = jnp.bfloat16
    G16 = build_generator(kwargs["class_name"], kwargs)
    variables = _init(G32, jnp.zeros([2, 8]), noise_mode="const")
    z = jax.random.normal(jax.random.key(3), [2, 8])
    img32 = _apply(G32, variables, z, noise_mode="const")
    img16 = _apply(G16, variables, z, noise_mode="const")
    assert img16.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(img16), np.asarray(img32), atol=0.1)
    forced = _apply(G16, variables, z, noise_mode="const", force_fp32=True)
    np.testing.assert_allclose(np.asarray(forced), np.asarray(img32), atol=1e-5)


def test_truncation_needs_w_avg_and_mapping_checks_shapes():
    m = stylegan2.MappingNetwork(z_dim=4, c_dim=0, w_dim=4, num_ws=None, w_avg_beta=None)
    variables = m.init(jax.random.key(0), jnp.zeros([1, 4]), None)
    with pytest.raises(ValueError, match="truncation needs w_avg"):
        m.apply(variables, jnp.zeros([1, 4]), None, truncation_psi=0.5)
    with pytest.raises(ValueError, match="z must have shape"):
        m.apply(variables, jnp.zeros([1, 5]), None)


def test_registry_rejects_unknown_classes_and_arguments():
    with pytest.raises(ValueError, match="unsupported generator class"):
        build_generator("training.networks.Nope", {})
    with pytest.raises(ValueError, match="unexpected arguments"):
        build_generator("training.networks.Generator", _g_kwargs(not_an_arg=1))
    with pytest.raises(ValueError, match="bad constructor arguments"):
        build_discriminator("training.networks.Discriminator", {"img_resolution": 16})


def test_stylegan3_repository_defaults_for_stylegan2_networks():
    kwargs = _g_kwargs()
    flat = {k: v for k, v in kwargs.items() if k != "synthesis_kwargs"}
    flat.update(kwargs["synthesis_kwargs"], class_name="training.networks_stylegan2.Generator")
    G = build_generator(flat["class_name"], flat)
    assert G.synthesis_kwargs["num_fp16_res"] == 4 and G.synthesis_kwargs["conv_clamp"] == 256
    assert G.mapping_kwargs["w_avg_beta"] == 0.998
