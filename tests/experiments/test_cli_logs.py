"""The entry points keep flaxgan's INFO lines and only the warnings of their dependencies."""

import logging

from experiments import cli


def _record(path: str, level: int) -> logging.LogRecord:
    return logging.LogRecord("absl", level, path, 1, "message", None, None)


def test_dependency_info_is_dropped_and_ours_kept():
    keep = cli._DependencyInfoFilter().filter
    site = "/venv/lib/python3.11/site-packages"
    assert not keep(_record(f"{site}/orbax/checkpoint/checkpoint_manager.py", logging.INFO))
    assert not keep(_record(f"{site}/jax/_src/xla_bridge.py", logging.INFO))
    assert keep(_record(f"{site}/orbax/checkpoint/checkpoint_manager.py", logging.WARNING))
    assert keep(_record("/work/flaxgan/flaxgan/train/loop.py", logging.INFO))


def test_quiet_dependency_logs_installs_one_filter():
    from absl import logging as absl_logging

    handler = absl_logging.get_absl_handler()
    cli.quiet_dependency_logs()
    cli.quiet_dependency_logs()
    assert sum(isinstance(f, cli._DependencyInfoFilter) for f in handler.filters) == 1
    assert logging.getLogger("jax").level == logging.WARNING
