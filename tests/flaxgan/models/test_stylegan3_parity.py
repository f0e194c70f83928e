"""Parity of the StyleGAN3 generator (configs T and R) with the official code.

Parametrized over every StyleGAN3 reference file; networks are built from the json kwargs.
Synthesis runs jitted (`ref.apply`), where eager dispatch of the filtered-lrelu layers took 4x
the compile time on every call, and through one program (`_render`) for every image and layer
test of a file: compiling a StyleGAN3 synthesis network is most of this file's time.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from flaxgan import sample
from flaxgan.models import stylegan3
from tests.conftest import reference_files
from tests.flaxgan.models import reference as ref

FILES = reference_files("stylegan3")
pytestmark = pytest.mark.skipif(not FILES, reason="no StyleGAN3 reference files")


@pytest.fixture(scope="module", params=FILES, ids=[p.stem for p in FILES])
def case(request):
    arrays, meta = ref.load(request.param)
    G, g_vars = ref.generator(arrays, meta)
    w_avg = arrays.get("io/ema_before/mapping.w_avg", arrays["state/G.mapping.w_avg"])
    return arrays, meta, G, ref.with_w_avg(g_vars, w_avg), request.param


def _render(arrays, G, g_vars, ws, transform=None):
    """`(images, layer outputs)` of `ws` through `transform` (default: the stored one, which
    the module also uses without one): the traced transform and the captured layers make the
    image, transformed-grid and intermediate tests one program per file."""
    if transform is None:
        transform = arrays["state/G.synthesis.input.transform"]
    return ref.synthesize_with_layers(G, g_vars, ws, transform=np.asarray(transform))


def _truncations(meta):
    yield "1.0", 1.0, None
    for key, spec in meta.get("truncation", {"io/ws_psi0.7": {"psi": 0.7, "cutoff": None},
                                            "io/ws_psi0.5_cutoff2": {"psi": 0.5, "cutoff": 2}
                                            }).items():
        yield key[len("io/ws_psi"):], spec["psi"], spec["cutoff"]


def test_mapping_and_images_at_every_truncation(case):
    arrays, meta, G, g_vars, _ = case
    c = ref.labels(arrays, meta)
    for tag, psi, cutoff in _truncations(meta):
        if f"io/ws_psi{tag}" not in arrays:
            continue
        ws = ref.mapping(G, g_vars, arrays["io/z"], c, psi, cutoff)
        ref.assert_close(ws, arrays[f"io/ws_psi{tag}"], f"ws psi{tag}")
        img, _ = _render(arrays, G, g_vars, arrays[f"io/ws_psi{tag}"])
        ref.assert_close(ref.nchw(img), arrays[f"io/img_psi{tag}"], f"img psi{tag}")


@pytest.mark.parametrize("fused", [True, False])
def test_fused_and_nonfused_modulated_convs_agree_with_official(case, fused):
    arrays, meta, G, g_vars, _ = case
    if fused:  # the default
        img, _ = _render(arrays, G, g_vars, arrays["io/ws_psi1.0"])
    else:
        img = ref.apply(G, g_vars, jnp.asarray(arrays["io/ws_psi1.0"]), method="synthesize",
                        fused_modconv=False)
    ref.assert_close(ref.nchw(img), arrays["io/img_psi1.0"], f"img fused={fused}")


def test_transformed_input_grid(case):
    arrays, meta, G, g_vars, _ = case
    if "io/transform" not in arrays:
        pytest.skip("no transformed image recorded")
    img, _ = _render(arrays, G, g_vars, arrays["io/ws_psi0.7"], arrays["io/transform"])
    ref.assert_close(ref.nchw(img), arrays["io/img_psi0.7_transformed"], "transformed")
    # The recorded transform is the inverse of the official make_transform((0.1, -0.05), 10°).
    np.testing.assert_allclose(
        np.linalg.inv(stylegan3.make_transform((0.1, -0.05), 10.0)), arrays["io/transform"],
        atol=1e-6)


def test_layer_intermediates(case):
    arrays, meta, G, g_vars, _ = case
    # Recorded for sample 0: the whole batch's program (no layer mixes batch rows), row 0.
    _, layers = _render(arrays, G, g_vars, arrays["io/ws_psi1.0"])
    names = meta.get("layer_names") or [k.split(".")[-1] for k in arrays
                                        if k.startswith("inter/G.synthesis.L")]
    assert sorted(n for n in layers if n != "__call__") == sorted(["input", *names])
    for name in ["input", *names]:
        ref.assert_close(ref.nchw(layers[name]["__call__"][0])[:1],
                         arrays[f"inter/G.synthesis.{name}"], name)
    if "inter/G.mapping" in arrays:
        ws = ref.mapping(G, g_vars, arrays["io/z"], ref.labels(arrays, meta), 1.0)
        ref.assert_close(ws[:1], arrays["inter/G.mapping"], "mapping")  # the batch's row 0


def test_designed_filters_equal_the_official_buffers(case):
    arrays, meta, G, _, _ = case
    module = G.bind({})  # setup() builds the synthesis network from the kwargs
    _, layers = module.synthesis.schedule()
    checked = 0
    for spec in layers:
        for name, f in (("up_filter", spec.up_filter), ("down_filter", spec.down_filter)):
            key = f"state/G.synthesis.{spec.name}.{name}"
            if f is None:
                assert key not in arrays
                continue
            # float64 designs rounded to float32 on both sides (bit-equal on the files here);
            # 1e-7 is ~3 ulp of the largest tap (0.43), room for a libm that rounds a float64
            # sin or Bessel value differently; a wrong cutoff, width or beta is >1e-4.
            np.testing.assert_allclose(f, arrays[key], rtol=0, atol=1e-7)
            checked += 1
    assert checked


def test_style_mixing(case):
    arrays, meta, G, g_vars, _ = case
    ws = arrays["io/ws_psi1.0"]
    mixed = ws[0:2].copy()
    mixed[:, int(arrays["io/mix_cutoff"]):] = ws[2:4, int(arrays["io/mix_cutoff"]):]
    ref.assert_close(mixed, arrays["io/ws_mix"], "ws_mix")
    # Rendered beside ws[2:]: the batch of the other tests' program (one compile less).
    img = _render(arrays, G, g_vars, np.concatenate([mixed, ws[2:]]))[0][:2]
    ref.assert_close(ref.nchw(img), arrays["io/img_mix"], "img_mix")


def test_ema_update_of_w_avg_and_magnitudes(case):
    arrays, meta, G, g_vars, _ = case
    before = {k[len("io/ema_before/"):]: v for k, v in arrays.items()
              if k.startswith("io/ema_before/")}
    buffers = {**g_vars["buffers"]}
    for name, value in before.items():
        *path, leaf = name.split(".")
        node = buffers
        for p in path:
            node[p] = dict(node[p])
            node = node[p]
        node[leaf] = jnp.asarray(value)
    _, updated = ref.apply(G, {**g_vars, "buffers": buffers}, jnp.asarray(arrays["io/z"]),
                           ref.labels(arrays, meta), update_emas=True, mutable="buffers")
    for name in before:
        node = updated["buffers"]
        for p in name.split("."):
            node = node[p]
        ref.assert_close(node, arrays[f"io/ema_after/{name}"], name)


def test_discriminator_logits(case):
    arrays, meta, *_ = case
    ref.check_discriminator(arrays, meta)


def test_pickle_snapshot_through_sample_load(case):
    arrays, meta, _, _, npz_path = case
    # The images through the stored input transform given explicitly (what the module uses
    # without one): the same program as the transformed render below, one compile less.
    stored = {"transform": arrays["state/G.synthesis.input.transform"]} if (
        "io/transform" in arrays) else {}
    ref.check_pickle(arrays, meta, npz_path.with_suffix(".pkl"), **stored)
    if "io/transform" in arrays and npz_path.with_suffix(".pkl").exists():
        g = sample.load(npz_path.with_suffix(".pkl"))
        assert not g.has_noise
        img = sample.synthesize(g, arrays["io/ws_psi0.7"], transform=arrays["io/transform"])
        ref.assert_close(ref.nchw(img), arrays["io/img_psi0.7_transformed"], "pkl transformed")
        with pytest.raises(ValueError, match="no noise inputs"):
            sample.synthesize(g, arrays["io/ws_psi0.7"], noise_layers="coarse")
