r"""Plots a training run's record: the metric hook's FID / KID and sec/kimg against kimg.

    python tools/plot_training.py --workdir=runs/celeba32 --out=docs/training/celeba32/curve.png

Reads `metrics-eval.jsonl` (the metric hook: `{"metric", "value", "kimg"}` lines) and
`metrics.jsonl` (one line per tick) of `--workdir`; extra evaluation files (`--extra`, e.g. the
final FID10k of `tools/eval_splits.py`, or the hook's protocol re-run on every snapshot; lines
carrying `kimg`) are drawn as their own series, "(evaluated)". Needs
matplotlib (`pip install flaxgan[plot]`).
"""

from __future__ import annotations

import collections
import json
import pathlib
import sys

from absl import app, flags

_WORKDIR = flags.DEFINE_string("workdir", None, "Training run directory.", required=True)
_OUT = flags.DEFINE_string("out", None, "Output PNG.", required=True)
_EXTRA = flags.DEFINE_list("extra", [], "More metric files (JSON lines with metric, value, kimg).")
_TITLE = flags.DEFINE_string("title", "", "Figure title.")


def read_jsonl(path: pathlib.Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def series(records: list[dict]) -> dict[str, list[tuple[float, float]]]:
    """`{metric: [(kimg, value), ...]}` sorted by kimg (a re-evaluated kimg keeps the last); a
    record of several values (`{"pr50k3_full_precision": ..., ...}`) gives a series each."""
    by_metric: dict[str, dict[float, float]] = collections.defaultdict(dict)
    for r in records:
        if r.get("kimg") is not None and "metric" in r:
            value = r["value"]
            named = value if isinstance(value, dict) else {r["metric"]: value}
            for name, v in named.items():
                by_metric[name][float(r["kimg"])] = float(v)
    return {m: sorted(points.items()) for m, points in by_metric.items()}


def main(argv: list[str]) -> None:
    del argv
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workdir = pathlib.Path(_WORKDIR.value)
    hook = series(read_jsonl(workdir / "metrics-eval.jsonl"))
    extra = series([r for p in _EXTRA.value for r in read_jsonl(pathlib.Path(p))])
    ticks = read_jsonl(workdir / "metrics.jsonl")
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for ax, prefix in zip(axes[:2], ("fid", "kid"), strict=True):
        for name, points in {**hook, **{f"{k} (evaluated)": v for k, v in extra.items()}}.items():
            if name.startswith(prefix):
                kimg, value = zip(*points, strict=True)
                style = "s" if name.endswith("(evaluated)") and len(points) == 1 else "o-"
                ax.plot(kimg, value, style, label=name)
        ax.set_xlabel("kimg")
        ax.set_ylabel(prefix.upper())
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    if ticks:
        axes[2].plot([t["kimg"] for t in ticks], [t["Timing/sec_per_kimg"] for t in ticks], ".",
                     markersize=3, label="sec/kimg")
        axes[2].plot([t["kimg"] for t in ticks], [t["Progress/augment"] * 100 for t in ticks],
                     "-", label="ADA p × 100")
        axes[2].set_xlabel("kimg")
        axes[2].grid(alpha=0.3)
        axes[2].legend()
    fig.suptitle(_TITLE.value or str(workdir))
    fig.tight_layout()
    out = pathlib.Path(_OUT.value)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    print(f"wrote {out}")


if __name__ == "__main__":
    sys.exit(app.run(main))
