"""The training loop's metric hook, kept under its former import path.

`evaluate(metrics, G, ema_variables, data, workdir=, kimg=)` is
`flaxgan.metrics.evaluation.evaluate`: the one evaluation path (sources, records in
`workdir/metrics-eval.jsonl`) shared with `experiments.eval`; see that module.
"""

from flaxgan.metrics.evaluation import evaluate

__all__ = ["evaluate"]
