r"""Why flaxgan's StyleGAN (v1) training losses drift from the official TensorFlow code's.

    python -m benchmarks.stylegan1_drift --official_repo=third_party/stylegan \
        --tf_python=/tmp/tfvenv/bin/python [--configs=smoke16,small64 --iters=81]

`benchmarks.stylegan1` runs the same training iterations on both sides (same weights, latents,
reals, stored noise, style mixing off) and finds the first iteration's losses equal to ~1e-5
while later iterations differ by up to ~1e-2. This study asks whether that is float32 rounding
amplified by training (a GAN's two-player updates are not contracting: a perturbation grows) or
a difference in the algorithm. It runs the same `--iters` iterations four ways and compares the
D and G losses of every iteration:

  * `tf32`: the official code (the benchmark's TF worker), float32;
  * `fx32`: flaxgan's jitted iteration of the benchmark, float32, with TF 1's Adam
    (`flaxgan.train.step.tf1_adam`: ε added to the raw √v, as the official optimizer);
  * `fx64`: the same flaxgan iteration in float64 (`jax_enable_x64`; networks, optimizer state
    and inputs in float64) — the trajectory without float32 rounding, as a reference;
  * `fx64_optax`: `fx64` with `optax.adam` (ε added to the bias-corrected √v̂, as PyTorch), the
    formulation flaxgan trained StyleGAN v1 with before `Hyperparameters.adam`;
  * `fx32_ulp`: `fx32` from initial weights moved by one float32 ulp each (`np.nextafter`).

If `|tf32 − fx64|` grows like `|fx32 − fx64|` and like `|fx32 − fx32_ulp|` (a one-ulp change in
the start), both float32 codes follow the exact trajectory equally well and the drift between
them is rounding amplified by training; an algorithmic difference (a wrong constant, Adam's ε
placement: `fx64_optax`) makes one leave the float64 trajectory much faster than the other.
"""

from __future__ import annotations

import json
import pathlib
import tempfile

import jax
import numpy as np

from benchmarks import stylegan1 as bench

CHECKPOINTS = (1, 2, 5, 10, 20, 40, 80, 160, 320)


def _losses(iteration, state, data: dict, dtype) -> np.ndarray:
    """`[iters, 2]` D and G losses of `iteration` run over every step of `data`."""
    out = []
    reals = data["reals"].transpose(0, 1, 3, 4, 2).astype(dtype)
    for i in range(data["zd"].shape[0]):
        state, loss = iteration(state, data["zd"][i].astype(dtype), data["zg"][i].astype(dtype),
                                reals[i % len(reals)])
        out.append(loss)
    if out[0].dtype != dtype:  # a float32 cast inside the step would void the float64 run
        raise RuntimeError(f"the {dtype} step returned {out[0].dtype} losses")
    return np.asarray(jax.device_get(out), np.float64)


def _one_ulp_up(state):
    """Every float32 weight (not the optimizer's zeros) moved to the next float32 up."""
    move = lambda x: np.nextafter(np.asarray(x), np.float32(np.inf)).astype(np.float32)
    return {**state, "G": jax.tree.map(move, state["G"]), "D": jax.tree.map(move, state["D"]),
            "Gs": jax.tree.map(move, state["Gs"])}


def _growth(a: np.ndarray, b: np.ndarray) -> dict:
    """max |a − b| over D and G losses up to each checkpoint iteration (1-based)."""
    diff = np.abs(a - b).max(axis=1)
    return {str(k): float(f"{diff[:k].max():.3g}") for k in CHECKPOINTS if k <= len(diff)}


def study(name: str, cfg: dict, worker, args, tmp: pathlib.Path) -> dict:
    pkl = str(tmp / f"{name}.pkl")
    worker("build", name=name, G_kwargs=cfg["G"], D_kwargs=cfg["D"],
           minibatch=cfg["minibatch"], pkl=pkl, seed=args.seed)
    rng = np.random.RandomState(args.seed + 7)
    latent, res, ch = cfg["G"]["latent_size"], cfg["G"]["resolution"], cfg["G"]["num_channels"]
    mb = cfg["minibatch"]
    data = {"zd": rng.randn(args.iters, mb, latent).astype(np.float32),
            "zg": rng.randn(args.iters, mb, latent).astype(np.float32),
            "reals": np.clip(rng.randn(4, mb, ch, res, res), -1, 1).astype(np.float32)}
    np.savez(tmp / "train.npz", **data)
    runs = {"tf32": np.asarray(worker("train", name=name, data_path=str(tmp / "train.npz"),
                                      first=0, count=args.iters)["losses"], np.float64)}
    for run, dtype, adam in (("fx32", "float32", "tf1"), ("fx64", "float64", "tf1"),
                             ("fx64_optax", "float64", "pytorch")):
        _, _, iteration, init_state = bench._flaxgan(pkl, cfg, dtype=dtype, adam=adam)
        runs[run] = _losses(iteration, init_state(), data, dtype)
        if run == "fx32":
            runs["fx32_ulp"] = _losses(iteration, _one_ulp_up(init_state()), data, dtype)
    pairs = {"tf32 vs fx64": ("tf32", "fx64"), "fx32 vs fx64": ("fx32", "fx64"),
             "fx32 vs fx32_ulp": ("fx32", "fx32_ulp"), "tf32 vs fx32": ("tf32", "fx32"),
             "fx64_optax vs fx64": ("fx64_optax", "fx64"),
             "tf32 vs fx64_optax": ("tf32", "fx64_optax")}
    out = {"config": name, "iterations": args.iters,
           "loss_scale_D_G": np.abs(runs["fx64"]).mean(axis=0).round(4).tolist(),
           "first_iterations_D_G": {k: v[:3].tolist() for k, v in runs.items()},
           "max_abs_loss_diff_up_to_iteration": {
               label: _growth(runs[a], runs[b]) for label, (a, b) in pairs.items()}}
    print(json.dumps(out), flush=True)
    return out


def main() -> None:
    parser = bench.common_parser(__doc__, tf_threads=2)
    parser.add_argument("--iters", type=int, default=81)
    args = parser.parse_args()
    jax.config.update("jax_enable_x64", True)  # float32 runs keep float32 arrays throughout
    names = bench.config_names(args.configs)
    official = bench._Worker(args.tf_python, str(pathlib.Path(args.official_repo).resolve()),
                             args.tf_threads)
    results = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for name in names:
                results.append(study(name, bench.CONFIGS[name], official, args,
                                     pathlib.Path(tmp)))
    finally:
        official.close()
    print("\n| config | pair | max abs loss difference up to iteration "
          + " / ".join(results[0]["max_abs_loss_diff_up_to_iteration"]["tf32 vs fx64"])
          + " |\n|---|---|---|")
    for r in results:
        for label, growth in r["max_abs_loss_diff_up_to_iteration"].items():
            print(f"| {r['config']} | {label} | "
                  + " / ".join(f"{v:.1e}" for v in growth.values()) + " |")


if __name__ == "__main__":
    main()
