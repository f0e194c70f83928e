"""Agreement of a detector with reference detections (e.g. PyPI `mtcnn` 1.0.0's, see README).

Reference file: JSON `{"images": {relative_path: [{"box": [x0, y0, x1, y1], "score": s,
"landmarks": [[x, y] x 5]}, ...]}}`, paths relative to a root folder.

Measured per reference face: matched (a detection with IoU > `min_iou`, greedy by IoU), the
match's box IoU and its landmark error (mean point distance divided by the reference's
inter-ocular distance). Counted per image: reference / detected face counts.

    python -m data_pipelines.detection.agreement --reference=REF.json --root=DIR [--limit=N]
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from data_pipelines.detection.face import Face, box_iou

__all__ = ["Agreement", "load_reference", "match_faces", "agreement", "main"]


@dataclasses.dataclass(frozen=True)
class Agreement:
    """Summary of detections against a reference over a set of images.

    Attributes:
      images: number of images compared.
      reference_faces, detected_faces: total face counts.
      matched: reference faces with a detection of IoU > the matching threshold.
      count_mismatches: images whose face count differs from the reference.
      iou: `[matched]` box IoU of each match.
      landmark_error: `[matched]` mean landmark distance / reference inter-ocular distance (NaN
        where either side has no landmarks).
    """

    images: int
    reference_faces: int
    detected_faces: int
    matched: int
    count_mismatches: int
    iou: np.ndarray
    landmark_error: np.ndarray

    @property
    def match_rate(self) -> float:
        return self.matched / max(self.reference_faces, 1)

    def summary(self) -> dict:
        """JSON-friendly numbers: counts, match rate, IoU and landmark-error statistics."""
        lm = self.landmark_error[np.isfinite(self.landmark_error)]

        def stats(x: np.ndarray) -> dict:
            if not len(x):
                return {}
            return {"mean": float(np.mean(x)), "median": float(np.median(x)),
                    "p05": float(np.percentile(x, 5)), "p95": float(np.percentile(x, 95)),
                    "min": float(np.min(x)), "max": float(np.max(x))}

        return {"images": self.images, "reference_faces": self.reference_faces,
                "detected_faces": self.detected_faces, "matched": self.matched,
                "match_rate": self.match_rate, "count_mismatches": self.count_mismatches,
                "iou": stats(self.iou), "landmark_error_iod": stats(lm)}


def load_reference(path: str | pathlib.Path) -> dict[str, list[dict]]:
    """Reads a reference file -> `{relative_path: [face dict, ...]}`."""
    data = json.loads(pathlib.Path(path).read_text())
    if "images" not in data:
        raise ValueError(f"{path}: expected a JSON object with an 'images' mapping")
    return data["images"]


def _landmark_error(ref: Sequence | None, ours: np.ndarray | None) -> float:
    if ref is None or ours is None:
        return float("nan")
    ref = np.asarray(ref, np.float64)
    iod = np.linalg.norm(ref[0] - ref[1])
    return float(np.mean(np.linalg.norm(ref - np.asarray(ours), axis=1)) / max(iod, 1e-6))


def match_faces(reference: Sequence[Mapping], faces: Sequence[Face],
                min_iou: float = 0.5) -> list[tuple[int, int, float]]:
    """Greedy one-to-one matching by IoU -> `[(reference index, face index, iou), ...]`."""
    if not reference or not faces:
        return []
    iou = box_iou(np.array([r["box"] for r in reference]), np.array([f.box for f in faces]))
    pairs = []
    while True:
        i, j = np.unravel_index(np.argmax(iou), iou.shape)
        if iou[i, j] <= min_iou:
            return pairs
        pairs.append((int(i), int(j), float(iou[i, j])))
        iou[i, :] = -1.0
        iou[:, j] = -1.0


def agreement(reference: Mapping[str, Sequence[Mapping]], detections: Mapping[str, Sequence[Face]],
              min_iou: float = 0.5) -> Agreement:
    """Compares `detections` (keyed like `reference`) with the reference faces."""
    ious, errors = [], []
    ref_total = det_total = mismatches = 0
    for key, faces in detections.items():
        ref = reference[key]
        ref_total += len(ref)
        det_total += len(faces)
        mismatches += len(ref) != len(faces)
        for i, j, iou in match_faces(ref, faces, min_iou):
            ious.append(iou)
            errors.append(_landmark_error(ref[i].get("landmarks"), faces[j].landmarks))
    return Agreement(images=len(detections), reference_faces=ref_total, detected_faces=det_total,
                     matched=len(ious), count_mismatches=mismatches,
                     iou=np.asarray(ious, np.float64), landmark_error=np.asarray(errors))


def detect_all(keys: Sequence[str], root: pathlib.Path,
               detect_batch: Callable[[list[np.ndarray]], list[list[Face]]],
               batch_size: int = 64) -> dict[str, list[Face]]:
    """Runs `detect_batch` over the images `root/key` (read as RGB) in batches."""
    from PIL import Image

    out: dict[str, list[Face]] = {}
    for start in range(0, len(keys), batch_size):
        chunk = keys[start:start + batch_size]
        images = [np.asarray(Image.open(root / k).convert("RGB")) for k in chunk]
        out.update(zip(chunk, detect_batch(images), strict=True))
    return out


def main(argv: Sequence[str] | None = None) -> dict:
    """CLI: prints the agreement summary of the Flax MTCNN with a reference file as JSON."""
    import argparse

    from data_pipelines.detection import mtcnn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", required=True)
    parser.add_argument("--root", required=True, help="folder the reference paths are relative to")
    parser.add_argument("--limit", type=int, default=None, help="first N images only")
    args = parser.parse_args(argv)
    reference = load_reference(args.reference)
    keys = sorted(reference)[: args.limit]
    result = {}
    for group in sorted({pathlib.PurePath(k).parent.name for k in keys}):
        members = [k for k in keys if pathlib.PurePath(k).parent.name == group]
        found = detect_all(members, pathlib.Path(args.root), mtcnn.detect_faces_batch)
        result[group] = agreement(reference, found).summary()
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
