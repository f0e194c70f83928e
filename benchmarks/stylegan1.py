r"""StyleGAN (v1): flaxgan vs. the official NVlabs/stylegan TensorFlow code, side by side on CPU.

    git clone https://github.com/NVlabs/stylegan third_party/stylegan
    python3 -m venv /tmp/tfvenv && /tmp/tfvenv/bin/pip install tensorflow==2.21.0 numpy pillow
    python -m benchmarks.stylegan1 --official_repo=third_party/stylegan \
        --tf_python=/tmp/tfvenv/bin/python [--configs=smoke16,small64 --repeats=5]

The official side is a long-lived subprocess in the TensorFlow venv (this same file with
`--worker`; it imports nothing from flaxgan) running the official `G_style` / `D_basic` and
`training/loss.py` under TF 2's `tf.compat.v1` graph mode from a patched temporary copy of the
clone (the patches of `tools/make_reference_stylegan1.py`, plus the same
`import tensorflow as tf` line in `training/loss.py`). Same inputs on both sides:

  * weights: the worker builds G and D as official training does
    (`tflib.Network('G', func_name='training.networks_stylegan.G_style', ...)`), moves every
    trainable variable off its initial value (`_perturb` of the reference tool, so the noise
    strengths are not zero) and pickles `(G, D, Gs)`; flaxgan loads that pickle (`sample.load`
    for G / Gs, `tf_snapshot` + `tf_stylegan1` for D);
  * latents, reals: drawn here with NumPy and sent to the worker as `.npy` files.

Precision float32 on both. Noise: the stored noise inputs (`randomize_noise=False`,
flaxgan `noise_mode='const'`) so that outputs can be compared.

(a) Generator: mapping + synthesis, truncation off, one jitted program (flaxgan: the official
call `G_style.apply(..., truncation_psi=None, randomize_noise=False)`; official: one graph
`Gs.get_output_for(z, labels, truncation_psi=None, randomize_noise=False)` run by the session
with a fed `z`), a fixed batch. Outputs compared: max |image difference|.

(b) Training iteration at lod 0 as the official `training/training_loop.py` runs it: a D step
(`D_logistic_simplegp`, R1 γ = 10) with the Gs moving average (half-life 10 kimg), then a G
step (`G_logistic_nonsaturating`), Adam lr 0.001, β (0, 0.99), ε 1e-8 (the official
`tflib.Optimizer`, with `tf_optimizer='tensorflow.compat.v1.train.AdamOptimizer'` since TF 2
has no `tf.train.AdamOptimizer`). The official loss functions are run unmodified; their
`tf.random_normal` latents are replaced by fed placeholders (the same latents on both sides),
G is called with `randomize_noise=False` and style mixing off (`style_mixing_prob=None`) — the
two random draws of the official step that cannot be matched. flaxgan: the same step in one
jitted function (`flaxgan.losses`, `flaxgan.train.step.tf1_adam` — the official ε placement —,
`G_style(is_training=True)`, donated state).
Both sides run the same sequence of iterations, so every iteration's D and G losses are
compared.

(c) The library's own step, `flaxgan.train.step.make_train_steps` (what `experiments.train`
runs for a `:stylegan1` config: the shard_map phases Dboth then Gmain, EMA and buffer
bookkeeping) on the same networks, reals and hyperparameters (style mixing off, lod 0, one
device, or `--library_devices` host devices as `experiments.train` splits a CPU), timed in the
same repeats; it draws its noise, so only its time is compared.

Timing: an untimed warm-up (flaxgan: compilation; official: the session's first run, graph
optimisation) reported separately, then `--repeats` repeats alternating the two sides (flaxgan
first, then official, `--gen_batches` batches / `--train_iters` iterations each); median with
min–max. img/s = images / s; sec/kimg = seconds per 1000 reals shown to D.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
G_CLASS = "training.networks_stylegan.G_style"
D_CLASS = "training.networks_stylegan.D_basic"
LR, BETAS, EPS, R1_GAMMA, G_SMOOTHING_KIMG = 0.001, (0.0, 0.99), 1e-8, 10.0, 10.0
# `training/loss.py` needs the same TF 2 import patch as the network code.
LOSS_PATCH = (("training/loss.py", "import tensorflow as tf",
               "import tensorflow.compat.v1 as tf; tf.disable_v2_behavior()"),)

# name -> G kwargs, D kwargs (official names), generator batch, training minibatch, and the
# batches / iterations per timed repeat (a few seconds each on 2 cores).
CONFIGS = {
    # experiments/configs/smoke.py:stylegan1 (16², fmap_base 64, fmap_max 32, 2 mapping layers
    # of 32, latents 32); its minibatch above 4² is 16.
    "smoke16": dict(
        G=dict(num_channels=3, resolution=16, label_size=0, latent_size=32, dlatent_size=32,
               mapping_layers=2, mapping_fmaps=32, fmap_base=64, fmap_max=32),
        D=dict(num_channels=3, resolution=16, label_size=0, fmap_base=64, fmap_max=32,
               mbstd_group_size=4),
        gen_batch=32, minibatch=16, gen_batches=20, train_iters=16),
    # A small 64² config: official defaults (8 mapping layers) with fmap_base 512, fmap_max 64
    # (64/64/64/32/16 channels at 4²…64²), latents 128.
    "small64": dict(
        G=dict(num_channels=3, resolution=64, label_size=0, latent_size=128, dlatent_size=128,
               mapping_layers=8, mapping_fmaps=128, fmap_base=512, fmap_max=64),
        D=dict(num_channels=3, resolution=64, label_size=0, fmap_base=512, fmap_max=64,
               mbstd_group_size=4),
        gen_batch=32, minibatch=16, gen_batches=2, train_iters=4),
}


def _load_avg() -> float:
    return round(os.getloadavg()[0], 2)


# ---------------------------------------------------------------------- official (TF worker)


def _send(obj) -> None:
    sys.stdout.write("MSG " + json.dumps(obj) + "\n")
    sys.stdout.flush()


class _LatentFeed:
    """Stands in for `tensorflow.compat.v1` inside `training.loss`: `random_normal` returns the
    next queued placeholder instead of drawing, everything else is TF's."""

    def __init__(self, tf, queue):
        self._tf, self._queue = tf, queue

    def random_normal(self, shape, *args, **kwargs):
        del args, kwargs
        z = self._queue.pop(0)
        assert z.shape.as_list()[1:] == list(shape[1:]), (z.shape, shape)
        return z

    def __getattr__(self, name):
        return getattr(self._tf, name)


class _TrainingSet:
    def __init__(self, tf):
        self._tf = tf

    def get_random_labels_tf(self, n):
        return self._tf.zeros([n, 0])


class _Official:
    """One graph + session per config."""

    def __init__(self, threads: int):
        import dnnlib.tflib as tflib
        import tensorflow.compat.v1 as tf
        import training.loss as loss

        self.tf, self.tflib, self.loss, self.threads = tf, tflib, loss, threads
        self.nets: dict[str, dict] = {}

    @contextlib.contextmanager
    def _in(self, name):
        n = self.nets[name]
        with n["graph"].as_default(), n["sess"].as_default():
            yield n

    def build(self, name, G_kwargs, D_kwargs, minibatch, pkl, seed):
        from tools import make_reference_stylegan1 as ref

        tf, tflib = self.tf, self.tflib
        graph = tf.Graph()
        config = {"allow_soft_placement": True, "intra_op_parallelism_threads": self.threads,
                  "inter_op_parallelism_threads": self.threads}
        with graph.as_default():
            sess = tflib.create_session(config)
        self.nets[name] = n = {"graph": graph, "sess": sess}
        with self._in(name):
            tf.set_random_seed(seed)
            G = tflib.Network("G", func_name=G_CLASS, **G_kwargs)
            D = tflib.Network("D", func_name=D_CLASS, **D_kwargs)
            ref._perturb(tflib, [(G, G_kwargs.get("mapping_lrmul", 0.01)), (D, 1.0)],
                         np.random.RandomState(seed + 1))
            Gs = ref._pickle(G, D, pathlib.Path(pkl))
            latent = G.input_shapes[0][1]
            res, ch = G_kwargs["resolution"], G_kwargs["num_channels"]
            # (a) the generator graph.
            n["z"] = tf.placeholder(tf.float32, [None, latent], name="z_gen")
            n["img"] = Gs.get_output_for(n["z"], tf.zeros([tf.shape(n["z"])[0], 0]),
                                         truncation_psi=None, randomize_noise=False)
            # (b) the training graph of training_loop.py (one GPU, lod 0 fixed).
            n["zg"] = tf.placeholder(tf.float32, [minibatch, latent], name="z_G_loss")
            n["zd"] = tf.placeholder(tf.float32, [minibatch, latent], name="z_D_loss")
            n["reals"] = tf.placeholder(tf.float32, [minibatch, ch, res, res], name="reals")
            opt_args = dict(beta1=BETAS[0], beta2=BETAS[1], epsilon=EPS,
                            tf_optimizer="tensorflow.compat.v1.train.AdamOptimizer")
            G_opt = tflib.Optimizer(name="TrainG", learning_rate=LR, **opt_args)
            D_opt = tflib.Optimizer(name="TrainD", learning_rate=LR, **opt_args)
            G.get_output_for = functools.partial(type(G).get_output_for, G,
                                                 randomize_noise=False, style_mixing_prob=None)
            self.loss.tf = _LatentFeed(tf, [n["zg"], n["zd"]])
            try:
                with tf.name_scope("G_loss"):
                    G_loss = self.loss.G_logistic_nonsaturating(
                        G=G, D=D, opt=G_opt, training_set=_TrainingSet(tf),
                        minibatch_size=minibatch)
                with tf.name_scope("D_loss"):
                    D_loss = self.loss.D_logistic_simplegp(
                        G=G, D=D, opt=D_opt, training_set=_TrainingSet(tf),
                        minibatch_size=minibatch, reals=n["reals"],
                        labels=tf.zeros([minibatch, 0]), r1_gamma=R1_GAMMA)
            finally:
                self.loss.tf = tf
            n["G_loss"], n["D_loss"] = tf.reduce_mean(G_loss), tf.reduce_mean(D_loss)
            G_opt.register_gradients(n["G_loss"], G.trainables)
            D_opt.register_gradients(n["D_loss"], D.trainables)
            n["G_train"], n["D_train"] = G_opt.apply_updates(), D_opt.apply_updates()
            Gs_beta = 0.5 ** (minibatch / (G_SMOOTHING_KIMG * 1000.0))
            n["Gs_update"] = Gs.setup_as_moving_average_of(G, beta=Gs_beta)
            tflib.init_uninitialized_vars()
        return {"tf_threads": [self.threads, self.threads]}

    def generate(self, name, z_path, reps, out=None):
        with self._in(name) as n:
            z = np.load(z_path)
            start = time.perf_counter()
            for _ in range(reps):
                img = n["sess"].run(n["img"], {n["z"]: z})
            seconds = time.perf_counter() - start
        if out:
            np.save(out, img)
        return {"seconds": seconds}

    def train(self, name, data_path, first, count):
        with self._in(name) as n:
            data = np.load(data_path)
            losses = []
            start = time.perf_counter()
            for i in range(first, first + count):
                feed = {n["zd"]: data["zd"][i], n["zg"]: data["zg"][i],
                        n["reals"]: data["reals"][i % len(data["reals"])]}
                d_loss, _, _ = n["sess"].run([n["D_loss"], n["D_train"], n["Gs_update"]], feed)
                g_loss, _ = n["sess"].run([n["G_loss"], n["G_train"]], feed)
                losses.append([float(d_loss), float(g_loss)])
            seconds = time.perf_counter() - start
        return {"seconds": seconds, "losses": losses}


def worker(official_repo: str, threads: int) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    sys.path.insert(0, str(ROOT))
    from tools import make_reference_stylegan1 as ref

    tmp = tempfile.mkdtemp(prefix="sg1bench_")
    copy = ref._patched_copy(pathlib.Path(official_repo), pathlib.Path(tmp),
                             ref.PATCHES + LOSS_PATCH)
    sys.path.insert(0, str(copy))
    import tensorflow as tf

    official = _Official(threads)
    _send({"tensorflow": tf.__version__, "commit": ref._commit(pathlib.Path(official_repo))})
    for line in sys.stdin:
        msg = json.loads(line)
        cmd = msg.pop("cmd")
        if cmd == "quit":
            break
        _send(getattr(official, cmd)(**msg))


# ----------------------------------------------------------------------------------- driver


class _Worker:
    def __init__(self, python: str, official_repo: str, threads: int):
        self.proc = subprocess.Popen(
            [python, str(pathlib.Path(__file__).resolve()), "--worker",
             f"--official_repo={official_repo}", f"--tf_threads={threads}"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        self.hello = self._read()

    def _read(self):
        for line in self.proc.stdout:
            if line.startswith("MSG "):
                return json.loads(line[4:])
        raise RuntimeError(f"official worker exited ({self.proc.wait()})")

    def __call__(self, cmd, **kwargs):
        self.proc.stdin.write(json.dumps({"cmd": cmd, **kwargs}) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self):
        with contextlib.suppress(OSError):
            self.proc.stdin.write('{"cmd": "quit"}\n')
            self.proc.stdin.close()
        self.proc.wait(timeout=60)


def _stats(values):
    return {"median": round(statistics.median(values), 3),
            "min": round(min(values), 3), "max": round(max(values), 3)}


def _networks(pkl: str, cfg: dict):
    """`(G, Gs, D module, D variables)` of the official pickle: G and Gs (G_ema) through
    `sample.load`, D through `tf_snapshot` + `tf_stylegan1`."""
    import jax
    import jax.numpy as jnp

    from flaxgan import sample
    from flaxgan.convert import tf_snapshot, tf_stylegan1
    from flaxgan.models import build_discriminator

    G, Gs = sample.load(pkl, key="G"), sample.load(pkl)
    record = tf_snapshot.load_tf_snapshot(pkl)["D"]
    D = build_discriminator(record.class_name, record.static_kwargs)
    res, ch, mb = cfg["G"]["resolution"], cfg["G"]["num_channels"], cfg["minibatch"]
    target = jax.eval_shape(lambda: D.init(jax.random.key(0), jnp.zeros([mb, res, res, ch]),
                                           jnp.zeros([mb, 0])))
    return G, Gs, D, tf_stylegan1.to_flax_checked(record.all_variables(), target, "D")


def _flaxgan(pkl: str, cfg: dict, dtype: str = "float32", adam: str = "tf1"):
    """flaxgan's networks from the official pickle, the jitted generator and training step;
    the step's networks, optimizer state and inputs in `dtype` (float64 needs
    `jax_enable_x64`: `benchmarks.stylegan1_drift`), its Adam of `flaxgan.train.step.ADAMS`
    (the official's is 'tf1')."""
    import jax
    import jax.numpy as jnp
    import optax
    from flax.core import unfreeze

    from flaxgan import losses, xla_cpu
    from flaxgan.train import step as step_lib

    G, Gs, D, d_vars = _networks(pkl, cfg)
    mb = cfg["minibatch"]
    none = jnp.zeros([mb, 0], dtype)
    gen_module = Gs.module

    @xla_cpu.jit
    def generate(variables, z):
        return gen_module.apply(variables, z, jnp.zeros([z.shape[0], 0]), truncation_psi=None,
                                randomize_noise=False)

    G_train = G.module.clone(style_mixing_prob=None, dtype=dtype)  # as the official side
    D = D.clone(dtype=dtype)
    opt = step_lib.ADAMS[adam](LR, b1=BETAS[0], b2=BETAS[1], eps=EPS)
    gs_beta = 0.5 ** (mb / (G_SMOOTHING_KIMG * 1000.0))

    def fakes(g_params, g_buffers, z):
        img, new = G_train.apply({"params": g_params, "buffers": g_buffers}, z, none,
                                 is_training=True, randomize_noise=False, mutable=["buffers"])
        return img, new["buffers"]

    def d_scores(d_params, d_buffers, img):
        return D.apply({"params": d_params, "buffers": d_buffers}, img, none)

    @functools.partial(xla_cpu.jit, donate_argnums=0)
    def iteration(state, zd, zg, reals):
        g, d, gs = state["G"], state["D"], state["Gs"]

        def d_loss_fn(d_params):  # D_logistic_simplegp
            fake, _ = fakes(g["params"], g["buffers"], zd)
            r1, real_scores = losses.r1_penalty(lambda x: d_scores(d_params, d["buffers"], x),
                                                reals)
            fake_scores = d_scores(d_params, d["buffers"], fake)
            loss = losses.discriminator_loss(fake_scores, real_scores)[:, 0]
            return jnp.mean(loss + r1 * (R1_GAMMA * 0.5))

        d_loss, d_grads = jax.value_and_grad(d_loss_fn)(d["params"])
        updates, d_opt = opt.update(d_grads, state["D_opt"], d["params"])
        d = {"params": optax.apply_updates(d["params"], updates), "buffers": d["buffers"]}
        _, g_buffers = fakes(g["params"], g["buffers"], zd)  # dlatent_avg moved by the D pass
        gs = {"params": jax.tree.map(lambda cur, avg: cur + (avg - cur) * gs_beta,
                                     g["params"], gs["params"]), "buffers": g["buffers"]}

        def g_loss_fn(g_params):  # G_logistic_nonsaturating
            fake, buffers = fakes(g_params, g_buffers, zg)
            return jnp.mean(losses.generator_loss(d_scores(d["params"], d["buffers"], fake))), \
                buffers

        (g_loss, g_buffers), g_grads = jax.value_and_grad(g_loss_fn, has_aux=True)(g["params"])
        updates, g_opt = opt.update(g_grads, state["G_opt"], g["params"])
        g = {"params": optax.apply_updates(g["params"], updates), "buffers": g_buffers}
        new = {"G": g, "D": d, "Gs": gs, "G_opt": g_opt, "D_opt": d_opt}
        return new, jnp.stack([d_loss, g_loss])

    def init_state():
        # Fresh (donated) copies in plain dicts, committed to the device as the step's outputs
        # are: an uncommitted first state would make the second call compile again.
        def plain(tree):
            return jax.tree.map(lambda x: jnp.array(x, dtype, copy=True), unfreeze(tree))

        g, d = plain(G.variables), plain(d_vars)
        state = {"G": g, "D": d, "Gs": plain(Gs.variables),
                 "G_opt": opt.init(g["params"]), "D_opt": opt.init(d["params"])}
        return jax.device_put(state, jax.devices()[0])

    return Gs.variables, generate, iteration, init_state


def _library_step(pkl: str, cfg: dict, devices: int = 1):
    """flaxgan's own training step (`flaxgan.train.step`, what `experiments.train` runs for
    `--config=...:stylegan1`) on the same networks: the official v1 hyperparameters at lod 0,
    style mixing off as on the official side, on `devices` host devices. Returns
    `(run(first, count) -> seconds, compiled count)`; its noise is drawn (the library trains
    with random noise), so its losses are not compared, only its time."""
    import jax

    from flaxgan.train import sharding
    from flaxgan.train import state as state_lib
    from flaxgan.train import step as step_lib

    G, Gs, D, d_vars = _networks(pkl, cfg)
    mb = cfg["minibatch"]
    hp = step_lib.Hyperparameters(
        batch_size=mb, g_lr=LR, d_lr=LR, betas=BETAS, eps=EPS, g_reg_interval=None,
        d_reg_interval=None, r1_gamma=R1_GAMMA, pl_weight=0.0, style_mixing_prob=0.0,
        ema_kimg=G_SMOOTHING_KIMG, ema_rampup=None, ada_target=None, progressive=True,
        d_first=True, adam="tf1")
    mesh = sharding.make_mesh(jax.devices()[:devices])
    steps = step_lib.make_train_steps(G.module, D, hp, mesh)
    g_opt, d_opt = step_lib.make_optimizers(hp)
    copy = lambda tree: jax.tree.map(lambda x: np.array(x, np.float32), tree)
    state = sharding.replicate(state_lib.create_state(
        copy(G.variables), copy(d_vars), g_opt, d_opt, jax.random.key(0),
        ema_variables=copy(Gs.variables)), mesh)
    reals = None
    step = 0

    def run(data: dict, first: int, count: int) -> float:
        nonlocal state, reals, step
        if reals is None:  # [-1, 1] float reals as the uint8 images the library reads
            reals = [np.clip(np.round((r.transpose(0, 2, 3, 1) + 1) * 127.5), 0, 255)
                     .astype(np.uint8) for r in data["reals"]]
        start = time.perf_counter()
        for i in range(first, first + count):
            batch = sharding.global_batch({"image": reals[i % len(reals)],
                                           "label": np.zeros((mb, 0), np.float32)}, mesh)
            state, _ = steps.iteration(state, batch, step)
            step += 1
        jax.block_until_ready(state)
        return time.perf_counter() - start

    compiled = lambda: sum(f._cache_size() for f in steps.run_phase.values())
    return run, compiled


def run_config(name: str, cfg: dict, worker: _Worker, args, tmp: pathlib.Path) -> dict:
    import jax

    pkl = str(tmp / f"{name}.pkl")
    worker("build", name=name, G_kwargs=cfg["G"], D_kwargs=cfg["D"],
           minibatch=cfg["minibatch"], pkl=pkl, seed=args.seed)
    gs_vars, generate, iteration, init_state = _flaxgan(pkl, cfg)
    rng = np.random.RandomState(args.seed + 7)
    latent, res, ch = cfg["G"]["latent_size"], cfg["G"]["resolution"], cfg["G"]["num_channels"]
    out = {"config": name, "G": cfg["G"], "gen_batch": cfg["gen_batch"],
           "minibatch": cfg["minibatch"],
           "gen_batches": args.gen_batches or cfg["gen_batches"],
           "train_iters": args.train_iters or cfg["train_iters"]}

    # (a) generator.
    z = rng.randn(cfg["gen_batch"], latent).astype(np.float32)
    np.save(tmp / "z.npy", z)
    start = time.perf_counter()
    ours = np.asarray(jax.block_until_ready(generate(gs_vars, z)))
    warm_fx = time.perf_counter() - start
    warm_tf = worker("generate", name=name, z_path=str(tmp / "z.npy"), reps=1,
                     out=str(tmp / "img.npy"))["seconds"]
    theirs = np.load(tmp / "img.npy").transpose(0, 2, 3, 1)
    fx, tf = [], []
    gen_batches = args.gen_batches or cfg["gen_batches"]
    n_img = cfg["gen_batch"] * gen_batches
    for _ in range(args.repeats):
        start = time.perf_counter()
        for _ in range(gen_batches):
            jax.block_until_ready(generate(gs_vars, z))
        fx.append(n_img / (time.perf_counter() - start))
        tf.append(n_img / worker("generate", name=name, z_path=str(tmp / "z.npy"),
                                 reps=gen_batches)["seconds"])
    out["generator"] = {"flaxgan_img_s": _stats(fx), "official_img_s": _stats(tf),
                        "warmup_s": {"flaxgan": round(warm_fx, 2), "official": round(warm_tf, 2)},
                        "max_abs_diff": float(np.max(np.abs(ours - theirs))),
                        "max_abs_image": float(np.max(np.abs(theirs))),
                        "load_avg": _load_avg()}
    print(json.dumps({"config": name, "generator": out["generator"]}), flush=True)

    # (b) training iteration.
    mb, iters = cfg["minibatch"], args.train_iters or cfg["train_iters"]
    total = 1 + args.repeats * iters
    data = {"zd": rng.randn(total, mb, latent).astype(np.float32),
            "zg": rng.randn(total, mb, latent).astype(np.float32),
            "reals": np.clip(rng.randn(4, mb, ch, res, res), -1, 1).astype(np.float32)}
    np.savez(tmp / "train.npz", **data)
    reals_nhwc = data["reals"].transpose(0, 1, 3, 4, 2)
    state = init_state()
    fx_losses, tf_losses = [], []

    def fx_run(first, count):
        nonlocal state
        start = time.perf_counter()
        for i in range(first, first + count):
            state, loss = iteration(state, data["zd"][i], data["zg"][i], reals_nhwc[i % 4])
            fx_losses.append(loss)
        jax.block_until_ready(state)
        return time.perf_counter() - start

    def tf_run(first, count):
        reply = worker("train", name=name, data_path=str(tmp / "train.npz"), first=first,
                       count=count)
        tf_losses.extend(reply["losses"])
        return reply["seconds"]

    lib_run, lib_compiled = _library_step(pkl, cfg, args.library_devices)
    warm = {"flaxgan": round(fx_run(0, 1), 2), "official": round(tf_run(0, 1), 2),
            "flaxgan_library": round(lib_run(data, 0, 1), 2)}
    fx, tf, lib = [], [], []
    for r in range(args.repeats):
        first = 1 + r * iters
        fx.append(fx_run(first, iters) / (iters * mb) * 1e3)
        tf.append(tf_run(first, iters) / (iters * mb) * 1e3)
        lib.append(lib_run(data, first, iters) / (iters * mb) * 1e3)
    if lib_compiled() != 2:  # one Dboth and one Gmain program
        raise RuntimeError(f"flaxgan.train.step compiled {lib_compiled()} programs, not 2")
    if iteration._cache_size() != 1:  # a retrace inside the timed repeats would be timed
        raise RuntimeError(f"flaxgan step compiled {iteration._cache_size()} times")
    ours_l = np.asarray(jax.device_get(fx_losses), np.float64)
    theirs_l = np.asarray(tf_losses, np.float64)
    diff = np.abs(ours_l - theirs_l)
    out["training"] = {
        "flaxgan_sec_per_kimg": _stats(fx), "official_sec_per_kimg": _stats(tf),
        "flaxgan_library_sec_per_kimg": _stats(lib),
        "warmup_iter_s": warm, "iterations": int(total),
        "first_iter_losses": {"flaxgan_D_G": ours_l[0].round(6).tolist(),
                              "official_D_G": theirs_l[0].round(6).tolist()},
        "last_iter_losses": {"flaxgan_D_G": ours_l[-1].round(6).tolist(),
                             "official_D_G": theirs_l[-1].round(6).tolist()},
        "max_abs_loss_diff_first_iter": float(diff[0].max()),
        "max_abs_loss_diff_all_iters": float(diff.max()),
        "load_avg": _load_avg()}
    print(json.dumps({"config": name, "training": out["training"]}), flush=True)
    return out


def common_parser(doc: str, tf_threads: int) -> argparse.ArgumentParser:
    """The flags every side-by-side script of this file shares (`benchmarks.stylegan1_drift`)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--official_repo", default="third_party/stylegan")
    parser.add_argument("--tf_python", default="/tmp/tfvenv/bin/python")
    parser.add_argument("--configs", default="smoke16,small64")
    parser.add_argument("--tf_threads", type=int, default=tf_threads,
                        help="TF intra- and inter-op threads")
    parser.add_argument("--seed", type=int, default=1000)
    return parser


def config_names(configs: str) -> list[str]:
    """`--configs` split and checked against `CONFIGS`."""
    names = configs.split(",")
    unknown = sorted(set(names) - set(CONFIGS))
    if unknown:
        raise SystemExit(f"unknown configs {unknown}; known: {sorted(CONFIGS)}")
    return names


def main() -> None:
    parser = common_parser(__doc__, tf_threads=os.cpu_count())
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--gen_batches", type=int, default=0,
                        help="generator batches per timed repeat (0: the config's)")
    parser.add_argument("--train_iters", type=int, default=0,
                        help="training iterations per timed repeat (0: the config's)")
    parser.add_argument("--library_devices", type=int, default=1,
                        help="host devices of the library step (row c); >1 splits the CPU "
                             "as `experiments.train` does (flaxgan.cpu_layout)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.official_repo, args.tf_threads)
        return

    import jax

    if args.library_devices > 1:  # before JAX starts; rows (a) and (b) still use one device
        jax.config.update("jax_num_cpu_devices", args.library_devices)
    names = config_names(args.configs)
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    official = _Worker(args.tf_python, str(pathlib.Path(args.official_repo).resolve()),
                       args.tf_threads)
    print(json.dumps({
        "machine": f"{cpu}, {os.cpu_count()} CPUs", "load_avg_start": _load_avg(),
        "jax": f"{jax.__version__} ({jax.default_backend()}, {jax.device_count()} device, "
               f"XLA CPU thread pool = all {os.cpu_count()} cores)",
        "tensorflow": official.hello["tensorflow"],
        "tf_threads_intra_inter": [args.tf_threads, args.tf_threads],
        "official": f"NVlabs/stylegan {official.hello['commit']}",
        "repeats": args.repeats}), flush=True)
    results = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for name in names:
                results.append(run_config(name, CONFIGS[name], official, args,
                                          pathlib.Path(tmp)))
    finally:
        official.close()
    print("\n| config | measurement | flaxgan (median, min–max) | official (median, min–max) "
          "| official / flaxgan time | max abs diff |\n|---|---|---|---|---|---|")
    for r in results:
        g, t = r["generator"], r["training"]
        fg, og = g["flaxgan_img_s"], g["official_img_s"]
        ft, ot = t["flaxgan_sec_per_kimg"], t["official_sec_per_kimg"]
        print(f"| {r['config']} | G img/s, batch {r['gen_batch']} × {r['gen_batches']} | "
              f"{fg['median']} "
              f"({fg['min']}–{fg['max']}) | {og['median']} ({og['min']}–{og['max']}) | "
              f"{fg['median'] / og['median']:.2f}× | images {g['max_abs_diff']:.2e} |")
        print(f"| {r['config']} | train sec/kimg, minibatch {r['minibatch']} × "
              f"{r['train_iters']} it | {ft['median']} "
              f"({ft['min']}–{ft['max']}) | {ot['median']} ({ot['min']}–{ot['max']}) | "
              f"{ot['median'] / ft['median']:.2f}× | losses {t['max_abs_loss_diff_all_iters']:.2e}"
              f" |")
        lt = t["flaxgan_library_sec_per_kimg"]
        print(f"| {r['config']} | train sec/kimg, `flaxgan.train.step` | {lt['median']} "
              f"({lt['min']}–{lt['max']}) | {ot['median']} ({ot['min']}–{ot['max']}) | "
              f"{ot['median'] / lt['median']:.2f}× | (random noise: not compared) |")
    print(json.dumps({"load_avg_end": _load_avg()}), flush=True)


if __name__ == "__main__":
    main()
