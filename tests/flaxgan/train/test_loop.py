"""The training loop end to end on real faces: outputs, resume, divergence, bad set-ups."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import types

import ml_collections
import numpy as np
import pytest
from PIL import Image

from flaxgan import convert, sample
from flaxgan.train import checkpoint, loop
from tests.conftest import REPO_ROOT, TEST_DATA
from tests.flaxgan.train import tiny_run as tiny


def test_writes_metrics_grids_checkpoints_and_exports(tiny_run):
    workdir, record = tiny_run
    records = tiny.records(workdir)
    assert [r["tick"] for r in records] == [1, 2]
    assert records[-1]["kimg"] == pytest.approx(0.032)
    for key in ("Loss/G/loss", "Loss/D/loss", "Loss/r1_penalty", "Loss/pl_penalty",
                "Progress/augment", "Timing/sec_per_kimg", "Timing/images_per_sec",
                "Resources/peak_host_rss_mib"):
        assert np.isfinite(records[-1][key]), key
    samples = os.listdir(os.path.join(workdir, "samples"))
    assert {"reals.png", "fakes_init.png"} <= set(samples) and len(samples) == 4
    assert os.listdir(os.path.join(workdir, "tensorboard"))
    assert checkpoint.Checkpointer(workdir).latest_step() == 4
    # The export is an official-format state dict that sample.load reads back.
    snapshot = os.path.join(workdir, "snapshots", "network-snapshot-000000")
    assert sorted(os.listdir(snapshot)) == ["D.npz", "G.npz", "G_ema.npz", "network.json"]
    g = sample.load(snapshot)
    assert (g.img_resolution, g.z_dim) == (8, 16)
    images = sample.generate(g, [0, 1])
    assert images[0].size == (8, 8)


def test_tick_record_reports_peak_host_rss_in_mib():
    state = types.SimpleNamespace(ada_signs=np.array([1.0, 2.0]), ada_p=np.float32(0.25),
                                  pl_mean=np.float32(0.0))
    record = loop._tick_record(1, 64, 0, 2.0, [{"Loss/G/loss": np.float32(1.5)}], state)
    assert record["Loss/G/loss"] == 1.5 and record["Progress/augment"] == 0.25
    rss = record["Resources/peak_host_rss_mib"]
    if os.path.exists("/proc/self/status"):  # Linux: the kernel's own peak (VmHWM, kB)
        with open("/proc/self/status") as f:
            hwm = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
        assert rss == pytest.approx(hwm / 1024, rel=0.05)
    assert 10 < rss < 2**20


def test_tensorboard_counts_whole_kimg_and_tags_metrics_as_official(tmp_path):
    calls = []

    class Recorder:
        def add_scalar(self, tag, value, step):
            calls.append((tag, value, step))

        def flush(self):
            pass

        def close(self):
            pass

    writers = loop._Writers(str(tmp_path), enabled=True)
    if writers.tb is not None:
        writers.tb.close()
    writers.tb = Recorder()
    writers.scalars({"tick": 3, "kimg": 2.5, "Loss/G/loss": 1.0, "fid1k_full": 30.0}, 2.5)
    writers.close()
    assert calls == [("Loss/G/loss", 1.0, 2), ("Metrics/fid1k_full", 30.0, 2)]
    assert [loop.tensorboard_step(k) for k in (0.016, 1.0, 2.999, 1200.5)] == [0, 1, 2, 1200]
    assert json.loads((tmp_path / "metrics.jsonl").read_text())["kimg"] == 2.5


def test_resumes_where_it_stopped(tiny_run, tmp_path):
    workdir = str(tmp_path / "resumed")
    shutil.copytree(tiny_run[0], workdir)
    record = loop.train(tiny.config(total_kimg=tiny.BATCH * 6 / 1000), workdir)
    records = tiny.records(workdir)
    assert [r["tick"] for r in records] == [1, 2, 3]
    assert record["kimg"] == pytest.approx(0.048)
    assert checkpoint.Checkpointer(workdir).latest_step() == 6
    # Already done: a rerun restores and returns without training.
    assert loop.train(tiny.config(total_kimg=tiny.BATCH * 6 / 1000), workdir) == {}
    assert len(tiny.records(workdir)) == 3


def test_divergence_stops_and_keeps_the_last_checkpoint(tiny_run, tmp_path):
    workdir = str(tmp_path / "diverged")
    shutil.copytree(tiny_run[0], workdir)
    config = tiny.config(total_kimg=tiny.BATCH * 8 / 1000)
    config.train.d_lr = float("nan")
    with pytest.raises(loop.TrainingDiverged, match="non-finite"):
        loop.train(config, workdir)
    ckpt = checkpoint.Checkpointer(workdir)
    assert ckpt.latest_step() == 4


def test_checkpoint_of_another_model_is_one_clear_error(tiny_run, tmp_path):
    workdir = str(tmp_path / "other")
    shutil.copytree(tiny_run[0], workdir)
    with pytest.raises(checkpoint.CheckpointError, match="does not match"):
        loop.train(tiny.config(total_kimg=tiny.BATCH * 8 / 1000, channel_max=8), workdir)


def test_missing_dataset_names_the_command_that_prepares_it(tmp_path):
    config = tiny.config(total_kimg=0.1)
    config.data.name = "celeba_faces/mtcnn_256"
    config.data.data_dir = str(tmp_path / "no_datasets")
    config.data.prepare = "python -m data_pipelines.build celeba_faces --manual_dir=DIR"
    with pytest.raises(loop.DatasetNotPrepared, match="python -m data_pipelines.build"):
        loop.train(config, str(tmp_path / "run"))


def test_cli_resolves_bare_config_names_variants_and_overrides(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TFDS_DATA_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "experiments.train", "--config=celeba256.py:short",
         f"--workdir={tmp_path / 'run'}", "--config.train.batch_size=8"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: dataset 'celeba_faces/mtcnn_256' is not available "
                           f"(not prepared in {tmp_path})")
    assert "python -m data_pipelines.build celeba_faces" in last
    assert last.endswith("--config.data.data_dir=DIR")
    assert not (tmp_path / "run").exists()  # refused before the run starts


@pytest.mark.parametrize("name", ["smoke", "celeba256", "casia256", "ffhq256",
                                  "arcane_celeba64", "arcane_celeba64:r", "smoke:stylegan1",
                                  "celeba256:stylegan1", "casia256:stylegan1"])
def test_every_config_builds_its_networks_and_hyperparameters(name):
    module, _, variant = name.partition(":")
    config = __import__(f"experiments.configs.{module}", fromlist=["get_config"]).get_config(
        variant or None)
    hp = loop.hyperparameters(config.train, config.augment)
    assert hp.batch_size == config.train.batch_size
    g_kwargs, d_kwargs, G, D = loop.build_networks(config.model, 64, 3, 0)
    assert G.img_resolution == 64 and D.img_resolution == 64
    assert g_kwargs["class_name"].startswith("training.")


def _snapshot_arrays(workdir):
    snapshot = os.path.join(workdir, "snapshots", "network-snapshot-000000")
    out = {}
    for key in ("G", "D", "G_ema"):
        with np.load(os.path.join(snapshot, f"{key}.npz")) as f:
            out.update({f"{key}/{name}": f[name] for name in f.files})
    return out


def test_resume_equals_uninterrupted_training_bit_for_bit(tiny_run, tmp_path):
    """2 iterations + resume for 2 more == the 4 uninterrupted iterations of `tiny_run`:
    parameters, EMA, optimizer moments (through the updates), RNG and data position."""
    workdir = str(tmp_path / "halves")
    loop.train(tiny.config(total_kimg=tiny.BATCH * 2 / 1000), workdir)
    loop.train(tiny.config(total_kimg=tiny.BATCH * 4 / 1000), workdir)
    want, got = _snapshot_arrays(tiny_run[0]), _snapshot_arrays(workdir)
    # Bit equality is the contract here: both runs execute the same compiled steps on the same
    # machine and device count from a bit-exact restored state.
    assert want.keys() == got.keys()
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    assert tiny.records(workdir)[-1]["Loss/G/loss"] == tiny.records(tiny_run[0])[1]["Loss/G/loss"]


CONFIG_FILE = """
from tests.flaxgan.train.tiny_run import config

def get_config(arg=None):
    return config(total_kimg={total_kimg})
"""


def test_sigkill_mid_run_keeps_finished_checkpoints_and_resumes(tiny_run, tmp_path):
    total_kimg = tiny.BATCH * 8 / 1000
    config_path = tmp_path / "tiny.py"
    config_path.write_text(CONFIG_FILE.format(total_kimg=total_kimg))
    workdir = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "experiments.train", f"--config={config_path}",
         f"--workdir={workdir}"], cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 600
        while not (workdir / "checkpoints" / "2").is_dir():
            assert process.poll() is None, "training exited before its first checkpoint"
            assert time.time() < deadline, "no checkpoint within 10 minutes"
            time.sleep(0.2)
        time.sleep(0.5)  # now inside a later tick (or its checkpoint save)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    finished = checkpoint.Checkpointer(str(workdir)).latest_step()
    assert finished is not None and finished >= 2
    record = loop.train(tiny.config(total_kimg=total_kimg), str(workdir))
    assert record["kimg"] == pytest.approx(total_kimg)
    assert checkpoint.Checkpointer(str(workdir)).latest_step() == 8
    ticks = [r["tick"] for r in tiny.records(str(workdir))]
    assert ticks[-1] == 4 and sorted(set(ticks)) == [1, 2, 3, 4]


def _config_with_metric(name: str, evaluator, tmp_path, monkeypatch
                        ) -> ml_collections.ConfigDict:
    """`_config` (two ticks) evaluating the metric `name` every tick; `name` is registered for
    this test only (other tests in the worker list the registry's names)."""
    from flaxgan.metrics import registry

    monkeypatch.setitem(registry._METRICS, name, evaluator)
    config = tiny.config(total_kimg=tiny.BATCH * 4 / 1000)
    config.log.metrics = (name,)
    config.log.metrics_every_ticks = 1
    config.log.metrics_cache_dir = str(tmp_path / "cache")
    return config


def test_metric_hook_keeps_the_best_checkpoint(tmp_path, monkeypatch):
    from flaxgan.metrics import detectors, fid, stats

    def fid_tiny(ctx):
        # FID of 16 real and 16 generated images on 2x2-pixel colour means (12 features): the
        # hook and the best checkpoint are under test here, not Inception (tests/flaxgan/metrics
        # run it), whose 299² forward would be most of this test's time on a CPU.
        def moments(source):
            images = next(iter(source.batches(16)))[:16].astype(np.float64)
            n, h, w, c = images.shape
            means = images.reshape(n, 2, h // 2, 2, w // 2, c).mean(axis=(2, 4))
            return stats.moments_update(stats.moments_init(4 * c), means.reshape(n, -1))
        return {"fid_tiny": fid.fid_from_moments(moments(ctx.fake), moments(ctx.real))}, \
            {"real": 16, "fake": 16}

    monkeypatch.setattr(detectors, "load_detectors", lambda metrics, **kwargs: {})
    config = _config_with_metric("fid_tiny", fid_tiny, tmp_path, monkeypatch)
    workdir = str(tmp_path / "run")
    record = loop.train(config, workdir)
    with open(os.path.join(workdir, "metrics-eval.jsonl")) as f:
        evaluations = [json.loads(line) for line in f]
    assert [e["metric"] for e in evaluations] == ["fid_tiny", "fid_tiny"]
    assert all(e["value"] > 0 and e["num_images"]["fake"] == 16 for e in evaluations)
    assert record["fid_tiny"] == evaluations[-1]["value"]
    best = min(range(2), key=lambda i: evaluations[i]["value"])
    assert checkpoint.Checkpointer(workdir, best_metric="fid_tiny").best_step() == 2 * (best + 1)


def test_a_failing_metric_keeps_the_training_it_interrupts(tmp_path, monkeypatch):
    """The metric hook runs before the tick's checkpoint (which records the value); when it
    fails, that checkpoint is still written before the error propagates."""
    def broken_metric(ctx):
        raise RuntimeError("metric exploded")

    config = _config_with_metric("broken_metric", broken_metric, tmp_path, monkeypatch)
    workdir = str(tmp_path / "run")
    with pytest.raises(RuntimeError, match="metric exploded"):
        loop.train(config, workdir)
    assert checkpoint.Checkpointer(workdir).latest_step() == 2  # the first tick's iterations
    assert os.listdir(os.path.join(workdir, "snapshots"))


def _official_config(reference: str) -> ml_collections.ConfigDict:
    """`_config` with the networks of an official reference snapshot (its json kwargs)."""
    with open(TEST_DATA / "reference" / f"{reference}.json") as f:
        kwargs = json.load(f)
    config = tiny.config(total_kimg=0)
    config.data.resolution = kwargs["G_kwargs"]["img_resolution"]
    drop = {"class_name", "img_resolution", "img_channels", "c_dim"}
    for net in ("G", "D"):
        net_kwargs = kwargs[f"{net}_kwargs"]
        config.model[f"{net}_class"] = net_kwargs["class_name"]
        config.model[f"{net}_kwargs"] = {k: v for k, v in net_kwargs.items() if k not in drop}
    config.resume_pkl = str(TEST_DATA / "reference" / f"{reference}.pkl")
    return config


def test_resume_pkl_starts_from_the_official_snapshot(tmp_path):
    """The first grid of a run started from an official pickle is that pickle's G_ema."""
    config = _official_config("sg2_uncond32")
    workdir = str(tmp_path / "from_pkl")
    assert loop.train(config, workdir) == {}  # total_kimg 0: set up, render, stop
    with open(os.path.join(workdir, "config.json")) as f:
        assert json.load(f)["resume_pkl"] == config.resume_pkl
    _assert_first_grid_is(sample.load(config.resume_pkl), config, workdir)


def _assert_first_grid_is(g: sample.LoadedGenerator, config, workdir: str) -> None:
    """The run's `fakes_init.png` is `g`'s grid (to 1/255: the same float32 network, uint8)."""
    z, _ = loop._grid_latents(g.module, tuple(config.log.grid_size), np.zeros((0, 0)),
                              config.seed)
    want = sample.to_uint8(sample.synthesize(g, sample.mapping(g, z), noise_mode="const"))
    got = np.asarray(Image.open(os.path.join(workdir, "samples", "fakes_init.png")))
    np.testing.assert_allclose(got, np.asarray(sample.grid(want, config.log.grid_size[0])),
                               atol=1)


def test_fine_tuning_starts_from_a_float16_bundle(tiny_run, tmp_path):
    """The demo's fine-tuning path: an export in the bundled models' format (G_ema and D with
    float16 parameters) starts a new run (G from G_ema), which then trains."""
    snapshot = os.path.join(tiny_run[0], "snapshots", "network-snapshot-000000")
    bundle = str(tmp_path / "bundle")
    for key in ("G_ema", "D"):
        kwargs, parameters, buffers = sample.read_export(snapshot, key)
        sample.export_variables(bundle, key, kwargs, convert.to_flax(parameters, buffers),
                                param_dtype=np.float16)
    with np.load(os.path.join(bundle, "G_ema.npz")) as f:
        assert f["synthesis.b8.conv0.weight"].dtype == np.float16
    config = tiny.config(total_kimg=tiny.BATCH * 2 / 1000)
    config.resume_pkl = bundle
    workdir = str(tmp_path / "finetune")
    record = loop.train(config, workdir)
    assert record["kimg"] == pytest.approx(tiny.BATCH * 2 / 1000)
    assert np.isfinite(tiny.records(workdir)[-1]["Loss/G/loss"])
    _assert_first_grid_is(sample.load(bundle), config, workdir)


def test_resume_pkl_of_another_model_is_one_clear_error(tmp_path):
    config = _official_config("sg2_uncond32")
    config.model.G_kwargs.w_dim = 64
    with pytest.raises(Exception, match=r"sg2_uncond32\.pkl.*shape") as error:
        loop.train(config, str(tmp_path / "mismatch"))
    assert "\n" not in str(error.value)
