"""Freeze-D in official snapshots: which discriminator layers keep their weights as buffers."""

from __future__ import annotations

import re
from typing import Any

_BLOCK_LAYER = re.compile(r"b(\d+)\.(fromrgb|conv0|conv1|skip)\.weight")
_ORDER = ("fromrgb", "conv0", "conv1", "skip")  # Layer index order inside an official D block.


def frozen_layers(record, D_kwargs: dict[str, Any]) -> set[str]:
    """Module paths of the D layers whose `weight` (and `bias`) are buffers, not parameters.

    The official discriminator numbers its block layers from the highest resolution down
    (fromrgb, conv0, conv1, skip in each block; the epilogue is not counted) and registers the
    first `block_kwargs['freeze_layers']` of them with `trainable=False`, i.e. as buffers.
    """
    freeze = int(dict(D_kwargs.get("block_kwargs", {})).get("freeze_layers", 0))
    layers = [m for n in [*record.parameters, *record.buffers] if (m := _BLOCK_LAYER.fullmatch(n))]
    layers.sort(key=lambda m: (-int(m.group(1)), _ORDER.index(m.group(2))))
    return {f"b{m.group(1)}.{m.group(2)}" for m in layers[:freeze]}
