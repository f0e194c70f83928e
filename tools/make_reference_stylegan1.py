r"""Records StyleGAN (v1) reference vectors by running NVIDIA's official TensorFlow code on CPU.

    git clone https://github.com/NVlabs/stylegan third_party/stylegan
    python3 -m venv /tmp/tfvenv && /tmp/tfvenv/bin/pip install tensorflow==2.21.0 numpy pillow
    /tmp/tfvenv/bin/python tools/make_reference_stylegan1.py \
        --official_repo=third_party/stylegan --out_dir=tests/data/reference_stylegan1

Runs in its own environment (TensorFlow is no dependency of flaxgan; this script imports
nothing from flaxgan). The official code (commit 1e0d5c7, written for TF 1.x) runs under TF 2's
`tf.compat.v1` graph mode from a temporary copy of `--official_repo` with the few textual
`PATCHES` below applied (each must match exactly once); `--official_repo` itself is untouched.

For every preset (`--list`), writes `NAME.npz` (np.savez_compressed), `NAME.json` and
`NAME.pkl`; the format is described in `tests/data/reference_stylegan1/README.md`. Recipe, with
the preset's `seed`: TF graph seed `seed`; G and D built as official training
builds them (`tflib.Network('G', func_name=..., **kwargs)`); then a `RandomState(seed + 1)`
perturbs every trainable variable in name order (see `_perturb`), sets `dlatent_avg`
`0.5·randn` and draws the "real" images; the snapshot pickle is written before anything runs.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import pickle
import shutil
import subprocess
import sys
import tempfile
from typing import Any

import numpy as np

G_CLASS = "training.networks_stylegan.G_style"
D_CLASS = "training.networks_stylegan.D_basic"
SEEDS = (0, 1, 2, 3)
LODS = (1.5, 1.0)
TRUNCATIONS = ((0.7, 8), (0.5, 3))  # (psi, cutoff); 0.7 / 8 are the official defaults.
PLACEHOLDER_SRC = "# source code of the defining module omitted from this reference snapshot\n"
# (file, official line, replacement): what TF 2 needs, nothing more.
PATCHES = (
    *((f, "import tensorflow as tf", "import tensorflow.compat.v1 as tf; tf.disable_v2_behavior()")
      for f in ("dnnlib/tflib/tfutil.py", "dnnlib/tflib/network.py", "dnnlib/tflib/optimizer.py",
                "dnnlib/tflib/autosummary.py", "training/networks_stylegan.py")),
    # TensorBoard is only used by autosummary's training-time layouts.
    ("dnnlib/tflib/autosummary.py", "from tensorboard import summary as summary_lib",
     "summary_lib = None"),
    ("dnnlib/tflib/autosummary.py", "from tensorboard.plugins.custom_scalar import layout_pb2",
     "layout_pb2 = None"),
    # Current protobuf refuses a bool as a dimension (`use_noise` is True here).
    ("training/networks_stylegan.py",
     "            shape = [1, use_noise, 2**res, 2**res]",
     "            shape = [1, int(use_noise), 2**res, 2**res]"),
)

# name -> seed, batch, G kwargs, D kwargs (passed to the official build functions as they are).
PRESETS: dict[str, dict[str, Any]] = {
    # Defaults throughout (structure 'auto': 'linear' variables, 'recursive' evaluation),
    # 8 mapping layers, 8 synthesis layers.
    "sg1_32": dict(
        seed=101, batch=4,
        G=dict(num_channels=3, resolution=32, label_size=0, latent_size=32, dlatent_size=32,
               mapping_fmaps=32, fmap_base=128, fmap_max=16),
        D=dict(num_channels=3, resolution=32, label_size=0, fmap_base=128, fmap_max=16)),
    # Conditional, fused up/down convolutions, 'fixed' structure, relu in G's mapping and in D.
    "sg1_16_cond_fused_fixed": dict(
        seed=202, batch=4,
        G=dict(num_channels=3, resolution=16, label_size=3, latent_size=16, dlatent_size=24,
               mapping_layers=3, mapping_fmaps=20, mapping_nonlinearity="relu", fmap_base=128,
               fmap_max=16, fused_scale=True, structure="fixed"),
        D=dict(num_channels=3, resolution=16, label_size=3, fmap_base=128, fmap_max=16,
               fused_scale=True, structure="fixed", nonlinearity="relu", mbstd_group_size=2)),
    # ProGAN-like G switches (dense input, pixel norm, no instance norm, no blur), 'linear',
    # one channel; D with an even blur filter, two stddev features and fmap_decay 0.5.
    "sg1_16_gray_linear_variants": dict(
        seed=303, batch=4,
        G=dict(num_channels=1, resolution=16, label_size=0, latent_size=16, dlatent_size=16,
               mapping_layers=2, mapping_fmaps=16, mapping_lrmul=0.1, normalize_latents=False,
               fmap_base=64, fmap_max=12, fmap_decay=0.5, const_input_layer=False,
               use_pixel_norm=True, use_instance_norm=False, blur_filter=None,
               structure="linear"),
        D=dict(num_channels=1, resolution=16, label_size=0, fmap_base=64, fmap_max=12,
               fmap_decay=0.5, blur_filter=[1, 3, 3, 1], mbstd_num_features=2,
               structure="linear")),
}


def _patched_copy(official_repo: pathlib.Path, dest: pathlib.Path,
                  patches: tuple[tuple[str, str, str], ...] = PATCHES) -> pathlib.Path:
    """A copy of `official_repo` under `dest` with `patches` applied (also used by
    `benchmarks/stylegan1.py`)."""
    root = dest / "stylegan"
    shutil.copytree(official_repo, root, ignore=shutil.ignore_patterns(".git"))
    for rel, old, new in patches:
        path = root / rel
        lines = path.read_text(encoding="utf-8-sig").split("\n")
        hits = [i for i, line in enumerate(lines) if line.rstrip("\r") == old]
        if len(hits) != 1:
            raise SystemExit(f"patch does not apply to {rel}: {old!r} found {len(hits)} times")
        lines[hits[0]] = new
        path.write_text("\n".join(lines), encoding="utf-8")
    return root


def _commit(official_repo: pathlib.Path) -> str:
    try:
        return subprocess.run(["git", "-C", str(official_repo), "rev-parse", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _perturb(tflib, nets, rnd: np.random.RandomState) -> None:
    """Moves every trainable variable off its initial value, in name order per network.

    `+= 0.1·randn` in run-time units: mapping variables (stored at 1/lrmul) by `0.1 / lrmul`,
    noise strengths (zero-initialized) by `0.5·randn`.
    """
    for net, lrmul in nets:
        values = {}
        for name, var in sorted(net.trainables.items()):
            value = tflib.run(var)
            if name.endswith("Noise/weight"):
                scale = 0.5
            elif name.startswith("G_mapping/") and not name.startswith("G_mapping/LabelConcat"):
                scale = 0.1 / lrmul
            else:
                scale = 0.1
            values[var] = value + scale * rnd.randn(*value.shape).astype(np.float32)
        tflib.set_vars(values)


def _new_tensor(graph, before: set[str], suffix: str):
    """The output of the one op created since `before` whose name ends in `suffix`."""
    ops = [op for op in graph.get_operations() if op.name not in before
           and op.name.endswith(suffix)]
    if len(ops) != 1:
        raise RuntimeError(f"expected one new op ending in {suffix!r}, found {len(ops)}")
    return ops[0].outputs[0]


def _pickle(G, D, path: pathlib.Path):
    """`(G, D, Gs)` as official training pickles a snapshot (protocol 4 under Python 3.6),
    with each network's embedded module source replaced by a placeholder; returns Gs."""
    Gs = G.clone("Gs")
    nets = [G, D, Gs, *G.components.values(), *Gs.components.values()]
    saved = [net._build_module_src for net in nets]
    try:
        for net in nets:
            net._build_module_src = PLACEHOLDER_SRC
        with open(path, "wb") as f:
            pickle.dump((G, D, Gs), f, protocol=4)
    finally:
        for net, src in zip(nets, saved, strict=True):
            net._build_module_src = src
    return Gs


def record(name: str, preset: dict[str, Any], out_dir: pathlib.Path, commit: str) -> None:
    """Records one preset in a graph and session of its own (CPU, one thread)."""
    import dnnlib.tflib as tflib
    import tensorflow.compat.v1 as tf

    config = {"allow_soft_placement": True, "intra_op_parallelism_threads": 1,
              "inter_op_parallelism_threads": 1}
    with tf.Graph().as_default(), tflib.create_session(config).as_default():
        tf.set_random_seed(preset["seed"])
        arrays, meta = _record(tflib, tf, name, preset, out_dir)
    np.savez_compressed(out_dir / f"{name}.npz", **arrays)
    meta.update({
        "code": f"NVlabs/stylegan {commit}",
        "tensorflow": tf.__version__,
        "patches": [f"{rel}: {old.strip()!r} -> {new.strip()!r}" for rel, old, new in PATCHES],
        "keys": {k: list(v.shape) for k, v in arrays.items()},
    })
    (out_dir / f"{name}.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"wrote {name}: {len(arrays)} arrays")


def _record(tflib, tf, name: str, preset: dict[str, Any], out_dir: pathlib.Path
            ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    seed, n = preset["seed"], preset["batch"]
    g_kwargs, d_kwargs = preset["G"], preset["D"]
    G = tflib.Network("G", func_name=G_CLASS, **g_kwargs)
    D = tflib.Network("D", func_name=D_CLASS, **d_kwargs)
    rnd = np.random.RandomState(seed + 1)
    _perturb(tflib, [(G, g_kwargs.get("mapping_lrmul", 0.01)), (D, 1.0)], rnd)
    dlatent_size = G.find_var("dlatent_avg").shape[0].value
    dlatent_avg = (0.5 * rnd.randn(dlatent_size)).astype(np.float32)
    tflib.set_vars({G.find_var("dlatent_avg"): dlatent_avg})
    res, ch, label_size = g_kwargs["resolution"], g_kwargs["num_channels"], g_kwargs["label_size"]
    real = np.clip(rnd.randn(n, ch, res, res), -1, 1).astype(np.float32)
    _pickle(G, D, out_dir / f"{name}.pkl")

    arrays: dict[str, np.ndarray] = {}
    for net_name, net in (("G", G), ("D", D)):
        for var_name, value in zip(net.vars, tflib.run(list(net.vars.values())), strict=True):
            arrays[f"vars/{net_name}/{var_name}"] = np.asarray(value)
    latent_size = G.input_shapes[0][1]
    z = np.concatenate([np.random.RandomState(s).randn(1, latent_size) for s in SEEDS[:n]])
    z = z.astype(np.float32)
    labels = np.eye(label_size, dtype=np.float32)[np.arange(n) % label_size] if label_size else (
        np.zeros([n, 0], np.float32))
    arrays["io/seeds"] = np.asarray(SEEDS[:n], np.int64)
    arrays["io/z"] = z
    if label_size:
        arrays["io/labels"] = labels

    graph = tf.get_default_graph()
    z_in = tf.placeholder(tf.float32, [None, latent_size], name="z_in")
    l_in = tf.placeholder(tf.float32, [None, label_size], name="labels_in")
    feed = {z_in: z, l_in: labels}
    dlatents = G.components.mapping.get_output_for(z_in, l_in)
    arrays["io/dlatents"] = tflib.run(dlatents, feed)
    arrays["io/img_synthesis"] = tflib.run(
        G.components.synthesis.get_output_for(tf.constant(arrays["io/dlatents"]),
                                              randomize_noise=False))
    arrays["io/img_psi1.0"] = tflib.run(
        G.get_output_for(z_in, l_in, truncation_psi=1.0, randomize_noise=False), feed)
    truncation = {}
    for psi, cutoff in TRUNCATIONS:
        tag = f"psi{psi}_cutoff{cutoff}"
        before = {op.name for op in graph.get_operations()}
        img = G.get_output_for(z_in, l_in, truncation_psi=psi, truncation_cutoff=cutoff,
                               randomize_noise=False)
        truncated = _new_tensor(graph, before, "Truncation/Lerp/add")
        arrays[f"io/dlatents_{tag}"], arrays[f"io/img_{tag}"] = tflib.run([truncated, img], feed)
        truncation[tag] = {"psi": psi, "cutoff": cutoff}

    fixed = g_kwargs.get("structure") == "fixed"
    d_real = D.get_output_for(tf.constant(real), l_in)
    arrays["io/d_real_img"] = real
    arrays["io/d_scores_real"] = tflib.run(d_real, feed)
    arrays["io/d_scores_fake"] = tflib.run(
        D.get_output_for(tf.constant(arrays["io/img_psi1.0"]), l_in), feed)
    lods = [] if fixed else list(LODS)
    g_lod = G.get_output_for(z_in, l_in, truncation_psi=1.0, randomize_noise=False)
    for lod in lods:
        tflib.set_vars({G.find_var("lod"): np.float32(lod), D.find_var("lod"): np.float32(lod)})
        arrays[f"io/img_lod{lod}"] = tflib.run(g_lod, feed)
        arrays[f"io/d_scores_real_lod{lod}"] = tflib.run(d_real, feed)
    tflib.set_vars({G.find_var("lod"): np.float32(0), D.find_var("lod"): np.float32(0)})

    # Training mode last: it moves dlatent_avg. Style mixing always on (prob 1) so that the
    # recorded crossover mixes; the random latents2 and crossover are read from the graph.
    before = {op.name for op in graph.get_operations()}
    img_mix = G.get_output_for(z_in, l_in, is_training=True, randomize_noise=False,
                               style_mixing_prob=1.0)
    fetch = [img_mix, _new_tensor(graph, before, "StyleMix/random_normal"),
             _new_tensor(graph, before, "StyleMix/cond/Merge"),
             _new_tensor(graph, before, "StyleMix/Select")]
    arrays["io/dlatent_avg_before"] = tflib.run(G.find_var("dlatent_avg"))
    (arrays["io/img_mix"], arrays["io/mix_latents2"], arrays["io/mix_cutoff"],
     arrays["io/mix_dlatents"]) = tflib.run(fetch, feed)
    arrays["io/dlatent_avg_after"] = tflib.run(G.find_var("dlatent_avg"))

    meta = {
        "G_kwargs": {"class_name": G_CLASS, **g_kwargs},
        "D_kwargs": {"class_name": D_CLASS, **d_kwargs},
        "seed": seed,
        "lods": lods,
        "truncation": truncation,
        "dlatent_avg_beta": 0.995,
    }
    return arrays, meta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--official_repo", type=pathlib.Path, default="third_party/stylegan")
    parser.add_argument("--out_dir", type=pathlib.Path, default="tests/data/reference_stylegan1")
    parser.add_argument("--list", action="store_true", help="print the presets and exit")
    parser.add_argument("names", nargs="*", help="presets to record (default: all)")
    args = parser.parse_args()
    if args.list:
        for name, preset in PRESETS.items():
            print(name, json.dumps({k: preset[k] for k in ("G", "D")}))
        return
    unknown = sorted(set(args.names) - set(PRESETS))
    if unknown:
        raise SystemExit(f"unknown presets {unknown}; known: {sorted(PRESETS)}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    commit = _commit(args.official_repo)
    with tempfile.TemporaryDirectory() as tmp:
        sys.path.insert(0, str(_patched_copy(args.official_repo, pathlib.Path(tmp))))
        for name in args.names or PRESETS:
            record(name, PRESETS[name], args.out_dir, commit)


if __name__ == "__main__":
    main()
