"""Small helpers shared by the entry points: ranges, and user errors as one line.

Every entry point reports bad input the same way: `error: <one line>` on stderr and exit status
2 (`fail`). `reports_user_errors` wraps a `main` so that `flaxgan.errors.UserError` (and the
extra types an entry point names) take that path; `parse_flags` does the same for absl flag
errors (a mistyped `--config.train.bach_size`). Other exceptions are bugs and keep their
traceback.
"""

from __future__ import annotations

import functools
import logging
import re
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from absl import flags
from absl import logging as absl_logging

from flaxgan.errors import InvalidArgument, UserError

__all__ = ["EXIT_USER_ERROR", "fail", "parse_flags", "parse_range", "quiet_dependency_logs",
           "reports_user_errors"]

EXIT_USER_ERROR = 2

# Libraries whose INFO lines (Orbax's per-save chatter, JAX's backend probing) drown a run's log.
_NOISY_PACKAGES = ("orbax", "jax", "jaxlib", "tensorstore", "grain", "etils", "absl/testing")


class _DependencyInfoFilter(logging.Filter):
    """Drops INFO and DEBUG records logged from inside the `_NOISY_PACKAGES`; keeps warnings."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        path = record.pathname.replace("\\", "/")
        return not any(f"/{name}/" in path for name in _NOISY_PACKAGES)


def quiet_dependency_logs() -> None:
    """Keeps flaxgan's INFO lines and only the warnings of its dependencies.

    Orbax logs through absl (the same logger as ours), so records are told apart by the file
    they come from, with a filter on absl's handler, which writes every record of the process.
    """
    logging.getLogger("jax").setLevel(logging.WARNING)
    handler = absl_logging.get_absl_handler()
    if not any(isinstance(f, _DependencyInfoFilter) for f in handler.filters):
        handler.addFilter(_DependencyInfoFilter())


def fail(message: object) -> NoReturn:
    """Prints `error: <first line of message>` on stderr and exits with status 2."""
    lines = str(message).strip().splitlines() or ["(no message)"]
    print(f"error: {lines[0]}", file=sys.stderr, flush=True)
    raise SystemExit(EXIT_USER_ERROR)


def reports_user_errors(*extra: type[BaseException]) -> Callable[[Callable], Callable]:
    """Decorator for `main(argv)`: `UserError` and `extra` exceptions -> `fail(message)`."""
    caught = (UserError, *extra)

    def wrap(main: Callable[[Sequence[str]], None]) -> Callable[[Sequence[str]], None]:
        @functools.wraps(main)
        def run(argv: Sequence[str]) -> None:
            try:
                main(argv)
            except caught as e:
                fail(e)
        return run
    return wrap


def parse_flags(argv: Sequence[str]) -> list[str]:
    """`app.run`'s `flags_parser`: absl flag errors (unknown flag, bad value) in one line."""
    try:
        return flags.FLAGS(list(argv))
    except flags.Error as e:
        fail(f"{e} (see --helpshort)")


def parse_range(spec: str, limit: int | None = None) -> list[int]:
    """Parses an official-style range list: '0-7,12' -> [0, 1, ..., 7, 12].

    Args:
      spec: comma-separated `N` or `A-B` parts.
      limit: the most values accepted (checked before any list is built).

    Raises:
      InvalidArgument (a ValueError): one line naming the bad part.
    """
    parts: list[tuple[int, int]] = []
    for part in filter(None, (p.strip() for p in str(spec).split(","))):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise InvalidArgument(f"bad range {part!r} in {spec!r}: expected N or A-B "
                                  "(e.g. '0-7,12')")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo:
            raise InvalidArgument(f"bad range {part!r} in {spec!r}: end before start")
        parts.append((lo, hi))
    count = sum(hi - lo + 1 for lo, hi in parts)
    if not count:
        raise InvalidArgument(f"empty range {spec!r}")
    if limit is not None and count > limit:
        raise InvalidArgument(f"range {spec!r} has {count} values; at most {limit} accepted")
    return [v for lo, hi in parts for v in range(lo, hi + 1)]
