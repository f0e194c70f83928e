r"""Records TensorFlow StyleGAN2 reference vectors with NVIDIA's official code, then checks them
against the official PyTorch conversion of the same pickle.

    # 1. the official TF code (NVlabs/stylegan2), in a TensorFlow environment:
    /tmp/tfvenv/bin/python tools/make_reference_tf_stylegan2.py record \
        --official_repo=third_party/stylegan2 --out_dir=tests/data/reference_tf_stylegan2
    # 2. stylegan2-ada-pytorch's legacy.py conversion + its networks, in a torch environment:
    .venv/bin/python tools/make_reference_tf_stylegan2.py legacy \
        --official_repo=third_party/stylegan2-ada-pytorch \
        --out_dir=tests/data/reference_tf_stylegan2

Neither stage imports flaxgan. `record` runs the official code (commit bf0fe0b, written for TF
1.14) under TF 2's `tf.compat.v1` graph mode on CPU from a temporary copy of `--official_repo`
with the textual `PATCHES` below (each must match one whole line exactly once); the custom
CUDA ops run as their official reference implementations (`impl='ref'`). For every preset it
writes `NAME.npz`, `NAME.json` and `NAME.pkl` (format: `tests/data/reference_tf_stylegan2/
README.md`). `legacy` loads each `NAME.pkl` with `legacy.load_network_pkl` (the official
TF -> PyTorch conversion), evaluates the converted networks on the recorded inputs, adds the
results to `NAME.npz` as `legacy/...` and the largest differences from the TF outputs to
`NAME.json`. `legacy.py` imports `click` for its command line only; a stand-in is provided
when click is not installed.
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
import types
from typing import Any

import numpy as np

G_FUNC = "training.networks_stylegan2.G_main"
D_FUNC = "training.networks_stylegan2.D_stylegan2"
SEEDS = (0, 1, 2, 3)
# (tag, psi, cutoff): the G_main default ψ 0.5 on every layer, and ψ 0.7 on the first 4.
TRUNCATIONS = (("psi0.5", 0.5, None), ("psi0.7_cutoff4", 0.7, 4))
PLACEHOLDER_SRC = "# source code of the defining module omitted from this reference snapshot\n"
_TF_IMPORT = ("import tensorflow as tf",
              "import tensorflow.compat.v1 as tf; tf.disable_v2_behavior()")
_OPS = "dnnlib/tflib/ops/upfirdn_2d.py"
# (file, official line, replacement): what TF 2 on CPU needs, nothing more.
PATCHES = (
    *((f, *_TF_IMPORT) for f in (
        "dnnlib/tflib/tfutil.py", "dnnlib/tflib/network.py", "dnnlib/tflib/optimizer.py",
        "dnnlib/tflib/autosummary.py", "dnnlib/tflib/custom_ops.py", _OPS,
        "dnnlib/tflib/ops/fused_bias_act.py", "training/networks_stylegan2.py")),
    # tf.contrib is gone in TF 2; only the optimizer's GPU memory summary uses it.
    ("dnnlib/tflib/tfutil.py", "import tensorflow.contrib   # requires TensorFlow 1.x!", "pass"),
    ("dnnlib/tflib/tfutil.py", "tf.contrib = tensorflow.contrib", "pass"),
    # TensorBoard is only used by autosummary's training-time layouts.
    ("dnnlib/tflib/autosummary.py", "from tensorboard import summary as summary_lib",
     "summary_lib = None"),
    ("dnnlib/tflib/autosummary.py", "from tensorboard.plugins.custom_scalar import layout_pb2",
     "layout_pb2 = None"),
    # The custom CUDA ops -> their official reference implementations (no nvcc, no GPU).
    ("dnnlib/tflib/ops/fused_bias_act.py",
     "def fused_bias_act(x, b=None, axis=1, act='linear', alpha=None, gain=None, impl='cuda'):",
     "def fused_bias_act(x, b=None, axis=1, act='linear', alpha=None, gain=None, impl='ref'):"),
    *((_OPS, f"def {sig}impl='cuda'):", f"def {sig}impl='ref'):") for sig in (
        "upfirdn_2d(x, k, upx=1, upy=1, downx=1, downy=1, padx0=0, padx1=0, pady0=0, pady1=0, ",
        "filter_2d(x, k, gain=1, data_format='NCHW', ",
        "upsample_2d(x, k=None, factor=2, gain=1, data_format='NCHW', ",
        "downsample_2d(x, k=None, factor=2, gain=1, data_format='NCHW', ",
        "upsample_conv_2d(x, w, k=None, factor=2, gain=1, data_format='NCHW', ",
        "conv_downsample_2d(x, w, k=None, factor=2, gain=1, data_format='NCHW', ",
        "_simple_upfirdn_2d(x, k, up=1, down=1, pad0=0, pad1=0, data_format='NCHW', ")),
)

# name -> seed, batch, G kwargs, D kwargs (passed to the official build functions as they are;
# only kwargs that legacy.py converts, so that stage 2 can check every preset).
PRESETS: dict[str, dict[str, Any]] = {
    # Config F's architectures (G skip, D resnet) and defaults, small sizes.
    "tf_sg2_f_32": dict(
        seed=11, batch=2,
        G=dict(num_channels=3, resolution=32, label_size=0, latent_size=32, dlatent_size=32,
               mapping_fmaps=32, fmap_base=256, fmap_max=16),
        D=dict(num_channels=3, resolution=32, label_size=0, fmap_base=256, fmap_max=16)),
    # Config E with G resnet / D skip, relu mapping with lrmul 0.1, relu D, mbstd group 2.
    "tf_sg2_e_Gresnet_Dskip_16": dict(
        seed=22, batch=4,
        G=dict(num_channels=3, resolution=16, label_size=0, latent_size=16, dlatent_size=24,
               mapping_layers=3, mapping_fmaps=20, mapping_nonlinearity="relu",
               mapping_lrmul=0.1, fmap_base=128, fmap_max=16, architecture="resnet"),
        D=dict(num_channels=3, resolution=16, label_size=0, fmap_base=128, fmap_max=16,
               architecture="skip", nonlinearity="relu", mbstd_group_size=2)),
    # Config E with G and D 'orig', one channel, the odd filter [1, 2, 1], 2 stddev features.
    "tf_sg2_e_orig_gray16": dict(
        seed=33, batch=4,
        G=dict(num_channels=1, resolution=16, label_size=0, latent_size=16, dlatent_size=16,
               mapping_layers=2, mapping_fmaps=16, fmap_base=128, fmap_max=12,
               architecture="orig", resample_kernel=[1, 2, 1]),
        D=dict(num_channels=1, resolution=16, label_size=0, fmap_base=128, fmap_max=12,
               architecture="orig", resample_kernel=[1, 2, 1], mbstd_num_features=2)),
}


# ---------------------------------------------------------------------------- stage 1: TF


def _patched_copy(official_repo: pathlib.Path, dest: pathlib.Path) -> pathlib.Path:
    root = dest / "stylegan2"
    shutil.copytree(official_repo, root, ignore=shutil.ignore_patterns(".git"))
    for rel, old, new in PATCHES:
        path = root / rel
        lines = path.read_text(encoding="utf-8-sig").split("\n")
        hits = [i for i, line in enumerate(lines) if line.rstrip("\r") == old]
        if len(hits) != 1:
            raise SystemExit(f"patch does not apply to {rel}: {old!r} found {len(hits)} times")
        lines[hits[0]] = new
        path.write_text("\n".join(lines), encoding="utf-8")
    return root


def _commit(repo: pathlib.Path) -> str:
    """The clone's commit; "unknown" unless `repo` is the top of a git work tree (a copy inside
    another repository would report that one's)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                              check=True).stdout.strip()
    try:
        if pathlib.Path(git("rev-parse", "--show-toplevel")).resolve() != repo.resolve():
            return "unknown"
        return git("rev-parse", "HEAD")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _perturb(tflib, net, rnd: np.random.RandomState, scale: float, mapping_lrmul: float) -> None:
    """Moves every trainable variable of `net` off its value, in name order: `+= scale·randn`
    in run-time units (mapping variables, stored at 1/lrmul, by `scale / lrmul`; the
    zero-initialised noise strengths by `5·scale·randn`)."""
    values = {}
    for name, var in sorted(net.trainables.items()):
        value = tflib.run(var)
        if name.endswith("noise_strength"):
            step = 5 * scale
        elif name.startswith("G_mapping/"):
            step = scale / mapping_lrmul
        else:
            step = scale
        values[var] = value + step * np.asarray(rnd.randn(*value.shape), np.float32)
    tflib.set_vars(values)


def _set_dlatent_avg(tflib, net, rnd: np.random.RandomState) -> None:
    var = net.find_var("dlatent_avg")
    tflib.set_vars({var: (0.5 * rnd.randn(var.shape[0].value)).astype(np.float32)})


def _pickle(G, D, Gs, path: pathlib.Path) -> None:
    """`(G, D, Gs)` as official training pickles a snapshot (`misc.save_pkl`: the highest
    protocol, 4 under Python 3.6), each network's embedded module source a placeholder."""
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


def record(name: str, preset: dict[str, Any], out_dir: pathlib.Path, commit: str) -> None:
    """Records one preset in a graph and session of its own (CPU, one thread)."""
    import dnnlib.tflib as tflib
    import tensorflow.compat.v1 as tf

    config = {"allow_soft_placement": True, "intra_op_parallelism_threads": 1,
              "inter_op_parallelism_threads": 1}
    with tf.Graph().as_default(), tflib.create_session(config).as_default():
        tf.set_random_seed(preset["seed"])
        arrays, meta = _record(tflib, tf, preset, out_dir / f"{name}.pkl")
    np.savez_compressed(out_dir / f"{name}.npz", **arrays)
    meta.update({
        "code": f"NVlabs/stylegan2 {commit}",
        "tensorflow": tf.__version__,
        "patches": [f"{rel}: {old.strip()!r} -> {new.strip()!r}" for rel, old, new in PATCHES],
        "keys": {k: list(v.shape) for k, v in arrays.items()},
    })
    (out_dir / f"{name}.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"recorded {name}: {len(arrays)} arrays")


def _record(tflib, tf, preset: dict[str, Any], pkl: pathlib.Path
            ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    seed, n = preset["seed"], preset["batch"]
    g_kwargs, d_kwargs = preset["G"], preset["D"]
    lrmul = g_kwargs.get("mapping_lrmul", 0.01)
    G = tflib.Network("G", func_name=G_FUNC, **g_kwargs)
    D = tflib.Network("D", func_name=D_FUNC, **d_kwargs)
    rnd = np.random.RandomState(seed + 1)
    _perturb(tflib, G, rnd, 0.1, lrmul)
    _perturb(tflib, D, rnd, 0.1, 1.0)
    _set_dlatent_avg(tflib, G, rnd)
    # Gs: G's clone moved a little further (as an EMA differs from G), its own dlatent_avg.
    Gs = G.clone("Gs")
    _perturb(tflib, Gs, rnd, 0.02, lrmul)
    _set_dlatent_avg(tflib, Gs, rnd)
    res, ch = g_kwargs["resolution"], g_kwargs["num_channels"]
    real = np.clip(rnd.randn(n, ch, res, res), -1, 1).astype(np.float32)
    _pickle(G, D, Gs, pkl)

    arrays: dict[str, np.ndarray] = {}
    for net_name, net in (("Gs", Gs), ("D", D)):  # G's are in the pickle only (size).
        for var_name, value in zip(net.vars, tflib.run(list(net.vars.values())), strict=True):
            arrays[f"vars/{net_name}/{var_name}"] = np.asarray(value)
    latent_size = G.input_shapes[0][1]
    z = np.concatenate([np.random.RandomState(s).randn(1, latent_size) for s in SEEDS[:n]])
    arrays["io/seeds"] = np.asarray(SEEDS[:n], np.int64)
    arrays["io/z"] = z.astype(np.float32)
    labels = np.zeros([n, 0], np.float32)

    z_in = tf.placeholder(tf.float32, [None, latent_size], name="z_in")
    l_in = tf.placeholder(tf.float32, [None, 0], name="labels_in")
    feed = {z_in: arrays["io/z"], l_in: labels}
    arrays["io/dlatents"] = tflib.run(Gs.components.mapping.get_output_for(z_in, l_in), feed)
    arrays["io/img_synthesis"] = tflib.run(Gs.components.synthesis.get_output_for(
        tf.constant(arrays["io/dlatents"]), randomize_noise=False))
    arrays["io/img_psi1.0"] = tflib.run(
        Gs.get_output_for(z_in, l_in, truncation_psi=1.0, randomize_noise=False), feed)
    arrays["io/G_img_psi1.0"] = tflib.run(
        G.get_output_for(z_in, l_in, truncation_psi=1.0, randomize_noise=False), feed)
    truncation = {}
    for tag, psi, cutoff in TRUNCATIONS:
        img, dlatents = Gs.get_output_for(z_in, l_in, truncation_psi=psi,
                                          truncation_cutoff=cutoff, randomize_noise=False,
                                          return_dlatents=True)
        arrays[f"io/dlatents_{tag}"], arrays[f"io/img_{tag}"] = tflib.run([dlatents, img], feed)
        truncation[tag] = {"psi": psi, "cutoff": cutoff}
    arrays["io/d_real_img"] = real
    arrays["io/d_scores_real"] = tflib.run(D.get_output_for(tf.constant(real), l_in), feed)
    arrays["io/d_scores_fake"] = tflib.run(
        D.get_output_for(tf.constant(arrays["io/img_psi1.0"]), l_in), feed)
    meta = {
        "G_kwargs": {"class_name": G_FUNC, **g_kwargs},
        "D_kwargs": {"class_name": D_FUNC, **d_kwargs},
        "seed": seed,
        "truncation": truncation,
    }
    return arrays, meta


def run_record(args: argparse.Namespace) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    commit = _commit(args.official_repo)
    with tempfile.TemporaryDirectory() as tmp:
        sys.path.insert(0, str(_patched_copy(args.official_repo, pathlib.Path(tmp))))
        for name in args.names or PRESETS:
            record(name, PRESETS[name], args.out_dir, commit)


# ---------------------------------------------------------------------------- stage 2: legacy


def _provide_click() -> None:
    """`legacy.py` decorates its command line with click; a stand-in when it is absent."""
    try:
        import click  # noqa: F401
    except ImportError:
        def passthrough(*_args, **_kwargs):
            return lambda fn: fn
        sys.modules["click"] = types.SimpleNamespace(command=passthrough, option=passthrough)


def crosscheck(name: str, out_dir: pathlib.Path, legacy, torch, commit: str) -> None:
    """Adds `legacy/...` outputs and their largest differences from the TF outputs."""
    npz, meta_path = out_dir / f"{name}.npz", out_dir / f"{name}.json"
    arrays = dict(np.load(npz))
    meta = json.loads(meta_path.read_text())
    with open(out_dir / f"{name}.pkl", "rb") as f:
        nets = legacy.load_network_pkl(f)
    G, D, G_ema = (nets[k].eval() for k in ("G", "D", "G_ema"))
    z = torch.from_numpy(arrays["io/z"])
    c = torch.zeros([z.shape[0], 0])
    out: dict[str, np.ndarray] = {}
    with torch.no_grad():
        def synth(net, ws):
            return net.synthesis(ws, noise_mode="const", force_fp32=True).numpy()

        ws = G_ema.mapping(z, c, truncation_psi=1.0)
        out["legacy/dlatents"] = ws.numpy()
        out["legacy/img_synthesis"] = synth(G_ema, torch.from_numpy(arrays["io/dlatents"]))
        out["legacy/img_psi1.0"] = synth(G_ema, ws)
        out["legacy/G_img_psi1.0"] = synth(G, G.mapping(z, c, truncation_psi=1.0))
        for tag, spec in meta["truncation"].items():
            ws = G_ema.mapping(z, c, truncation_psi=spec["psi"],
                               truncation_cutoff=spec["cutoff"])
            out[f"legacy/dlatents_{tag}"] = ws.numpy()
            out[f"legacy/img_{tag}"] = synth(G_ema, ws)
        for tag, img in (("real", "io/d_real_img"), ("fake", "io/img_psi1.0")):
            out[f"legacy/d_scores_{tag}"] = D(torch.from_numpy(arrays[img]), c,
                                              force_fp32=True).numpy()
    diffs = {}
    for key, value in out.items():
        ref = arrays["io/" + key.split("/", 1)[1]]
        diffs[key] = float(np.max(np.abs(value - ref)))
    arrays.update(out)
    np.savez_compressed(npz, **arrays)
    meta["legacy"] = {
        "code": f"NVlabs/stylegan2-ada-pytorch {commit} (legacy.load_network_pkl)",
        "torch": torch.__version__,
        "G_kwargs": json.loads(json.dumps(G.init_kwargs)),
        "D_kwargs": json.loads(json.dumps(D.init_kwargs)),
        "max_abs_diff_from_tf": diffs,
    }
    meta["keys"] = {k: list(v.shape) for k, v in arrays.items()}
    meta_path.write_text(json.dumps(meta, indent=1) + "\n")
    print(f"legacy {name}: largest difference from TF {max(diffs.values()):.3g} "
          f"({max(diffs, key=diffs.get)})")


def run_legacy(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(args.official_repo.resolve()))
    _provide_click()
    import legacy
    import torch

    torch.set_num_threads(1)
    commit = _commit(args.official_repo)
    for name in args.names or PRESETS:
        crosscheck(name, args.out_dir, legacy, torch, commit)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stage", choices=("record", "legacy", "list"))
    parser.add_argument("--official_repo", type=pathlib.Path, default=None)
    parser.add_argument("--out_dir", type=pathlib.Path,
                        default="tests/data/reference_tf_stylegan2")
    parser.add_argument("names", nargs="*", help="presets (default: all)")
    args = parser.parse_intermixed_args()
    if args.stage == "list":
        for name, preset in PRESETS.items():
            print(name, json.dumps({k: preset[k] for k in ("G", "D")}))
        return
    unknown = sorted(set(args.names) - set(PRESETS))
    if unknown:
        raise SystemExit(f"unknown presets {unknown}; known: {sorted(PRESETS)}")
    default_repo = "third_party/stylegan2" if args.stage == "record" else (
        "third_party/stylegan2-ada-pytorch")
    args.official_repo = args.official_repo or pathlib.Path(default_repo)
    (run_record if args.stage == "record" else run_legacy)(args)


if __name__ == "__main__":
    main()
