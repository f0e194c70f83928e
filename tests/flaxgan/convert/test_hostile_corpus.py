"""The hostile corpus of `tools/make_hostile_corpus.py`: every file is refused in one line naming
it, or loads correctly, in bounded time and memory (issue 14, item 1)."""

from __future__ import annotations

import os
import re
import time
import tracemalloc

import jax
import numpy as np
import pytest

from flaxgan import convert, sample
from flaxgan.metrics import torchfile
from tools import make_hostile_corpus as corpus

SECONDS = 20.0  # CPU seconds; each case takes well under a second (a few with tracemalloc on).
SLACK = 100 << 20  # The loaders' allowance (64 MiB for broadcasts and work) + headroom.


@pytest.fixture(scope="module")
def reference():
    return convert.load_snapshot(corpus.REFERENCE)


@pytest.fixture(scope="module")
def tf_reference():
    return sample.load(corpus.TF_REFERENCE)


def _read(case: corpus.Case, path):
    if case.reader == "tf":
        return sample.load(path)
    return (convert.load_snapshot(path) if case.reader == "snapshot"
            else torchfile.read_torch_file(path))


def _bounded(fn, path):
    """`fn(path)`'s result or exception, with its CPU time and peak traced memory.

    CPU time of this process, not wall time: the bound is about the work a file can cause,
    and wall time on a loaded machine (other test workers, a training run) says nothing of it.
    """
    tracemalloc.start()
    start = time.process_time()
    try:
        result, error = fn(path), None
    except Exception as e:  # noqa: BLE001 - inspected by the caller.
        result, error = None, e
    seconds = time.process_time() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return result, error, seconds, peak


def _assert_one_line(error: BaseException | None, path, expect: str) -> None:
    assert isinstance(error, ValueError), f"expected a refusal, got {error!r}"
    message = str(error)
    assert "\n" not in message and message.startswith(f"{os.fspath(path)}: "), message
    assert re.search(expect, message), message
    assert len(message) < 1000


@pytest.mark.parametrize("case", corpus.CASES, ids=lambda c: c.name)
def test_case_is_refused_or_loaded_in_bounded_time_and_memory(tmp_path, case, reference,
                                                               tf_reference):
    corpus.PAYLOAD_MARKER.unlink(missing_ok=True)
    path = corpus.write(case, tmp_path)
    result, error, seconds, peak = _bounded(lambda p: _read(case, p), path)
    size = path.stat().st_size
    assert seconds < SECONDS, f"{case.name}: {seconds:.1f} s"
    # Legitimate: the pickle's bytes + one copy of the tensors. Refused: less.
    assert peak < 2 * size + SLACK, f"{case.name}: peak {peak / 2**20:.0f} MiB"
    if case.expect is not None:
        _assert_one_line(error, path, case.expect)
        return
    assert error is None, f"{case.name}: {error}"
    if case.reader == "torchfile":
        _check_torch_save(case, result)
        return
    if case.reader == "tf":
        _check_tf(result, tf_reference)
        return
    for key in ("G", "D", "G_ema"):
        want, got = reference[key], result[key]
        assert got.class_name == want.class_name and got.init_kwargs == want.init_kwargs
        assert sorted(got.parameters) == sorted(want.parameters)
        for name, value in {**want.parameters, **want.buffers}.items():
            mine = got.parameters.get(name, got.buffers.get(name))
            assert mine.dtype == value.dtype and mine.tobytes() == value.tobytes(), name
    if case.name == "legit_small_broadcast":
        extra = result["G_ema"].buffers["synthesis.extra"]
        np.testing.assert_array_equal(extra, np.ones((64, 64), np.float32))
        assert extra.flags.c_contiguous and extra.base is None


def _check_tf(loaded: sample.LoadedGenerator, reference: sample.LoadedGenerator) -> None:
    """A legitimate TF snapshot loads as the reference does; its build source never ran."""
    assert not corpus.PAYLOAD_MARKER.exists(), "the embedded build source was executed"
    assert loaded.kwargs == reference.kwargs
    want, got = (jax.tree_util.tree_leaves_with_path(g.variables) for g in (reference, loaded))
    assert [p for p, _ in got] == [p for p, _ in want]
    for (name, a), (_, b) in zip(want, got, strict=True):
        np.testing.assert_array_equal(np.asarray(b), np.asarray(a), err_msg=str(name))


def _check_torch_save(case: corpus.Case, tree: dict) -> None:
    if case.name == "torch_save_memo_index":
        assert tree == {}
        return
    values = np.arange(12, dtype=np.float32)
    np.testing.assert_array_equal(tree["w"], values.reshape(3, 4))
    np.testing.assert_array_equal(tree["t"], [[1, 5], [2, 6]])


def test_sample_load_checks_shapes_against_the_kwargs_before_copying(tmp_path):
    """A stride-0 view within the loader's budget but of a shape the network's kwargs do not
    imply is refused by `sample.load` before it is copied."""
    build = corpus._replace_tensor("G_ema.synthesis.b32.torgb.weight",
                                   lambda s: corpus.stride0((1024, 1024, 3), parameter=True))
    path = tmp_path / "wrong_shape.pkl"
    path.write_bytes(build(corpus.SCALES["test"]))
    assert convert.load_snapshot(path)["G_ema"].parameters[
        "synthesis.b32.torgb.weight"].shape == (1024, 1024, 3)  # Within the budget: 12 MiB.
    _, error, _, peak = _bounded(sample.load, path)
    _assert_one_line(error, path, r"G_ema\.synthesis\.b32\.torgb\.weight has shape "
                                  r"\(1024, 1024, 3\), its constructor arguments imply "
                                  r"\(3, 32, 1, 1\)")
    assert peak < 12 << 20  # Refused before the 12 MiB copy.


def test_budget_bounds_work_depth_and_sizes():
    budget = convert.torch_io.Budget(100, slack=10, max_depth=3, max_visits=5)
    budget.storage(110, "s")
    with pytest.raises(convert.torch_io.FormatError, match="more than the file can hold"):
        budget.storage(1, "s")
    budget.tensor(120, "t")
    with pytest.raises(convert.torch_io.FormatError, match="overlapping view"):
        budget.tensor(1, "t")
    with pytest.raises(convert.torch_io.FormatError, match="deeper than 3"):
        budget.visit(4, "w")
    with pytest.raises(convert.torch_io.FormatError, match="expand to more than 5"):
        budget.expansion(6, "w")
