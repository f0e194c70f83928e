"""Small helpers shared by the entry points: ranges, datasets, flags, user errors as one line.

Every entry point reports bad input the same way: `error: <one line>` on stderr and exit status
2 (`fail`). `reports_user_errors` wraps a `main` so that `flaxgan.errors.UserError` (and the
extra types an entry point names) take that path; `parse_flags` does the same for absl flag
errors and for a config override naming a key the config lacks (`--config.train.bach_size`:
the line names the closest valid key). Other exceptions are bugs and keep their traceback.

`parse_flags` also accepts the official scripts' dashed flag names beside ours
(`--noise-mode=const` for `--noise_mode=const`, `--trunc-cutoff`, `--no-mirror`), and
`check_dataset` turns a TFDS dataset that is not prepared into one line saying how to prepare
it or where to point.
"""

from __future__ import annotations

import difflib
import functools
import logging
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn

from absl import flags
from absl import logging as absl_logging

from flaxgan.errors import InvalidArgument, UserError

__all__ = ["EXIT_USER_ERROR", "DatasetNotFound", "check_dataset", "closest", "config_key_error",
           "fail", "official_aliases", "parse_flags", "parse_range", "prepare_command",
           "quiet_dependency_logs", "reports_user_errors"]

EXIT_USER_ERROR = 2

# Libraries whose INFO lines (Orbax's per-save chatter, JAX's backend probing) drown a run's log.
_NOISY_PACKAGES = ("orbax", "jax", "jaxlib", "tensorstore", "grain", "etils", "absl/testing",
                   "tensorflow_datasets")


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
    """`app.run`'s `flags_parser`: official dashed names accepted, flag errors in one line.

    Args:
      argv: the full command line (program name first).
    Returns:
      The arguments left after the flags (absl's convention).
    Exits:
      status 2 with one `error:` line for an unknown flag, a bad value or a config override
      of a key the config lacks.
    """
    argv = official_aliases(argv)
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        fail(f"{e} (see --helpshort)")
    except (AttributeError, KeyError):  # ml_collections: an override of a key not in the config
        message = config_key_error(argv)
        if message is None:
            raise
        fail(message)


# -------------------------------------------------------------------- official flag names


def _alias(arg: str) -> str:
    """`--a-b[=v]` -> `--a_b[=v]` when flag `a_b` exists; `--no-a` -> `--noa` for a boolean."""
    m = re.fullmatch(r"(--?)([A-Za-z][\w-]*-[\w-]*)(=.*)?", arg, flags=re.DOTALL)
    if not m:
        return arg
    dashes, name, value = m.group(1), m.group(2).replace("-", "_"), m.group(3) or ""
    if name in flags.FLAGS:
        return f"{dashes}{name}{value}"
    negated = name[3:] if name.startswith("no_") else None
    if negated and negated in flags.FLAGS and flags.FLAGS[negated].boolean:
        return f"{dashes}no{negated}{value}"
    return arg


def official_aliases(argv: Sequence[str]) -> list[str]:
    """The official scripts' dashed flag names (`--noise-mode`, `--trunc-cutoff`) as ours.

    Only names whose underscored form is a defined flag are rewritten (an unknown dashed name
    stays as it is, so absl names it in its error); values and everything after `--` are kept.
    """
    argv = list(argv)
    end = argv.index("--") if "--" in argv else len(argv)
    return argv[:1] + [_alias(a) for a in argv[1:end]] + argv[end:]


# -------------------------------------------------------------------------- config overrides


def closest(word: str, choices: Sequence[str]) -> str | None:
    """The choice most like `word` (difflib, cutoff 0.6), or None."""
    found = difflib.get_close_matches(word, list(choices), n=1)
    return found[0] if found else None


def _missing_key(config: Any, path: Sequence[str], flag: str) -> str | None:
    """One line when `config` lacks the dotted `path` (naming the closest key), else None."""
    node: Any = config
    for depth, key in enumerate(path):
        where = ".".join([flag, *path[:depth]])
        if not hasattr(node, "keys"):
            return (f"--{flag}.{'.'.join(path)}: {where} is a value "
                    f"({type(node).__name__}), not a section")
        keys = sorted(map(str, node.keys()))
        if key not in keys:
            near = closest(key, keys)
            hint = (f"did you mean --{where}.{near}?" if near
                    else f"valid keys: {', '.join(keys) or 'none'}")
            return f"--{flag}.{'.'.join(path)}: no key {key!r} in {where}; {hint}"
        node = node[key]
    return None


def _loaded_config(name: str, argv: Sequence[str]) -> Any:
    """The config of flag `name` as the command line gives it (loaded again), or None."""
    flag = flags.FLAGS[name]
    values = [a.split("=", 1)[1] for a in argv if re.match(rf"--?{re.escape(name)}=", a)]
    try:
        return flag.parser.parse(values[-1]) if values else flag.value
    except Exception:  # the original error is reported instead
        return None


def config_key_error(argv: Sequence[str]) -> str | None:
    """One line for the first `--config.a.b=v` override whose key the config lacks, else None.

    ml_collections raises a bare KeyError / AttributeError for these while parsing; this finds
    the override at fault and names the closest valid key (`--config.train.batch_size`).
    """
    for arg in argv[1:]:
        m = re.match(r"--?(\w+)\.([\w.]+)(=|$)", arg)
        if not m:
            continue
        name = m.group(1)
        if name not in flags.FLAGS and name.startswith("no"):
            name = name[2:]  # `--noconfig.flag`: ml_collections' boolean override
        if name not in flags.FLAGS:
            continue
        config = _loaded_config(name, argv)
        message = None if config is None else _missing_key(config, m.group(2).split("."), name)
        if message:
            return message
    return None


# --------------------------------------------------------------------------------- datasets


class DatasetNotFound(UserError, FileNotFoundError):
    """A dataset name that is neither a folder nor a prepared TFDS dataset."""


def prepare_command(name: str) -> str | None:
    """`python -m data_pipelines.build BUILDER --manual_dir=DIR [--config=C]` for a TFDS name
    of one of flaxgan's builders (`celeba_faces/mtcnn_256`), else None."""
    from data_pipelines import build  # imports TFDS

    builder, _, config = name.partition(":")[0].partition("/")
    if builder not in build.BUILDERS:
        return None
    return (f"python -m data_pipelines.build {builder} --manual_dir=DIR"
            + (f" --config={config}" if config else ""))


def check_dataset(data: Mapping[str, Any], data_dir_flag: str) -> None:
    """Refuses a dataset that is neither a folder nor a prepared TFDS dataset, in one line.

    Args:
      data: a `config.data`-like section: `name` (folder or TFDS name), optional `data_dir`,
        `split`, `resolution` and `prepare` (the command that builds it).
      data_dir_flag: how the user points at a TFDS data dir here (`--data_dir`,
        `--config.data.data_dir`), named in the hint.
    Raises:
      DatasetNotFound: the name is not a folder and TFDS does not find it prepared (the line
        names the data dir searched, the `prepare` command and `data_dir_flag`).
      InvalidArgument: TFDS finds the dataset but refuses it (e.g. no such split).
    """
    name = str(data["name"])
    if os.path.exists(os.path.expanduser(name)):
        return  # a folder: read (and checked) by the loader itself
    if name.startswith(("/", ".", "~")):
        raise DatasetNotFound(f"{name}: no such folder (nor a TFDS dataset name)")
    from data_pipelines import input as data_input  # imports TFDS

    data_dir = data.get("data_dir")
    try:
        data_input.dataset_metadata(name, data.get("split", "train"), data_dir=data_dir,
                                    resolution=data.get("resolution"))
    except (FileNotFoundError, ValueError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        if not _is_not_found(e):
            raise InvalidArgument(f"dataset {name!r}: {first}") from None
        where = (data_dir or os.environ.get("TFDS_DATA_DIR")
                 or os.path.join(os.path.expanduser("~"), "tensorflow_datasets"))
        prepare = data.get("prepare") or prepare_command(name)
        how = f"prepare it with: {prepare}, or " if prepare else ""
        raise DatasetNotFound(f"dataset {name!r} is not available (not prepared in {where}); "
                              f"{how}point to its TFDS data dir with {data_dir_flag}=DIR"
                              ) from None


def _is_not_found(error: Exception) -> bool:
    """Whether a TFDS error means "no such prepared dataset" (not a bad split or shape)."""
    text = str(error)
    return (isinstance(error, FileNotFoundError) or type(error).__name__ == "DatasetNotFoundError"
            or "Parsing builder name" in text or "doesn't contain any versions" in text
            or "expected one of []" in text)


def check_outdir(outdir: str, flag: str = "--outdir", value: str | None = None) -> None:
    """The output folder exists as a writable folder, or can be created (nothing is made);
    the error names `flag`=`value` (default: the folder itself)."""
    path = os.path.abspath(outdir)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    if not os.path.isdir(path) or not os.access(path, os.W_OK | os.X_OK):
        raise InvalidArgument(f"{flag}={value or outdir}: {path} is not a writable folder")


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
