"""Runs one entry point's `main` on several argument lists in one process (JAX starts once).

    python -m tests.experiments.run_cases experiments.generate '[["--network=x.pkl"], ...]'

Prints one JSON line per case: `argv`, `code` (the exit status; `"traceback"` when an exception
escaped), `stderr` (its last 3000 characters). The entry points share absl flag names, so each
needs a process of its own; batching its cases keeps the JAX start-up to one per entry point.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import pathlib
import subprocess
import sys
import traceback
from collections.abc import Mapping, Sequence

from absl import flags

from experiments import cli


@contextlib.contextmanager
def _sys_argv(argv: list[str]):
    saved, sys.argv = sys.argv, list(argv)
    try:
        yield
    finally:
        sys.argv = saved


def run_case(module, argv: list[str]) -> dict:
    """Parses `argv` as the module's `__main__` does, runs `main`; never raises."""
    flags.FLAGS.unparse_flags()
    err = io.StringIO()
    code: int | str | None = 0
    full = [module.__name__, *argv]
    # As in a real process: ml_collections finds `--config.a.b=v` overrides in sys.argv.
    with (contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()),
          _sys_argv(full)):
        try:
            # What `app.run(main, flags_parser=...)` of the entry point's `__main__` calls.
            module.main(getattr(module, "parse_flags", cli.parse_flags)(full))
        except SystemExit as e:
            code = e.code
            if isinstance(code, str):  # sys.exit("message") prints it and exits 1
                print(code, file=sys.stderr)
                code = 1
        except Exception:  # recorded: the test asserts there is none
            code = "traceback"
            traceback.print_exc()
    return {"argv": argv, "code": code, "stderr": err.getvalue()[-3000:]}


REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


def run_in_subprocess(module: str, cases: Sequence[Sequence[object]],
                      env: Mapping[str, str | None] | None = None) -> list[dict]:
    """Runs `module`'s cases in a fresh process (`run_case` records); `env` adds variables to
    the test's environment (None removes one). Fails with the process's stderr when a case
    printed no record."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    for key, value in (env or {}).items():
        if value is None:
            full_env.pop(key, None)
        else:
            full_env[key] = value
    out = subprocess.run([sys.executable, "-m", "tests.experiments.run_cases", module,
                          json.dumps([[str(a) for a in case] for case in cases])],
                         cwd=REPO_ROOT, env=full_env, capture_output=True, text=True,
                         timeout=600)
    results = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert len(results) == len(cases), out.stderr[-3000:]
    return results


def assert_one_line(result: dict, expected: str) -> None:
    """The case ended with exit status 2 and a last stderr line `error: ...` naming `expected`."""
    lines = result["stderr"].strip().splitlines()
    assert result["code"] == 2 and "Traceback" not in result["stderr"], result
    assert lines[-1].startswith("error: ") and expected in lines[-1], (result["argv"], lines[-1])


def main() -> None:
    module = importlib.import_module(sys.argv[1])
    for argv in json.loads(sys.argv[2]):
        print(json.dumps(run_case(module, argv)), flush=True)


if __name__ == "__main__":
    main()
