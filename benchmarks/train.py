r"""StyleGAN2-ADA training iteration, flaxgan vs. the official stylegan2-ada-pytorch, side by side.

    python -m benchmarks.train --official_repo=third_party/stylegan2-ada-pytorch \
        [--config=cifar --resolution=32 --batch=32 --cycles=2 --fmaps=1 --channel_max=512 \
         --scaling_devices=8]
    python -m benchmarks.train ... --config=smoke --batch=16       # experiments/configs/smoke.py
    python -m benchmarks.train ... --config=celeba256 --batch=8 --resolution=256  # paper256

`--config=NAME[:variant]` times an experiments config instead (its networks, resolution, loss
settings — R1 γ, path length, style mixing — and ADA pipeline, on both sides from the same kwargs),
at `--batch`, ADA at the fixed `--p`, in `--precision`; `--fmaps` / `--channel_max` / `--resolution`
override it when given (a config that takes its resolution from its dataset needs `--resolution`).
Default configuration: the official `train.py --cfg=cifar` preset (z = w = 512, 2 mapping layers,
channel_base `fmaps * 32768` (fmaps 1), channel_max 512, conv_clamp 256, D architecture `orig`,
minibatch-std group 32, R1 γ 0.01, no path-length regularisation, no style mixing, G EMA 500 kimg
with ramp-up 0.05, Adam lr 0.0025, betas (0, 0.99), lazy regularisation G every 4 / D every 16) with
the official default ADA pipeline `bgc` at a fixed p (`--p`, default 0.2, no ADA adjustment).
`--fmaps` / `--channel_max` shrink both networks alike when the full preset is too slow for the
machine. Reals are random uint8 batches made before timing (no data loading is timed), c_dim 0.
Precision (`--precision`): `fp32` (default) sets `num_fp16_res=0` in both networks, the official
`--fp32`: the same float32 arithmetic on both sides (without it the official code runs its top four
resolutions in float16 even on a CPU); `mixed` keeps the preset's `num_fp16_res=4` (official
float16, flaxgan bfloat16 on accelerators).

Each implementation runs in its own subprocess (so the peak memory is its own):

  * flaxgan: `flaxgan.train.step.make_train_steps` (jitted sharded phases, donated state) and
    `TrainSteps.iteration`, exactly what `flaxgan.train.loop.train` runs per minibatch, on the
    real CPU device (no XLA flag) or on the accelerator.
  * official: the inner iteration of the official `training/training_loop.py` (that loop
    hard-codes CUDA, so it is reproduced step by step here with the official modules imported
    from `--official_repo`): `training.networks.Generator/Discriminator` from the same kwargs,
    `training.augment.AugmentPipe` (bgc, fixed p), `training.loss.StyleGAN2Loss`, Adam with the
    lazy-regularisation lr/beta correction, and per iteration the official phase sequence
    (Gmain, Greg every 4 — an empty optimizer step when pl_weight is 0, as in the official
    loop —, Dmain, Dreg every 16), `nan_to_num` of the gradients, then the G_ema update. On a
    CPU the official custom CUDA ops (bias_act, upfirdn2d, conv2d_gradfix, grid_sample_gradfix)
    fall back to their reference PyTorch implementations, as the official code does by itself
    off CUDA; torch runs with `--torch_threads` threads.

Timing: one untimed warm-up iteration (step 0, which runs every phase: the flaxgan
compilations), then `--cycles` cycles of 16 iterations (so G reg and D reg are included in the
proportion of a real run) timed separately; `sec/kimg` (seconds per 1000 real images) is
the median cycle, with the fastest and slowest beside it; the ratio uses the medians. Peak
memory = the process's peak resident set size (`getrusage`) minus its resident size after
imports. `--scaling_devices=N` also runs
flaxgan on N fake CPU devices (`XLA_FLAGS=--xla_force_host_platform_device_count=N`) and on one,
and prints both iteration times and mean losses (a sanity check of the sharded step: same loss
scale, different time).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

from absl import app, flags

_OFFICIAL = flags.DEFINE_string("official_repo", None,
                                "Clone of NVlabs/stylegan2-ada-pytorch; omit to time flaxgan only.")
_CONFIG = flags.DEFINE_string(
    "config", "cifar", "'cifar' (the official --cfg=cifar preset) or an experiments config "
    "name with optional variant (smoke, celeba32, celeba256 = the official paper256 preset).")
_RESOLUTION = flags.DEFINE_integer("resolution", None,
                                   "Image resolution (default: cifar 32, else the config's).")
_BATCH = flags.DEFINE_integer("batch", 32, "Global batch size.")
_CYCLES = flags.DEFINE_integer("cycles", 3, "Timed cycles of 16 iterations (median, spread).")
_FMAPS = flags.DEFINE_float("fmaps", None, "channel_base = fmaps * 32768 (default: the "
                            "config's; cifar preset: 1).")
_CHANNEL_MAX = flags.DEFINE_integer("channel_max", None, "Channel cap (default: the config's; "
                                    "cifar preset: 512).")
_P = flags.DEFINE_float("p", 0.2, "Fixed ADA augmentation probability.")
_PRECISION = flags.DEFINE_enum(
    "precision", "fp32", ["fp32", "mixed"],
    "fp32: num_fp16_res=0 on both sides (the fair CPU comparison: the official code would run its "
    "top 4 resolutions in float16 on a CPU too); mixed: num_fp16_res=4, each side's own reduced "
    "precision (official float16, flaxgan bfloat16 on accelerators, float32 on CPU).")
_TORCH_THREADS = flags.DEFINE_integer("torch_threads", 2, "torch.set_num_threads for official.")
_SCALING = flags.DEFINE_integer("scaling_devices", 0,
                                "Also run flaxgan on this many fake CPU devices (0 = skip).")
_SIDES = flags.DEFINE_list("sides", ["flaxgan", "official"], "Implementations to run.")
_FLAXGAN_XLA_FLAGS = flags.DEFINE_string(
    "flaxgan_xla_flags", "", "Extra XLA_FLAGS for every flaxgan worker (A/B runs of an XLA "
    "option, e.g. --xla_cpu_experimental_ynn_fusion_type=...; the workers otherwise start "
    "without the caller's XLA_FLAGS).")
_WORKER = flags.DEFINE_enum("worker", None, ["flaxgan", "official"],
                            "Internal: run one side in this process and print its result.")

CYCLE = 16  # lcm of the official lazy-regularisation intervals (G 4, D 16)
RESULT_TAG = "RESULT "


# ------------------------------------------------------------------------------ configuration


def cifar_preset(batch: int):
    """The official `--cfg=cifar` preset as a flaxgan config (32², ADA `bgc`)."""
    from experiments.configs import common

    config = common.stylegan2_config(
        batch_size=batch, gamma=0.01, ema_kimg=500.0, ema_rampup=0.05, mbstd=32, fmaps=1.0,
        mapping_layers=2, total_kimg=100000.0)
    config.model.D_kwargs.architecture = "orig"  # train.py: cfg == 'cifar'
    config.train.pl_weight = 0.0
    config.train.style_mixing_prob = 0.0
    config.data.resolution = 32
    return config


def bench_config(name: str, batch: int, fmaps: float | None, channel_max: int | None,
                 p: float, precision: str = "fp32"):
    """The timed configuration: `name` ('cifar', or an experiments config `file[:variant]`)
    at global batch `batch`, channel_base `fmaps * 32768` / `channel_max` when given, ADA at a
    fixed p on its own pipeline, and `precision='fp32'`: `num_fp16_res=0` in both networks
    (the official `--fp32`)."""
    if name == "cifar":
        config = cifar_preset(batch)
    else:
        import importlib

        module, _, variant = name.partition(":")
        config = importlib.import_module(f"experiments.configs.{module}").get_config(
            variant or None)
        if config.model.G_class != "training.networks.Generator":
            raise app.UsageError(f"--config={name}: only StyleGAN2 configs are benchmarked")
        config.train.batch_size = batch
    synthesis = config.model.G_kwargs.synthesis_kwargs
    if fmaps is not None:
        synthesis.channel_base = config.model.D_kwargs.channel_base = int(fmaps * 32768)
    if channel_max is not None:
        synthesis.channel_max = config.model.D_kwargs.channel_max = channel_max
    config.augment.p = p if config.augment.pipe else 0.0
    config.augment.ada_target = None
    if precision == "fp32":
        synthesis.num_fp16_res = 0
        config.model.D_kwargs.num_fp16_res = 0
    return config


def official_kwargs(config, resolution: int) -> tuple[dict, dict]:
    """G and D constructor kwargs (official names and class names) of `config.model`."""
    model = config.model.to_dict()
    common = dict(c_dim=0, img_resolution=resolution, img_channels=3)
    return ({"class_name": model["G_class"], **model["G_kwargs"], **common},
            {"class_name": model["D_class"], **model["D_kwargs"], **common})


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _real_batches(n: int, batch: int, resolution: int):
    import numpy as np

    rng = np.random.RandomState(123)
    return [rng.randint(0, 256, (batch, resolution, resolution, 3), dtype=np.uint8)
            for _ in range(n)]


def _time_cycles(iterate, sync, cycles: int) -> tuple[float, list[float]]:
    """Warm-up iteration (step 0, all phases), then `cycles` timed cycles of 16 iterations."""
    start = time.perf_counter()
    iterate(0)
    sync()
    warmup = time.perf_counter() - start
    seconds = []
    step = 1
    for _ in range(cycles):
        start = time.perf_counter()
        for _ in range(CYCLE):
            iterate(step)
            step += 1
        sync()
        seconds.append(time.perf_counter() - start)
    return warmup, seconds


# ------------------------------------------------------------------------------------ flaxgan


def run_flaxgan(config, cycles: int) -> dict:
    import jax
    import numpy as np

    from flaxgan import xla_cpu
    from flaxgan.augment import make_augment_fn
    from flaxgan.train import loop, sharding
    from flaxgan.train import state as state_lib
    from flaxgan.train import step as step_lib

    resolution, batch, p = config.data.resolution, config.train.batch_size, config.augment.p
    base_rss = _rss_bytes()
    _, _, G, D = loop.build_networks(config.model, resolution, 3, 0)
    hp = loop.hyperparameters(config.train, config.augment)
    mesh = sharding.make_mesh()
    steps = step_lib.make_train_steps(G, D, hp, mesh, augment=make_augment_fn(config.augment.pipe)
                                     if config.augment.pipe else None)
    g_opt, d_opt = step_lib.make_optimizers(hp)
    g_vars, d_vars = state_lib.init_variables(G, D, jax.random.key(0), resolution, 3, 0)
    state = sharding.replicate(state_lib.create_state(g_vars, d_vars, g_opt, d_opt,
                                                      jax.random.key(1), ada_p=p), mesh)
    batches = [sharding.global_batch({"image": img, "label": np.zeros((batch, 0), np.float32)},
                                     mesh) for img in _real_batches(4, batch, resolution)]
    holder = {"state": state, "metrics": []}

    def iterate(step):
        holder["state"], metrics = steps.iteration(holder["state"], batches[step % 4], step)
        holder["metrics"].append(metrics)

    warmup, seconds = _time_cycles(iterate, lambda: jax.block_until_ready(holder["state"]),
                                   cycles)
    fetched = jax.device_get(holder["metrics"][1:])  # timed iterations only
    losses = {}
    for key in ("Loss/G/loss", "Loss/D/loss", "Loss/r1_penalty", "Loss/signs/real"):
        values = [float(m[key]) for m in fetched if key in m]
        if values:
            losses[key] = float(np.mean(values))
    phases = ",".join(f"{ph.name}/{ph.interval}" for ph in steps.phases)
    return {"impl": "flaxgan", "warmup_s": warmup, "cycle_s": seconds, "losses": losses,
            "peak_rss_delta": _peak_rss_bytes() - base_rss, "base_rss": base_rss,
            "device": f"{jax.device_count()} x {jax.devices()[0].device_kind} "
                      f"({jax.default_backend()})",
            "notes": f"jax {jax.__version__}; phases {phases}; {xla_cpu.describe()}"}


# ----------------------------------------------------------------------------------- official


def run_official(repo: str, config, cycles: int, threads: int) -> dict:
    import copy

    import torch

    sys.path.insert(0, os.path.abspath(repo))
    import dnnlib  # official repository
    from torch_utils import misc, training_stats
    from torch_utils.ops import conv2d_gradfix, grid_sample_gradfix

    torch.set_num_threads(threads)
    resolution, batch, p = config.data.resolution, config.train.batch_size, config.augment.p
    g_kwargs, d_kwargs = official_kwargs(config, resolution)
    base_rss = _rss_bytes()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    conv2d_gradfix.enabled = True  # as training_loop.py (no effect off CUDA)
    grid_sample_gradfix.enabled = True
    batch_gpu = batch  # one process, one round per phase (official batch_gpu = batch / gpus)

    # Networks, augmentation, loss, optimizers: training_loop.py with num_gpus = 1.
    G = dnnlib.util.construct_class_by_name(**g_kwargs).train().requires_grad_(False).to(device)
    D = dnnlib.util.construct_class_by_name(**d_kwargs).train().requires_grad_(False).to(device)
    G_ema = copy.deepcopy(G).eval()
    augment_pipe = None
    if config.augment.pipe:
        if config.augment.pipe != "bgc":
            raise app.UsageError(f"the official side runs ADA 'bgc' or none, not "
                                 f"{config.augment.pipe!r}")
        augpipe = dict(xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1, xfrac=1,
                       brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1)  # 'bgc'
        augment_pipe = dnnlib.util.construct_class_by_name(
            class_name="training.augment.AugmentPipe", **augpipe).train().requires_grad_(False)
        augment_pipe = augment_pipe.to(device)
        augment_pipe.p.copy_(torch.as_tensor(p))  # ada_target None: fixed p
    train = config.train
    loss = dnnlib.util.construct_class_by_name(
        class_name="training.loss.StyleGAN2Loss", device=device, G_mapping=G.mapping,
        G_synthesis=G.synthesis, D=D, augment_pipe=augment_pipe, r1_gamma=train.r1_gamma,
        pl_weight=train.pl_weight, style_mixing_prob=train.style_mixing_prob,
        pl_batch_shrink=train.pl_batch_shrink, pl_decay=train.pl_decay)
    phases = []
    for name, module, lr, reg_interval in (("G", G, train.g_lr, train.g_reg_interval),
                                           ("D", D, train.d_lr, train.d_reg_interval)):
        mb_ratio = reg_interval / (reg_interval + 1)
        opt = torch.optim.Adam(module.parameters(), lr=lr * mb_ratio,
                               betas=[beta ** mb_ratio for beta in train.betas], eps=train.eps)
        phases += [dnnlib.EasyDict(name=name + "main", module=module, opt=opt, interval=1),
                   dnnlib.EasyDict(name=name + "reg", module=module, opt=opt,
                                   interval=reg_interval)]

    reals = [torch.from_numpy(img).permute(0, 3, 1, 2).contiguous()
             for img in _real_batches(4, batch, resolution)]
    labels = torch.zeros([batch, 0])
    ema_kimg, ema_rampup = train.ema_kimg, train.ema_rampup
    progress = {"cur_nimg": 0}

    def iterate(batch_idx):
        # Fetch training data (already decoded uint8, as the DataLoader would hand it over).
        phase_real_img = (reals[batch_idx % 4].to(device).to(torch.float32) / 127.5 - 1
                          ).split(batch_gpu)
        phase_real_c = labels.to(device).split(batch_gpu)
        all_gen_z = torch.randn([len(phases) * batch, G.z_dim], device=device)
        all_gen_z = [z.split(batch_gpu) for z in all_gen_z.split(batch)]
        all_gen_c = torch.zeros([len(phases) * batch, 0], device=device)  # c_dim 0
        all_gen_c = [c.split(batch_gpu) for c in all_gen_c.split(batch)]
        # Training phases.
        for phase, phase_gen_z, phase_gen_c in zip(phases, all_gen_z, all_gen_c, strict=True):
            if batch_idx % phase.interval != 0:
                continue
            phase.opt.zero_grad(set_to_none=True)
            phase.module.requires_grad_(True)
            for real_img, real_c, gen_z, gen_c in zip(phase_real_img, phase_real_c, phase_gen_z,
                                                      phase_gen_c, strict=True):
                loss.accumulate_gradients(phase=phase.name, real_img=real_img, real_c=real_c,
                                          gen_z=gen_z, gen_c=gen_c, sync=True,
                                          gain=phase.interval)
            phase.module.requires_grad_(False)
            for param in phase.module.parameters():
                if param.grad is not None:
                    misc.nan_to_num(param.grad, nan=0, posinf=1e5, neginf=-1e5, out=param.grad)
            phase.opt.step()
        # G_ema.
        ema_nimg = ema_kimg * 1000
        if ema_rampup is not None:
            ema_nimg = min(ema_nimg, progress["cur_nimg"] * ema_rampup)
        ema_beta = 0.5 ** (batch / max(ema_nimg, 1e-8))
        with torch.no_grad():
            for p_ema, p_cur in zip(G_ema.parameters(), G.parameters(), strict=True):
                p_ema.copy_(p_cur.lerp(p_ema, ema_beta))
            for b_ema, b in zip(G_ema.buffers(), G.buffers(), strict=True):
                b_ema.copy_(b)
        progress["cur_nimg"] += batch

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    collector = training_stats.Collector(regex="Loss/.*")
    warmup, seconds = _time_cycles(iterate, sync, cycles)
    collector.update()  # averages of everything reported since the last update (all iterations)
    losses = {key: float(collector.mean(key)) for key in
              ("Loss/G/loss", "Loss/D/loss", "Loss/r1_penalty", "Loss/signs/real")
              if collector.num(key)}
    return {"impl": "official", "warmup_s": warmup, "cycle_s": seconds, "losses": losses,
            "peak_rss_delta": _peak_rss_bytes() - base_rss, "base_rss": base_rss,
            "device": f"torch {torch.__version__} on {device} ({torch.get_num_threads()} threads)",
            "notes": "custom CUDA ops use their reference PyTorch implementations"
                     if device.type == "cpu" else "custom CUDA ops"}


# ------------------------------------------------------------------------------------- driver


def _spawn(worker: str, env_extra: dict[str, str]) -> dict:
    """Runs one side in a fresh interpreter (its own peak RSS) and returns its result."""
    argv = [sys.executable, "-m", "benchmarks.train", f"--worker={worker}",
            f"--config={_CONFIG.value}", f"--batch={_BATCH.value}",
            f"--cycles={_CYCLES.value}", f"--p={_P.value}",
            f"--torch_threads={_TORCH_THREADS.value}", f"--precision={_PRECISION.value}"]
    for flag in (_RESOLUTION, _FMAPS, _CHANNEL_MAX):
        if flag.value is not None:
            argv.append(f"--{flag.name}={flag.value}")
    if _OFFICIAL.value:
        argv.append(f"--official_repo={_OFFICIAL.value}")
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    env.update(env_extra)
    if worker == "flaxgan" and _FLAXGAN_XLA_FLAGS.value:
        env["XLA_FLAGS"] = " ".join(filter(None, [env.get("XLA_FLAGS"), _FLAXGAN_XLA_FLAGS.value]))
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    load_before = os.getloadavg()[0]
    out = subprocess.run(argv, env=env, cwd=root, capture_output=True, text=True, check=False)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith(RESULT_TAG)]
    if out.returncode or not lines:
        sys.stderr.write(out.stderr[-4000:])
        raise RuntimeError(f"{worker} worker failed (exit {out.returncode})")
    result = json.loads(lines[-1][len(RESULT_TAG):])
    result["load_avg_1min"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    return result


def _summarise(result: dict, batch: int) -> dict:
    per_kimg = [s / (CYCLE * batch) * 1e3 for s in result["cycle_s"]]
    median = statistics.median(result["cycle_s"])
    return {"impl": result["impl"], "device": result["device"],
            "sec_per_kimg": round(statistics.median(per_kimg), 2),
            "sec_per_kimg_min_max": [round(min(per_kimg), 2), round(max(per_kimg), 2)],
            "sec_per_iter": round(median / CYCLE, 3),
            "warmup_iter_s": round(result["warmup_s"], 2),
            "peak_rss_delta_mib": round(result["peak_rss_delta"] / 2**20, 1),
            "losses": {k: round(v, 5) for k, v in result["losses"].items()},
            "load_avg_1min_before_after": result["load_avg_1min"],
            "notes": result["notes"]}


def _flag_config():
    """`bench_config` of the command line's flags (`--resolution` over the config's)."""
    config = bench_config(_CONFIG.value, _BATCH.value, _FMAPS.value, _CHANNEL_MAX.value,
                          _P.value, _PRECISION.value)
    if _RESOLUTION.value is not None:
        config.data.resolution = _RESOLUTION.value
    if not config.data.get("resolution"):
        raise app.UsageError(f"--config={_CONFIG.value} takes its resolution from its dataset: "
                             f"give --resolution")
    return config


def main(argv: list[str]) -> None:
    del argv
    if _WORKER.value == "flaxgan":
        result = run_flaxgan(_flag_config(), _CYCLES.value)
    elif _WORKER.value == "official":
        if not _OFFICIAL.value:
            raise app.UsageError("--official_repo is required for the official side")
        result = run_official(_OFFICIAL.value, _flag_config(), _CYCLES.value,
                              _TORCH_THREADS.value)
    else:
        result = None
    if result is not None:
        print(RESULT_TAG + json.dumps(result), flush=True)
        return

    batch = _BATCH.value
    config = _flag_config()
    synthesis = config.model.G_kwargs.synthesis_kwargs
    print(json.dumps({"config": _CONFIG.value, "resolution": config.data.resolution,
                      "batch": batch, "channel_base": synthesis.channel_base,
                      "channel_max": synthesis.channel_max,
                      "augpipe": config.augment.pipe, "p": config.augment.p,
                      "pl_weight": config.train.pl_weight,
                      "style_mixing_prob": config.train.style_mixing_prob,
                      "precision": _PRECISION.value,
                      "timed_iterations": CYCLE * _CYCLES.value,
                      "machine": f"{platform.processor() or platform.machine()}, "
                                 f"{os.cpu_count()} CPUs"}), flush=True)
    summaries = {}
    sides = [s for s in _SIDES.value if s == "flaxgan" or _OFFICIAL.value]
    for side in sides:
        summaries[side] = _summarise(_spawn(side, {}), batch)
        print(json.dumps(summaries[side]), flush=True)
    if "flaxgan" in summaries and "official" in summaries:
        fx, of = summaries["flaxgan"], summaries["official"]
        print(json.dumps({
            "ratio_sec_per_kimg_official_over_flaxgan":
                round(of["sec_per_kimg"] / fx["sec_per_kimg"], 3),
            "ratio_peak_rss_official_over_flaxgan":
                round(of["peak_rss_delta_mib"] / fx["peak_rss_delta_mib"], 3)}), flush=True)
        print(f"\n| implementation | sec/kimg (median) | min-max | peak RSS Δ MiB |\n"
              f"|---|---|---|---|\n"
              f"| flaxgan ({fx['device']}) | {fx['sec_per_kimg']} | "
              f"{fx['sec_per_kimg_min_max']} | {fx['peak_rss_delta_mib']} |\n"
              f"| official ({of['device']}) | {of['sec_per_kimg']} | "
              f"{of['sec_per_kimg_min_max']} | {of['peak_rss_delta_mib']} |\n"
              f"official / flaxgan: time {of['sec_per_kimg'] / fx['sec_per_kimg']:.2f}x "
              f"(>1 = flaxgan faster), memory "
              f"{of['peak_rss_delta_mib'] / fx['peak_rss_delta_mib']:.2f}x\n", flush=True)
    if _SCALING.value:
        one = summaries.get("flaxgan") or _summarise(_spawn("flaxgan", {}), batch)
        many = _summarise(_spawn("flaxgan", {
            "XLA_FLAGS": f"--xla_force_host_platform_device_count={_SCALING.value}"}), batch)
        print(json.dumps(many), flush=True)
        print(json.dumps({"scaling_devices": [1, _SCALING.value],
                          "sec_per_iter": [one["sec_per_iter"], many["sec_per_iter"]],
                          "speedup": round(one["sec_per_iter"] / many["sec_per_iter"], 3),
                          "losses": [one["losses"], many["losses"]]}), flush=True)


if __name__ == "__main__":
    app.run(main)
