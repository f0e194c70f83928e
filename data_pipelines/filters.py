"""Per-image keep/drop decisions for dataset preparation, and the JSON filtering report.

A decision has one reason, checked in this order:

  `unreadable`      the file does not decode as an image (corrupt, truncated, not an image);
  `too_small`       the image's shorter side is below `min_image_size`, or the chosen face's
                    shorter side is below `min_face_size`;
  `no_face`         the detector found nothing;
  `low_score`       faces were found but none reaches `min_score`;
  `multiple_faces`  several faces reach `min_score` and the policy is `drop`
                    (`largest` keeps the largest box, `best` the highest score);
  `kept`            otherwise (also every readable, large-enough image when no detector runs).

`FilterReport` counts the reasons, keeps a sample of dropped file names per reason, and is
written as JSON beside the prepared dataset (`filter_report.json`).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import pathlib
from collections.abc import Sequence

from data_pipelines.detection.face import Face
from flaxgan.images import UnreadableImage, read_image  # the one image reader, re-exported

__all__ = [
    "REASONS",
    "KEPT",
    "UnreadableImage",
    "FilterPolicy",
    "Decision",
    "read_image",
    "decide",
    "unreadable",
    "FilterReport",
]

KEPT = "kept"
REASONS = ("kept", "unreadable", "too_small", "no_face", "low_score", "multiple_faces")
MULTIPLE_POLICIES = ("largest", "best", "drop")


@dataclasses.dataclass(frozen=True)
class FilterPolicy:
    """What counts as a usable face image.

    Attributes:
      min_image_size: smallest accepted shorter image side, pixels.
      min_face_size: smallest accepted shorter side of the chosen face box, pixels.
      min_score: smallest accepted detector score (MTCNN probability; Haar neighbour count).
      multiple: `largest`, `best` or `drop` when several faces pass `min_score`.
    """

    min_image_size: int = 0
    min_face_size: float = 0.0
    min_score: float = 0.0
    multiple: str = "largest"

    def __post_init__(self):
        if self.multiple not in MULTIPLE_POLICIES:
            raise ValueError(f"expected a multiple-face policy in {MULTIPLE_POLICIES}, "
                             f"got {self.multiple!r}")


@dataclasses.dataclass(frozen=True)
class Decision:
    """The outcome for one image: `reason` (one of `REASONS`), the chosen face, a detail."""

    reason: str
    face: Face | None = None
    num_faces: int = 0
    detail: str = ""

    @property
    def keep(self) -> bool:
        return self.reason == KEPT


def unreadable(error: Exception | str) -> Decision:
    """The decision for a file that failed to decode."""
    return Decision("unreadable", detail=str(error))


def _short_side(face: Face) -> float:
    return min(face.width, face.height)


def decide(faces: Sequence[Face] | None, image_shape: Sequence[int],
           policy: FilterPolicy = FilterPolicy()) -> Decision:
    """Keep/drop for one decoded image.

    Args:
      faces: detections (any order), or `None` when no detector runs (keep by size only).
      image_shape: `(H, W, ...)` of the image.
      policy: thresholds and the multiple-face policy.
    """
    short = min(image_shape[0], image_shape[1])
    if short < policy.min_image_size:
        return Decision("too_small", detail=f"image {image_shape[1]}x{image_shape[0]} < "
                                            f"{policy.min_image_size}")
    if faces is None:
        return Decision(KEPT)
    if not faces:
        return Decision("no_face")
    passing = [f for f in faces if f.score >= policy.min_score]
    if not passing:
        best = max(f.score for f in faces)
        return Decision("low_score", num_faces=len(faces),
                        detail=f"best score {best:.3f} < {policy.min_score}")
    if len(passing) > 1 and policy.multiple == "drop":
        return Decision("multiple_faces", num_faces=len(passing))
    key = (lambda f: f.area) if policy.multiple == "largest" else (lambda f: f.score)
    face = max(passing, key=key)
    if _short_side(face) < policy.min_face_size:
        return Decision("too_small", face=face, num_faces=len(passing),
                        detail=f"face {_short_side(face):.0f} px < {policy.min_face_size}")
    return Decision(KEPT, face=face, num_faces=len(passing))


class FilterReport:
    """Counts decisions per reason and samples dropped file names; JSON-serialisable.

    Args:
      sample_size: dropped file names kept per reason.
      meta: extra JSON-able information stored with the report (recipe, source, ...).
    """

    def __init__(self, sample_size: int = 20, meta: dict | None = None):
        self.sample_size = sample_size
        self.meta = dict(meta or {})
        self.counts: collections.Counter[str] = collections.Counter()
        self.samples: dict[str, list[str]] = collections.defaultdict(list)
        self.multiple_faces_seen = 0

    def add(self, name: str, decision: Decision) -> None:
        """Records one image's decision."""
        if decision.reason not in REASONS:
            raise ValueError(f"unknown filter reason {decision.reason!r}")
        self.counts[decision.reason] += 1
        self.multiple_faces_seen += decision.num_faces > 1
        if not decision.keep and len(self.samples[decision.reason]) < self.sample_size:
            entry = name if not decision.detail else f"{name}: {decision.detail}"
            self.samples[decision.reason].append(entry)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def kept(self) -> int:
        return self.counts[KEPT]

    def to_dict(self) -> dict:
        return {
            "total": self.total,
            "kept": self.kept,
            "dropped": self.total - self.kept,
            "counts": {r: self.counts[r] for r in REASONS},
            "images_with_several_faces": self.multiple_faces_seen,
            "dropped_samples": {r: list(v) for r, v in self.samples.items() if v},
            **({"meta": self.meta} if self.meta else {}),
        }

    def summary(self) -> str:
        """One line: kept / total and the count per drop reason."""
        drops = ", ".join(f"{r} {self.counts[r]}" for r in REASONS[1:] if self.counts[r])
        return f"kept {self.kept} of {self.total} images" + (f" (dropped: {drops})" if drops
                                                              else "")

    def write(self, path: str | pathlib.Path) -> pathlib.Path:
        path = pathlib.Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        return path
