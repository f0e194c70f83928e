r"""Cost per index of an epoch shuffle: grain's `MapDataset.shuffle` vs `BlockShuffle`.

    python -m benchmarks.shuffle
    python -m benchmarks.shuffle --sizes=8,512 --indices=1000 --repeats=7

Both shuffle `grain.MapDataset.range(n)` with seed 0 (the index arithmetic alone: no example is
read). Each repeat indexes `--indices` consecutive positions of a fresh dataset, starting where
the previous repeat stopped (so repeats cross epochs of small datasets); prints the median
microseconds per index with the min-max over repeats.
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable, Sequence

import grain
from absl import app, flags

from data_pipelines.input import BlockShuffle

_SIZES = flags.DEFINE_list("sizes", ["8", "64", "512", "4096", "202599"],
                           "Dataset sizes (202,599: CelebA).")
_INDICES = flags.DEFINE_integer("indices", 400, "Indices per timed repeat.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed repeats per size and shuffle.")


def microseconds_per_index(make: Callable[[], grain.MapDataset], indices: int,
                           repeats: int) -> list[float]:
    """Per repeat: a fresh `make()` indexed at `indices` consecutive positions."""
    times = []
    for r in range(repeats):
        ds = make()
        start = time.perf_counter()
        for i in range(r * indices, (r + 1) * indices):
            ds[i]
        times.append((time.perf_counter() - start) / indices * 1e6)
    return times


def main(argv: Sequence[str]) -> None:
    del argv
    shuffles = {"grain shuffle": lambda n: grain.MapDataset.range(n).shuffle(seed=0),
                "BlockShuffle": lambda n: BlockShuffle(grain.MapDataset.range(n), seed=0)}
    for n in map(int, _SIZES.value):
        cells = []
        for name, shuffle in shuffles.items():
            t = microseconds_per_index(functools.partial(shuffle, n), _INDICES.value,
                                       _REPEATS.value)
            cells.append(f"{name} {statistics.median(t):8.1f} us [{min(t):.1f}-{max(t):.1f}]")
        print(f"n={n:7d}  " + "   ".join(cells))


if __name__ == "__main__":
    app.run(main)
