"""Loading official reference vectors (../shared/reference/README.md) into flaxgan networks."""

from __future__ import annotations

import functools
import json
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flaxgan import convert, sample
from flaxgan.models import build_discriminator, build_generator


def assert_close(got, want, what: str = "") -> float:
    """`|got - want| <= 1e-4 * max(1, max|want|)`; returns the relative error for reporting."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    err = float(np.max(np.abs(got - want))) / max(1.0, float(np.max(np.abs(want))))
    assert err <= 1e-4, f"{what}: relative error {err:.3g} > 1e-4"
    return err


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _jitted_apply(module, method, static, variables, traced, *args):
    return module.apply(variables, *args, method=method, **dict(static), **traced)


def apply(module, variables, *args, method: str | None = None, **kwargs):
    """`module.apply(variables, *args, method=method, **kwargs)`, jitted.

    Parity tests call the same networks with the same shapes many times; compiled once per
    (module, method, Python-valued options, shapes) in this process, they run in a fraction of
    eager dispatch's time (StyleGAN3 synthesis is thousands of small ops). Keyword values that
    are arrays are traced; the rest (flags, modes, Python floats such as ψ) are static.
    """
    traced = {k: v for k, v in kwargs.items() if isinstance(v, (jax.Array, np.ndarray))}
    static = tuple(sorted((k, v) for k, v in kwargs.items() if k not in traced))
    return _jitted_apply(module, method, static, variables, traced, *args)


def synthesize_with_layers(module, variables, ws, **kwargs):
    """`(images, layer outputs)` of `module.synthesize(ws, **kwargs)`, jitted.

    The parity tests of a file read images and layer outputs from this one program (per option
    set) rather than compiling a second network that captures the layers of one sample: no
    synthesis layer mixes batch rows, so row 0 of a batch is the sample-0 recording.
    """
    img, state = apply(module, variables, jnp.asarray(ws), method="synthesize",
                       capture_intermediates=True, **kwargs)
    return img, state["intermediates"]["synthesis"]


def mapping(module, variables, z, c, psi: float, cutoff: int | None = None) -> np.ndarray:
    """`module.map(z, c, psi, cutoff)`, jitted with ψ traced: one program per cutoff (the
    mapping is exact at a traced ψ = 1)."""
    return np.asarray(apply(module, variables, jnp.asarray(z), c,
                            truncation_psi=np.asarray(psi, np.float32),
                            truncation_cutoff=cutoff, method="map"))


def nchw(x) -> np.ndarray:
    return np.asarray(x).transpose(0, 3, 1, 2)


def nhwc(x) -> jnp.ndarray:
    return jnp.asarray(np.asarray(x).transpose(0, 2, 3, 1))


@functools.lru_cache(maxsize=4)
def load(npz_path: pathlib.Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    with np.load(npz_path) as f:
        arrays = {k: f[k] for k in f.files}
    return arrays, json.loads(npz_path.with_suffix(".json").read_text())


def state_dict(arrays: dict[str, np.ndarray], net: str) -> dict[str, np.ndarray]:
    prefix = f"state/{net}."
    return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}


def init_shapes(module, *args, **kwargs):
    return jax.eval_shape(lambda: module.init(
        {"params": jax.random.key(0), "noise": jax.random.key(1)}, *args, **kwargs))


def variables_from_state(state: dict[str, np.ndarray], target) -> dict[str, Any]:
    """Official state_dict -> variables, deciding parameter vs buffer by the target tree."""
    buffer_names = {
        ".".join(str(k.key) for k in path)
        for path, _ in jax.tree_util.tree_leaves_with_path(dict(target).get("buffers", {}))
    }
    parameters = {k: v for k, v in state.items() if k not in buffer_names}
    buffers = {k: v for k, v in state.items() if k in buffer_names}
    variables = convert.to_flax(parameters, buffers)
    convert.check_against(target, variables, source="reference")
    return jax.tree.map(jnp.asarray, variables)


def generator(arrays, meta, **synthesis_overrides):
    kwargs = dict(meta["G_kwargs"])
    if synthesis_overrides:
        key = "synthesis_kwargs" if "synthesis_kwargs" in kwargs else None
        if key:
            kwargs[key] = {**kwargs[key], **synthesis_overrides}
        else:
            kwargs.update(synthesis_overrides)
    module = build_generator(kwargs["class_name"], kwargs)
    c = labels(arrays, meta)
    target = init_shapes(module, jnp.zeros([1, module.z_dim]), c[:1], noise_mode="const")
    return module, variables_from_state(state_dict(arrays, "G"), target)


def discriminator(arrays, meta):
    kwargs = meta["D_kwargs"]
    module = build_discriminator(kwargs["class_name"], kwargs)
    res, ch = kwargs["img_resolution"], kwargs["img_channels"]
    n = arrays["io/d_real_img"].shape[0]
    target = init_shapes(module, jnp.zeros([n, res, res, ch]), labels(arrays, meta))
    return module, variables_from_state(state_dict(arrays, "D"), target)


def labels(arrays, meta) -> jnp.ndarray:
    n = arrays["io/z"].shape[0]
    c = arrays.get("io/c")
    return jnp.asarray(c) if c is not None else jnp.zeros([n, meta["G_kwargs"]["c_dim"]])


def with_w_avg(variables, w_avg: np.ndarray):
    """Variables with the mapping's `w_avg` replaced (the truncation centre)."""
    buffers = jax.tree.map(lambda x: x, dict(variables["buffers"]))
    buffers["mapping"] = {**buffers["mapping"], "w_avg": jnp.asarray(w_avg)}
    return {**variables, "buffers": buffers}


def check_discriminator(arrays, meta) -> None:
    """D logits on fakes and reals, and every recorded D intermediate."""
    D, d_vars = discriminator(arrays, meta)
    c = labels(arrays, meta)
    fake = apply(D, d_vars, nhwc(arrays["io/img_psi1.0"]), c)
    assert_close(fake, arrays["io/d_fake_logits"], "d_fake_logits")
    real = apply(D, d_vars, nhwc(arrays["io/d_real_img"]), c)
    assert_close(real, arrays["io/d_real_logits"], "d_real_logits")

    # Intermediates are recorded for sample 0 alone (minibatch-stddev group of one).
    _, state = apply(D, d_vars, nhwc(arrays["io/img_psi1.0"][:1]), c[:1],
                     capture_intermediates=True)
    inter = state["intermediates"]
    for key in (k for k in arrays if k.startswith("inter/D.")):
        name = key[len("inter/D."):]
        if name in ("b4", "mapping"):
            got = inter[name]["__call__"][0]
        else:
            block, index = name.split(".")
            got = nchw(inter[block]["__call__"][0][int(index)])
        assert_close(got, arrays[key], key)


def check_pickle(arrays, meta, pkl: pathlib.Path, **synthesis_kwargs) -> None:
    """`sample.load` of the snapshot beside a reference file reproduces its ws and images
    (`synthesis_kwargs` go to `sample.synthesize`)."""
    if not pkl.exists():
        pytest.skip(f"no {pkl.name} beside the reference file")
    for key in ("G", "G_ema"):
        g = sample.load(pkl, key=key)
        z = arrays["io/z"]
        c = np.asarray(labels(arrays, meta)) if g.c_dim else None
        ws = sample.mapping(g, z, c)
        assert_close(ws, arrays["io/ws_psi1.0"], f"{key} ws")
        # Truncation about the snapshot's own w_avg.
        w_avg = g.w_avg
        want = w_avg + 0.7 * (arrays["io/ws_psi1.0"] - w_avg)
        assert_close(sample.mapping(g, z, c, truncation_psi=0.7), want, f"{key} ws psi0.7")
        img = sample.synthesize(g, arrays["io/ws_psi1.0"], noise_mode="const",
                                **synthesis_kwargs)
        assert_close(nchw(img), arrays["io/img_psi1.0"], f"{key} image")
