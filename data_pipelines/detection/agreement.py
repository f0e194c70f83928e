"""Agreement of a detector with reference detections and accuracy against human landmarks.

Reference detections (e.g. PyPI `mtcnn` 1.0.0's, see WORKSPACE.md): JSON `{"images":
{relative_path: [{"box": [x0, y0, x1, y1], "score": s, "landmarks": [[x, y] x 5]}, ...]}}`, paths
relative to a root folder. Measured per reference face: matched (a detection with IoU >
`min_iou`, greedy by IoU), the match's box IoU and its landmark error (mean point distance
divided by the reference's inter-ocular distance). Counted per image: reference / detected face
counts.

Human landmarks: a CelebA `list_landmarks_align_celeba.txt`-style file (count line, names line,
`file x1 y1 ... x5 y5` rows: left eye, right eye, nose, left and right mouth corner), one
annotated face per image, images in the file's folder. Coordinates are multiplied by
`--landmark_scale` (`auto`: image width / 178, the width of the CelebA aligned images the
official file is annotated on, so 0.5 for the 89x109 copies). An annotated face is detected
when a detection's box contains the centroid of its 5 points (the one with the lowest error
when several do); its normalised mean error (NME) is the mean point distance divided by the
annotation's inter-ocular distance (between its two eye centres). Reported: detection rate,
NME mean / median / p90 / p95, failures (NME > 0.1), and the per-landmark mean / median error.

    python -m data_pipelines.detection.agreement --reference=REF.json --root=DIR [--limit=N]
    python -m data_pipelines.detection.agreement \
        --landmarks=DIR/celeba_small/list_landmarks_align_celeba.txt [--landmark_rows=3000:]

`--recall=high` scores `MTCNN(recall="high")` instead of the reference-agreeing default (against
a reference file its extra faces show as `detected_faces` above `reference_faces`).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from data_pipelines.detection.face import Face, box_iou

__all__ = ["Agreement", "LandmarkAccuracy", "load_reference", "load_landmarks", "match_faces",
           "match_annotation", "agreement", "landmark_accuracy", "faces_from_json", "main"]

# CelebA aligned-and-cropped images (width, height): the frame of the official landmark file.
CELEBA_ALIGNED_SIZE = (178, 218)
FAILURE_NME = 0.1  # an NME above this counts as a landmark failure



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
        stats = _stats
        return {"images": self.images, "reference_faces": self.reference_faces,
                "detected_faces": self.detected_faces, "matched": self.matched,
                "match_rate": self.match_rate, "count_mismatches": self.count_mismatches,
                "iou": stats(self.iou), "landmark_error_iod": stats(lm)}


def _stats(x: np.ndarray) -> dict:
    if not len(x):
        return {}
    return {"mean": float(np.mean(x)), "median": float(np.median(x)),
            "p05": float(np.percentile(x, 5)), "p95": float(np.percentile(x, 95)),
            "min": float(np.min(x)), "max": float(np.max(x))}


@dataclasses.dataclass(frozen=True)
class LandmarkAccuracy:
    """Detections against human-annotated landmarks (one annotated face per image).

    Attributes:
      keys: `[images]` the annotated images, in order.
      detected: `[images]` bool, a detection matched the annotated face.
      errors: `[images, 5]` per-landmark distance / annotation inter-ocular distance (NaN where
        not detected).
      detected_faces: total number of detections on those images.
    """

    keys: tuple[str, ...]
    detected: np.ndarray
    errors: np.ndarray
    detected_faces: int

    @property
    def images(self) -> int:
        return len(self.keys)

    @property
    def detection_rate(self) -> float:
        return float(np.mean(self.detected)) if self.images else 0.0

    @property
    def nme(self) -> np.ndarray:
        """`[detected]` normalised mean error of each detected annotated face."""
        return self.errors[self.detected].mean(axis=1)

    def subset(self, keys: Sequence[str]) -> LandmarkAccuracy:
        """The same figures restricted to `keys` (e.g. faces every compared detector found)."""
        where = {k: i for i, k in enumerate(self.keys)}
        rows = np.array([where[k] for k in keys], np.int64)
        return LandmarkAccuracy(keys=tuple(keys), detected=self.detected[rows],
                                errors=self.errors[rows], detected_faces=-1)

    def summary(self) -> dict:
        """JSON-friendly numbers: detection rate, NME statistics, per-landmark errors."""
        from data_pipelines.detection.face import LANDMARK_NAMES

        nme = self.nme
        per_point = self.errors[self.detected]
        out = {"images": self.images, "detected": int(np.sum(self.detected)),
               "detection_rate": self.detection_rate,
               "nme": {**_stats(nme),
                       **({"p90": float(np.percentile(nme, 90))} if len(nme) else {})},
               "failure_rate": float(np.mean(nme > FAILURE_NME)) if len(nme) else None,
               "per_landmark": {name: {"mean": float(np.mean(per_point[:, i])),
                                       "median": float(np.median(per_point[:, i]))}
                                for i, name in enumerate(LANDMARK_NAMES)} if len(nme) else {}}
        if self.detected_faces >= 0:
            out["detected_faces"] = self.detected_faces
        return out


def load_landmarks(path: str | pathlib.Path) -> dict[str, np.ndarray]:
    """Reads a CelebA-style landmark file -> `{file name: float64 [5, 2] (x, y)}` as written.

    Format: a count line, a line of column names, then `file x1 y1 ... x5 y5` rows.
    """
    path = pathlib.Path(path)
    lines = path.read_text().splitlines()
    out = {}
    for number, line in enumerate(lines[2:], start=3):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 11:
            raise ValueError(f"{path}:{number}: expected 'file x1 y1 ... x5 y5' (11 fields), "
                             f"got {len(parts)}")
        out[parts[0]] = np.asarray(parts[1:], np.float64).reshape(5, 2)
    return out


def faces_from_json(faces: Sequence[Mapping]) -> list[Face]:
    """Reference-file face dicts -> `Face`s (e.g. to score a reference detector itself)."""
    return [Face(box=tuple(float(v) for v in f["box"]), score=float(f.get("score", 1.0)),
                 landmarks=None if f.get("landmarks") is None
                 else np.asarray(f["landmarks"], np.float32)) for f in faces]


def _point_errors(truth: np.ndarray, points: np.ndarray) -> np.ndarray:
    """`[5]` point distances / the inter-ocular distance of `truth` (eye centres 0 and 1)."""
    iod = np.linalg.norm(truth[0] - truth[1])
    return np.linalg.norm(np.asarray(points, np.float64) - truth, axis=1) / max(iod, 1e-6)


def match_annotation(truth: np.ndarray, faces: Sequence[Face]) -> int | None:
    """Index of the face matching annotated points `truth [5, 2]`, or None.

    Candidates are faces with landmarks whose box contains the centroid of `truth`; the one with
    the lowest mean point error wins.
    """
    cx, cy = np.mean(truth, axis=0)
    best, best_err = None, np.inf
    for j, face in enumerate(faces):
        x0, y0, x1, y1 = face.box
        if face.landmarks is None or not (x0 <= cx <= x1 and y0 <= cy <= y1):
            continue
        err = float(np.mean(_point_errors(truth, face.landmarks)))
        if err < best_err:
            best, best_err = j, err
    return best


def landmark_accuracy(annotations: Mapping[str, np.ndarray],
                      detections: Mapping[str, Sequence[Face]]) -> LandmarkAccuracy:
    """Scores `detections` against `annotations` (both keyed alike, same pixel frame).

    Every key of `detections` must be annotated; annotated keys without detections are skipped.
    """
    keys = tuple(k for k in annotations if k in detections)
    detected = np.zeros(len(keys), bool)
    errors = np.full((len(keys), 5), np.nan)
    for i, key in enumerate(keys):
        truth = np.asarray(annotations[key], np.float64)
        j = match_annotation(truth, detections[key])
        if j is not None:
            detected[i] = True
            errors[i] = _point_errors(truth, detections[key][j].landmarks)
    return LandmarkAccuracy(keys=keys, detected=detected, errors=errors,
                            detected_faces=sum(len(detections[k]) for k in keys))


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


def _parse_rows(text: str | None) -> slice:
    """`"START:END"` (Python slice bounds, either may be empty) -> slice; None -> all rows."""
    if not text:
        return slice(None)
    try:
        start, end = (int(v) if v.strip() else None for v in text.split(":"))
    except ValueError:
        raise ValueError(f"expected --landmark_rows as START:END (e.g. 3000:), "
                         f"got {text!r}") from None
    return slice(start, end)


def scaled_landmarks(annotations: Mapping[str, np.ndarray], folder: pathlib.Path,
                     scale: str | float = "auto",
                     pixel_centres: bool = False) -> dict[str, np.ndarray]:
    """Annotations in the pixel frame of the images in `folder`.

    `scale` "auto" multiplies each file's points by its image width / 178 (the CelebA aligned
    width); a number multiplies every point by it. `pixel_centres`: map `x -> (x + 0.5) * s -
    0.5` instead of `x * s` (the exact map of 0-based pixel indices under resizing by `s`).
    """
    from PIL import Image

    out = {}
    for name, points in annotations.items():
        if scale == "auto":
            with Image.open(folder / name) as image:
                factor = image.size[0] / CELEBA_ALIGNED_SIZE[0]
        else:
            factor = float(scale)
        out[name] = (points + 0.5) * factor - 0.5 if pixel_centres else points * factor
    return out


def main(argv: Sequence[str] | None = None) -> dict:
    """CLI: the Flax MTCNN against a reference file and/or human landmarks, printed as JSON."""
    import argparse

    from data_pipelines.detection import mtcnn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", default=None, help="reference detections (JSON)")
    parser.add_argument("--root", default=None, help="folder the reference paths are relative to")
    parser.add_argument("--limit", type=int, default=None, help="first N reference images only")
    parser.add_argument("--landmarks", default=None,
                        help="human landmarks (list_landmarks_align_celeba.txt format); the "
                             "images are the files it names in its folder")
    parser.add_argument("--landmark_scale", default="auto",
                        help="factor for the file's coordinates, or 'auto' (image width / 178)")
    parser.add_argument("--landmark_rows", default=None,
                        help="START:END slice of the annotated files (sorted), e.g. 3000: for "
                             "the last 1,000 of CelebA 001001-005000")
    parser.add_argument("--landmark_pixel_centres", action="store_true",
                        help="scale the file's points as pixel indices: (x + 0.5) * s - 0.5")
    parser.add_argument("--single_pass_landmarks", action="store_true",
                        help="O-Net landmarks without the mirrored pass (as the reference)")
    parser.add_argument("--recall", choices=mtcnn.RECALL_MODES, default="reference",
                        help="MTCNN(recall=...): 'reference' keeps the reference detector's "
                             "faces; 'high' adds the faces its second chance for R-Net-rejected "
                             "proposals finds")
    args = parser.parse_args(argv)
    detect_batch = mtcnn.MTCNN(mirror_landmarks=not args.single_pass_landmarks,
                               recall=args.recall).detect_batch
    if not args.reference and not args.landmarks:
        parser.error("expected --reference (with --root) and/or --landmarks")
    if args.reference and not args.root:
        parser.error("--reference needs --root")
    result: dict = {}
    if args.reference:
        reference = load_reference(args.reference)
        keys = sorted(reference)[: args.limit]
        for group in sorted({pathlib.PurePath(k).parent.name for k in keys}):
            members = [k for k in keys if pathlib.PurePath(k).parent.name == group]
            found = detect_all(members, pathlib.Path(args.root), detect_batch)
            result[group] = agreement(reference, found).summary()
    if args.landmarks:
        path = pathlib.Path(args.landmarks)
        annotations = load_landmarks(path)
        names = sorted(annotations)[_parse_rows(args.landmark_rows)]
        scale = args.landmark_scale if args.landmark_scale == "auto" else float(args.landmark_scale)
        truth = scaled_landmarks({n: annotations[n] for n in names}, path.parent, scale,
                                 pixel_centres=args.landmark_pixel_centres)
        found = detect_all(names, path.parent, detect_batch)
        result["human_landmarks"] = {"file": str(path), "rows": args.landmark_rows or ":",
                                     **landmark_accuracy(truth, found).summary()}
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
