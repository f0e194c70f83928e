"""Parity of the StyleGAN2-ADA networks with the official code, over every reference file.

Networks are built from the kwargs in each file's json (never from its name), so reference
files of other resolutions, architectures and conditional models are checked as they are.
"""

from __future__ import annotations

import re

import jax.numpy as jnp
import numpy as np
import pytest

from tests.conftest import reference_files
from tests.flaxgan.models import reference as ref

FILES = reference_files("stylegan2")
ids = [p.stem for p in FILES]
pytestmark = pytest.mark.skipif(not FILES, reason="no StyleGAN2 reference files")


def _truncations(arrays, meta):
    """(tag, psi, cutoff) for every recorded io/ws_psi<tag>."""
    table = meta.get("truncation", {})
    out = []
    for key in sorted(k for k in arrays if re.fullmatch(r"io/ws_psi[^_]+(_cutoff\d+)?", k)):
        tag = key[len("io/ws_psi"):]
        spec = table.get(key, {"psi": float(tag.split("_")[0]), "cutoff": None})
        out.append((tag, spec["psi"], spec["cutoff"]))
    return out


@pytest.fixture(scope="module", params=FILES, ids=ids)
def case(request):
    arrays, meta = ref.load(request.param)
    G, g_vars = ref.generator(arrays, meta)
    return arrays, meta, G, g_vars, request.param


def test_mapping_at_every_truncation(case):
    arrays, meta, G, g_vars, _ = case
    # Truncation is centred on the w_avg in effect when the vectors were recorded.
    g_vars = ref.with_w_avg(g_vars, arrays.get("io/w_avg_before", arrays["state/G.mapping.w_avg"]))
    c = ref.labels(arrays, meta)
    for tag, psi, cutoff in _truncations(arrays, meta):
        ws = ref.mapping(G, g_vars, arrays["io/z"], c, psi, cutoff)
        ref.assert_close(ws, arrays[f"io/ws_psi{tag}"], f"ws psi{tag}")


def test_synthesis_images_every_variant(case):
    arrays, meta, G, g_vars, _ = case
    checked = 0
    for key in sorted(k for k in arrays if k.startswith("io/img_psi")):
        tag = key[len("io/img_psi"):]
        base, _, variant = tag.partition("_")
        if variant.startswith("cutoff"):
            base, variant = tag, ""
        if variant == "noise_random":
            continue  # torch RNG noise: informative only
        ws = jnp.asarray(arrays[f"io/ws_psi{base}"])
        module, variables, kwargs = G, g_vars, {"noise_mode": "const"}
        if variant == "noise_none":
            kwargs["noise_mode"] = "none"
        elif variant == "nonfused":
            kwargs["fused_modconv"] = False
        elif m := re.fullmatch(r"conv_clamp([\d.]+)", variant):
            module, variables = ref.generator(arrays, meta, conv_clamp=float(m.group(1)))
        elif variant:
            pytest.fail(f"unknown image variant {key}")
        img, _ = ref.synthesize_with_layers(module, variables, ws, **kwargs)
        ref.assert_close(ref.nchw(img), arrays[key], key)
        checked += 1
    assert checked >= 3


@pytest.mark.parametrize("fused", [True, False])
def test_synthesis_intermediates(case, fused):
    arrays, meta, G, g_vars, _ = case
    # Recorded for sample 0: row 0 of the whole batch (non-fused: the "nonfused" image
    # variant's program; fused: explicit, as the default fuses only a batch of one).
    _, blocks = ref.synthesize_with_layers(G, g_vars, arrays["io/ws_psi1.0"],
                                           noise_mode="const", fused_modconv=fused)
    keys = [k for k in arrays if k.startswith("inter/G.synthesis.")]
    assert keys
    for key in keys:
        block, index = key.split(".")[-2:]
        x, img = blocks[block]["__call__"][0]
        ref.assert_close(ref.nchw((x, img)[int(index)])[:1], arrays[key], key)


def test_style_mixing(case):
    arrays, meta, G, g_vars, _ = case
    ws = arrays["io/ws_psi1.0"]
    cutoff = int(arrays["io/mix_cutoff"])
    mixed = ws[0:2].copy()
    mixed[:, cutoff:] = ws[2:4, cutoff:]
    ref.assert_close(mixed, arrays["io/ws_mix"], "ws_mix")
    # Rendered beside ws[2:]: the batch of the other tests' program (one compile less).
    img = ref.synthesize_with_layers(G, g_vars, np.concatenate([mixed, ws[2:]]),
                                     noise_mode="const")[0][:2]
    ref.assert_close(ref.nchw(img), arrays["io/img_mix"], "img_mix")


def test_w_avg_update(case):
    arrays, meta, G, g_vars, _ = case
    g_vars = ref.with_w_avg(g_vars, arrays["io/w_avg_before"])
    _, updated = ref.apply(G, g_vars, jnp.asarray(arrays["io/z"]), ref.labels(arrays, meta),
                           update_emas=True, method="map", mutable="buffers")
    ref.assert_close(updated["buffers"]["mapping"]["w_avg"], arrays["io/w_avg_after"], "w_avg")


def test_discriminator_logits_and_intermediates(case):
    arrays, meta, *_ = case
    ref.check_discriminator(arrays, meta)


def test_pickle_snapshot_through_sample_load(case):
    arrays, meta, _, _, npz_path = case
    ref.check_pickle(arrays, meta, npz_path.with_suffix(".pkl"))
