r"""Where a flaxgan training iteration's time goes: each phase program timed on its own.

    python -m benchmarks.train_phases --batch=16 --fmaps=0.125 --channel_max=128 [--repeats=8]
    python -m benchmarks.train_phases ... --cpu_devices=2     # the training CPU layout

The configuration of `benchmarks/train.py` and its flags (`--config`, default the cifar preset,
scaled by `--fmaps` / `--channel_max`; `--batch`; float32; the config's ADA pipeline at a fixed
`--p`). Each jitted program of `flaxgan.train.step` — the config's phases (the cifar preset:
Gmain, Dmain, Dreg; no path length) and `finish` (G EMA, counters, ADA) — runs `--repeats` times
after its first (compiling) call, each call waited for; the host → device transfer of a batch
likewise. The same phases built without augmentation give the ADA pipeline's share (a config
without ADA is timed once, as is). Reported: compile (first call − median), median ms per call
(min–max), and ms per iteration (× 1/interval), whose sum is compared with timed whole
iterations.
"""

from __future__ import annotations

import json
import statistics
import time

from absl import app, flags

from benchmarks import train as train_bench  # its flags: --config, --fmaps, --batch, ...

_REPEATS = flags.DEFINE_integer("repeats", 8, "Timed calls per program.")
_CPU_DEVICES = flags.DEFINE_integer("cpu_devices", None, "Host devices (default: JAX's).")


def _time_calls(call, repeats: int) -> dict:
    """First call (compile + run) and `repeats` more, each waited for; seconds."""
    import jax

    start = time.perf_counter()
    jax.block_until_ready(call())
    first = time.perf_counter() - start
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(call())
        seconds.append(time.perf_counter() - start)
    median = statistics.median(seconds)
    return {"compile_s": round(first - median, 2), "ms": round(1e3 * median, 1),
            "ms_min_max": [round(1e3 * min(seconds), 1), round(1e3 * max(seconds), 1)]}


def main(argv) -> None:
    del argv
    if _CPU_DEVICES.value:
        import jax
        jax.config.update("jax_num_cpu_devices", _CPU_DEVICES.value)
    import jax
    import numpy as np

    from flaxgan.augment import make_augment_fn
    from flaxgan.train import loop, sharding
    from flaxgan.train import state as state_lib
    from flaxgan.train import step as step_lib

    config = train_bench._flag_config()
    batch, resolution = config.train.batch_size, config.data.resolution
    _, _, G, D = loop.build_networks(config.model, resolution, 3, 0)
    hp = loop.hyperparameters(config.train, config.augment)
    mesh = sharding.make_mesh()
    g_opt, d_opt = step_lib.make_optimizers(hp)
    images = train_bench._real_batches(4, batch, resolution)
    host = {"image": images[0], "label": np.zeros((batch, 0), np.float32)}
    batch_on_device = sharding.global_batch(host, mesh)
    rows = {"host->device batch": _time_calls(lambda: sharding.global_batch(host, mesh),
                                              _REPEATS.value)}
    intervals = {}
    builds = ((("", make_augment_fn(config.augment.pipe)),) if config.augment.pipe else ()) + (
        (" (no augmentation)", None),)
    timed_label = builds[0][0]  # the run's own phases: also timed as whole iterations
    timed = []  # their rows, whose per-iteration sum is compared with the whole iterations
    for label, augment in builds:
        steps = step_lib.make_train_steps(G, D, hp, mesh, augment=augment)
        # Fresh variables each time: the phases donate (delete) the state they are given.
        g_vars, d_vars = state_lib.init_variables(G, D, jax.random.key(0), resolution, 3, 0)
        state = sharding.replicate(state_lib.create_state(
            g_vars, d_vars, g_opt, d_opt, jax.random.key(1), ada_p=config.augment.p), mesh)
        holder = {"state": state}

        def phase_call(fn, holder=holder):
            def call():
                holder["state"], metrics = fn(holder["state"], batch_on_device)
                return metrics
            return call

        for phase in steps.phases:
            rows[phase.name + label] = _time_calls(phase_call(steps.run_phase[phase.name]),
                                                   _REPEATS.value)
            intervals[phase.name + label] = phase.interval
            if label == timed_label:
                timed.append(phase.name + label)
        if label == timed_label:
            def finish(holder=holder, steps=steps):
                holder["state"] = steps.finish(holder["state"])
                return holder["state"].step
            rows["finish (EMA, counters, ADA)"] = _time_calls(finish, _REPEATS.value)
            intervals["finish (EMA, counters, ADA)"] = 1
            timed.append("finish (EMA, counters, ADA)")
            start = time.perf_counter()
            for i in range(train_bench.CYCLE):
                holder["state"], _ = steps.iteration(holder["state"], batch_on_device, i + 1)
            jax.block_until_ready(holder["state"])
            whole = 1e3 * (time.perf_counter() - start) / train_bench.CYCLE
    for name, row in rows.items():
        row["ms_per_iteration"] = round(row["ms"] / intervals.get(name, 1), 1)
    summary = {"devices": jax.device_count(),
               "channel_max": config.model.G_kwargs.synthesis_kwargs.channel_max,
               "batch": batch, "phases": rows,
               "sum_of_phases_ms_per_iteration": round(
                   sum(rows[n]["ms_per_iteration"] for n in timed), 1),
               "whole_iteration_ms": round(whole, 1)}
    print(json.dumps(summary))
    print(f"\n{summary['devices']} host devices, {summary['channel_max']} channels, batch "
          f"{batch}\n| program | compile s | ms per call (min–max) | ms per iteration |\n"
          f"|---|---|---|---|")
    for name, row in rows.items():
        low, high = row["ms_min_max"]
        print(f"| {name} | {row['compile_s']} | {row['ms']} ({low}–{high}) | "
              f"{row['ms_per_iteration']} |")
    print(f"| sum of the run's programs | | | {summary['sum_of_phases_ms_per_iteration']} |\n"
          f"| whole iterations, timed | | | {summary['whole_iteration_ms']} |")

if __name__ == "__main__":
    app.run(main)
