"""Shared pytest fixtures and paths."""

import gc
import hashlib
import json
import os
import pathlib
import platform
import resource

import jax
import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
TEST_DATA = REPO_ROOT / "tests" / "data"


def _cpu_signature() -> str:
    """A short hash of this CPU's model and instruction-set flags: XLA CPU code is compiled for
    the host's instruction set, so a cache written on one CPU must never serve another."""
    try:
        lines = pathlib.Path("/proc/cpuinfo").read_text().splitlines()
        info = sorted({ln for ln in lines if ln.startswith(("flags", "model name", "Features"))})
    except OSError:
        info = []
    text = "\n".join([platform.machine(), *info])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _enable_compilation_cache() -> None:
    """JAX's persistent compilation cache for the test run (`.jax_cache/`, git-ignored).

    The two xdist workers and the entry points the tests start as subprocesses compile many of
    the same programs; each compiles once per run (and not at all on a re-run). Only programs
    that take a while to compile are stored.
    """
    if os.environ.get("FLAXGAN_TEST_NO_JAX_CACHE"):
        return
    path = REPO_ROOT / ".jax_cache" / _cpu_signature()
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(path))  # subprocesses
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
    jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
    jax.config.update("jax_persistent_cache_min_compile_time_secs",
                      float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))


_enable_compilation_cache()


def reference_dirs() -> list[pathlib.Path]:
    """Every directory whose reference vectors the parity tests check.

    FLAXGAN_REFERENCE_DIR (one or more directories joined by os.pathsep) when set; otherwise the
    vendored official files plus the extra configurations recorded with tools/make_reference.py,
    the StyleGAN v1 ones recorded with tools/make_reference_stylegan1.py and the TF StyleGAN2
    ones recorded with tools/make_reference_tf_stylegan2.py.
    """
    if "FLAXGAN_REFERENCE_DIR" in os.environ:
        return [pathlib.Path(p) for p in os.environ["FLAXGAN_REFERENCE_DIR"].split(os.pathsep) if p]
    return [TEST_DATA / "reference", TEST_DATA / "reference_extra",
            TEST_DATA / "reference_stylegan1", TEST_DATA / "reference_tf_stylegan2"]


def xla_flags(devices: int) -> str:
    """This process's `XLA_FLAGS` (the suite's compile flags under `make test`) with
    `devices` fake CPU devices, for the subprocesses tests start."""
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split()
             if not f.startswith("--xla_force_host_platform_device_count")]
    return " ".join([f"--xla_force_host_platform_device_count={devices}", *flags])


# Generator class name suffix -> family of the parity tests that check it.
_FAMILIES = {"networks_stylegan3.Generator": "stylegan3",
             "networks_stylegan.G_style": "stylegan1",
             "networks_stylegan2.G_main": "tf_stylegan2"}


def reference_family(meta: dict) -> str:
    """'stylegan1', 'stylegan2', 'stylegan3' or 'tf_stylegan2' (official TF StyleGAN2
    snapshots) from a reference `.json`'s generator class."""
    name = meta["G_kwargs"]["class_name"]
    return next((f for suffix, f in _FAMILIES.items() if name.endswith(suffix)), "stylegan2")


def reference_files(family: str) -> list[pathlib.Path]:
    """The `.npz` reference files whose generator belongs to `family` ('stylegan1', 'stylegan2',
    'stylegan3' or 'tf_stylegan2').

    The family comes from the generator class name in the matching `.json`, never the file name.
    """
    return [npz for directory in reference_dirs() for npz in sorted(directory.glob("*.npz"))
            if reference_family(json.loads(npz.with_suffix(".json").read_text())) == family]


@pytest.fixture(scope="session")
def test_data_dir() -> pathlib.Path:
    return TEST_DATA


# --- Where the suite's time goes (opt-in): FLAXGAN_TEST_COMPILE_LOG=DIR writes, per xdist
# worker, each test's XLA compile time, tracing time and persistent-cache hits/misses (the
# suite is compile-bound on CPU; this says which tests compile what the cache cannot share).
_COMPILE_LOG_DIR = os.environ.get("FLAXGAN_TEST_COMPILE_LOG")
_compile_stats: dict[str, dict[str, float]] = {}
_current_test = ["<collection>"]

if _COMPILE_LOG_DIR:
    from jax import monitoring

    def _add(key: str, value: float) -> None:
        stats = _compile_stats.setdefault(_current_test[0], {})
        stats[key] = stats.get(key, 0.0) + value

    def _on_duration(event: str, duration: float, **_) -> None:
        if event in ("/jax/core/compile/backend_compile_duration",
                     "/jax/core/compile/jaxpr_trace_duration",
                     "/jax/core/compile/jaxpr_to_mlir_module_duration",
                     "/jax/compilation_cache/cache_retrieval_time_sec"):
            _add(event.rsplit("/", 1)[1], duration)
            if event.endswith("backend_compile_duration"):
                _add("compiles", 1)

    def _on_event(event: str, **_) -> None:
        if event in ("/jax/compilation_cache/cache_hits", "/jax/compilation_cache/cache_misses"):
            _add(event.rsplit("/", 1)[1], 1)

    monitoring.register_event_duration_secs_listener(_on_duration)
    monitoring.register_event_listener(_on_event)

    def _cpu_seconds() -> tuple[float, float]:
        """(this process's CPU seconds, all threads; its finished children's)."""
        own, children = (resource.getrusage(who) for who in (resource.RUSAGE_SELF,
                                                            resource.RUSAGE_CHILDREN))
        return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(item, nextitem):
        _current_test[0] = item.nodeid
        before = _cpu_seconds()
        yield
        # CPU rather than wall time: with two workers on two cores a test's wall time also
        # counts the other worker's threads.
        for key, start, end in zip(("cpu_seconds", "subprocess_cpu_seconds"), before,
                                   _cpu_seconds(), strict=True):
            _add(key, end - start)

    def pytest_sessionfinish(session):
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        pathlib.Path(_COMPILE_LOG_DIR).mkdir(parents=True, exist_ok=True)
        path = pathlib.Path(_COMPILE_LOG_DIR) / f"compile-{worker}-{os.getpid()}.json"
        path.write_text(json.dumps(_compile_stats, indent=1))


def pytest_collection_finish(session):
    """The tests trace thousands of jaxprs: Python's default collector (a pass every 700
    allocations, full passes over every imported jax/TensorFlow object) costs ~7 % of a
    trace-bound file. Objects alive after collection are frozen out of the collector and young
    passes run every 50,000 allocations."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


# --- Two xdist workers, one file each at a time (`--dist loadfile`): files are handed out in
# collection order, so a long file collected last finishes alone on one core. The longest
# files (end-to-end training runs, the loss phases, Inception metrics) go first.
_LONGEST_FIRST = (  # measured on 2 cores (FLAXGAN_TEST_COMPILE_LOG), longest first
    "tests/flaxgan/train/test_multiprocess.py",
    "tests/flaxgan/models/test_stylegan3_parity.py",
    "tests/flaxgan/train/test_loop.py",
    "tests/flaxgan/metrics/test_vgg16.py",
    "tests/flaxgan/train/test_train_stylegan1.py",
    "tests/flaxgan/train/test_step.py",
    "tests/flaxgan/train/test_conditional.py",
    "tests/flaxgan/test_project.py",
    "tests/flaxgan/test_sample_stylegan1.py",
    "tests/flaxgan/test_losses.py",
    "tests/flaxgan/models/test_stylegan2_parity.py",
    "tests/data_pipelines/detection/test_mtcnn.py",
    "tests/experiments/test_eval.py",
    "tests/flaxgan/metrics/test_inception.py",
    "tests/experiments/test_entry_point_errors.py",
    "tests/flaxgan/models/test_stylegan2.py",
)


def _repo_path(item) -> str:
    return pathlib.Path(str(item.fspath)).resolve().relative_to(REPO_ROOT).as_posix()


def pytest_collection_modifyitems(items):
    rank = {path: i for i, path in enumerate(_LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(_repo_path(item), len(rank)))  # stable: files keep order


# Test files that run on the worker of another file: they use its session fixture, and with it
# the programs that worker compiled in memory (file -> the file whose worker runs it).
_SAME_WORKER_AS = {
    # Train, resume and damage the session fixture `tiny_run` (tests/flaxgan/train), or run
    # its compiled phases.
    "tests/flaxgan/train/test_checkpoint_recovery.py": "tests/flaxgan/train/test_loop.py",
    "tests/flaxgan/train/test_step.py": "tests/flaxgan/train/test_loop.py",
}


@pytest.hookimpl(optionalhook=True)  # an xdist hook: unknown without the plugin
def pytest_xdist_make_scheduler(config, log):
    """`--dist loadfile` with the files of `_SAME_WORKER_AS` sent to one worker."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling  # noqa: PLC0415 (only under xdist)

    class SharedFileScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = super()._split_scope(nodeid)
            return _SAME_WORKER_AS.get(path, path)

    return SharedFileScheduling(config, log)
