"""Official TensorFlow snapshots loaded with `sample.load` render as the official code does.

- TF StyleGAN2 files (family 'tf_stylegan2', `tests/data/reference_tf_stylegan2/README.md`):
  Gs (key 'G_ema') and G of the pickle, and its D converted, against the official TF outputs
  (`io/...`) and against stylegan2-ada-pytorch's `legacy.py` conversion run by the official
  PyTorch networks (`legacy/...`).
- StyleGAN v1 files (family 'stylegan1', `tests/data/reference_stylegan1/README.md`): the
  pickled `(G, D, Gs)` through `sample.load` (mapping, truncation, synthesis) and its D.

Tolerance `|ours - ref| <= 1e-4·max(1, max|ref|)`; files from `FLAXGAN_REFERENCE_DIR` when set.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flaxgan import convert, sample
from flaxgan.convert import tf_snapshot, tf_stylegan1
from flaxgan.models import build_discriminator
from tests.conftest import reference_files
from tests.flaxgan.models import reference as ref

SG2_FILES = [p for p in reference_files("tf_stylegan2") if p.with_suffix(".pkl").is_file()]
V1_FILES = [p for p in reference_files("stylegan1") if p.with_suffix(".pkl").is_file()]


def _close_to_references(got, arrays, key: str) -> None:
    """`got` against the TF output `io/<key>` and, when recorded, `legacy/<key>`."""
    ref.assert_close(got, arrays[f"io/{key}"], f"io/{key}")
    if f"legacy/{key}" in arrays:
        ref.assert_close(got, arrays[f"legacy/{key}"], f"legacy/{key}")


def _render(g: sample.LoadedGenerator, ws: np.ndarray) -> np.ndarray:
    return ref.nchw(sample.synthesize(g, ws, noise_mode="const"))


@functools.partial(jax.jit, static_argnums=0)
def _scores(D, variables, images, labels):
    return D.apply(variables, images, labels)


# ------------------------------------------------------------------------ TF StyleGAN2


@pytest.fixture(scope="module", params=SG2_FILES, ids=[p.stem for p in SG2_FILES])
def sg2(request):
    arrays, meta = ref.load(request.param)
    pkl = request.param.with_suffix(".pkl")
    return arrays, meta, pkl, sample.load(pkl)


@pytest.mark.skipif(not SG2_FILES, reason="no TF StyleGAN2 reference files")
def test_stylegan2_gs_mapping_truncation_and_images(sg2):
    arrays, meta, _, g = sg2
    z = arrays["io/z"]
    ws = sample.mapping(g, z)
    _close_to_references(ws, arrays, "dlatents")
    _close_to_references(_render(g, arrays["io/dlatents"]), arrays, "img_synthesis")
    _close_to_references(_render(g, ws), arrays, "img_psi1.0")
    for tag, spec in meta["truncation"].items():
        ws = sample.mapping(g, z, truncation_psi=spec["psi"],
                            truncation_cutoff=spec["cutoff"])
        _close_to_references(ws, arrays, f"dlatents_{tag}")
        _close_to_references(_render(g, ws), arrays, f"img_{tag}")


@pytest.mark.skipif(not SG2_FILES, reason="no TF StyleGAN2 reference files")
def test_stylegan2_training_generator(sg2):
    arrays, _, pkl, _ = sg2
    g = sample.load(pkl, key="G")
    _close_to_references(_render(g, sample.mapping(g, arrays["io/z"])), arrays, "G_img_psi1.0")


@pytest.mark.skipif(not SG2_FILES, reason="no TF StyleGAN2 reference files")
def test_stylegan2_records_hold_the_official_variables(sg2):
    arrays, meta, pkl, _ = sg2
    records = tf_snapshot.load_tf_snapshot(pkl)
    assert records["G_ema"].class_name == meta["G_kwargs"]["class_name"]
    assert records["G_ema"].static_kwargs == {k: v for k, v in meta["G_kwargs"].items()
                                              if k != "class_name"}
    for key, net in (("G_ema", "Gs"), ("D", "D")):
        want = {k.split("/", 2)[2]: v for k, v in arrays.items() if k.startswith(f"vars/{net}/")}
        got = records[key].all_variables()
        assert sorted(got) == sorted(want)
        for name, value in want.items():
            np.testing.assert_array_equal(got[name], value, err_msg=name)


@pytest.mark.skipif(not SG2_FILES, reason="no TF StyleGAN2 reference files")
def test_stylegan2_kwargs_as_legacy_converts_them(sg2):
    arrays, meta, pkl, g = sg2
    records = tf_snapshot.load_tf_snapshot(pkl)
    for key, want in (("G_ema", meta["legacy"]["G_kwargs"]), ("D", meta["legacy"]["D_kwargs"])):
        got = {k: v for k, v in tf_snapshot.stylegan2_kwargs(records[key]).items()
               if k != "class_name"}
        if key == "D":  # TF's group of 4 where legacy.py passes None (the whole batch).
            want = {**want, "epilogue_kwargs": {**want["epilogue_kwargs"],
                                                "mbstd_group_size": got["epilogue_kwargs"][
                                                    "mbstd_group_size"]}}
            want["mapping_kwargs"] = {}  # Unconditional: no label mapping.
            got["mapping_kwargs"] = {}
        assert got == want, key


@pytest.mark.skipif(not SG2_FILES, reason="no TF StyleGAN2 reference files")
def test_stylegan2_discriminator(sg2):
    arrays, _, pkl, _ = sg2
    record = tf_snapshot.load_tf_snapshot(pkl)["D"]
    kwargs = tf_snapshot.stylegan2_kwargs(record)
    D = build_discriminator(kwargs["class_name"], kwargs)
    parameters, buffers = tf_snapshot.stylegan2_state_dict(record)
    real = ref.nhwc(arrays["io/d_real_img"])
    c = jnp.zeros([real.shape[0], 0])
    variables = convert.to_flax(parameters, buffers)
    convert.check_against(ref.init_shapes(D, real, c), variables, source=str(pkl))
    for tag, images in (("real", real), ("fake", ref.nhwc(arrays["io/img_psi1.0"]))):
        _close_to_references(_scores(D, variables, images, c), arrays, f"d_scores_{tag}")


# ------------------------------------------------------------------------ StyleGAN v1


@pytest.mark.skipif(not V1_FILES, reason="no StyleGAN v1 reference files")
@pytest.mark.parametrize("npz", V1_FILES, ids=[p.stem for p in V1_FILES])
def test_stylegan1_snapshot_through_sample_load(npz):
    """The pickle holds `dlatent_avg_before` and lod 0, as every non-training output used."""
    arrays, meta = ref.load(npz)
    g = sample.load(npz.with_suffix(".pkl"))
    assert g.is_stylegan1 and g.kwargs == meta["G_kwargs"]
    z, c = arrays["io/z"], arrays.get("io/labels")
    np.testing.assert_array_equal(g.w_avg, arrays["io/dlatent_avg_before"])
    ws = sample.mapping(g, z, c)
    ref.assert_close(ws, arrays["io/dlatents"], "dlatents")
    ref.assert_close(_render(g, arrays["io/dlatents"]), arrays["io/img_synthesis"],
                     "img_synthesis")
    ref.assert_close(_render(g, ws), arrays["io/img_psi1.0"], "img_psi1.0")
    for tag, spec in meta["truncation"].items():
        ws = sample.mapping(g, z, c, truncation_psi=spec["psi"],
                            truncation_cutoff=spec["cutoff"])
        ref.assert_close(ws, arrays[f"io/dlatents_{tag}"], f"dlatents_{tag}")
        ref.assert_close(_render(g, ws), arrays[f"io/img_{tag}"], f"img_{tag}")


@pytest.mark.skipif(not V1_FILES, reason="no StyleGAN v1 reference files")
@pytest.mark.parametrize("npz", V1_FILES, ids=[p.stem for p in V1_FILES])
def test_stylegan1_snapshot_discriminator(npz):
    arrays, meta = ref.load(npz)
    record = tf_snapshot.load_tf_snapshot(npz.with_suffix(".pkl"))["D"]
    assert record.class_name == meta["D_kwargs"]["class_name"]
    D = build_discriminator(record.class_name, record.static_kwargs)
    real = ref.nhwc(arrays["io/d_real_img"])
    labels = jnp.asarray(arrays.get("io/labels", np.zeros([real.shape[0], 0], np.float32)))
    target = ref.init_shapes(D, real, labels)
    variables = tf_stylegan1.to_flax_checked(record.all_variables(), target, "D")
    scores = _scores(D, variables, real, labels)
    ref.assert_close(scores, arrays["io/d_scores_real"], "d_scores_real")
