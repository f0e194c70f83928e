r"""MTCNN accuracy against human-annotated landmarks: ours vs facenet-pytorch vs PyPI `mtcnn`.

    python -m benchmarks.mtcnn_landmarks                    # held-out: the last 1,000 faces
    python -m benchmarks.mtcnn_landmarks --rows=:3000       # the tuning split
    python -m benchmarks.mtcnn_landmarks --nofacenet        # ours (+ stored PyPI mtcnn) only
    python -m benchmarks.mtcnn_landmarks --nonfaces=DIR     # + detections on non-face images
    python -m benchmarks.mtcnn_landmarks --rows=:600 --degrade=dim:0.35 --nonfaces=
                                                            # degraded copies (see --degrade)

Faces: ../shared/data/celeba_small (CelebA aligned faces 001001-005000, 89x109) with the official
human-annotated CelebA landmarks `list_landmarks_align_celeba.txt` there (annotated on the
178x218 originals; scaled by image width / 178 = 0.5). The fixed split: rows `:3000` (001001-
004000) are for development and any tuning, rows `3000:` (004001-005000, the default) are the
held-out evaluation set. The tests' vendored faces (001001-001512) lie in the development split.

Scored with `data_pipelines.detection.agreement.landmark_accuracy`: an annotated face is
detected when a detection's box contains the centroid of its 5 points; NME = mean point distance
/ the annotation's inter-ocular distance (eye centres). Printed per detector: detection rate,
NME mean / median / p90, failures (NME > 0.1), per-landmark mean, extra detections (detections
that are not the annotated face's match: false positives or other people in the picture), and the
same NME figures on the faces every detector found (a like-for-like comparison); then one JSON
line.

Pixel frame: the file's coordinates are multiplied by 0.5 (`x * s`, as the data's MANIFEST says).
At this size half a pixel is ~0.026 of the ~19 px inter-ocular distance, so a sub-pixel
convention can reorder detectors; the table is therefore repeated with the pixel-centre mapping
`(x + 0.5) * s - 0.5` (= `x / 2 - 0.25`, the exact map of pixel indices under a 2x downscale if
the annotation uses 0-based pixel indices).

Detectors, all with the original MTCNN weights and min face 20, factor 0.709, thresholds
0.6 / 0.7 / 0.7:
  * `ours`: `data_pipelines.detection.mtcnn.MTCNN()` (landmarks averaged with O-Net's on the
    mirrored crop); `ours_single`: `MTCNN(mirror_landmarks=False)`, the single O-Net pass of the
    reference detectors (the code before the mirrored pass; same faces and boxes);
    `ours_high`: `MTCNN(recall="high")`, the same faces as `ours` plus those its verified second
    chances find (checked here: every `ours` face is in `ours_high` with the same box).
  * `facenet`: facenet-pytorch 2.6.0 (`MTCNN(...).detect(batch, landmarks=True)`, CPU torch).
    A benchmark-only extra, not in requirements.txt; install it into the venv without its
    dependencies (torch is already there; torchvision is not needed, see below):

        .venv/bin/pip install --no-deps facenet-pytorch==2.6.0

    It imports `torchvision.ops.boxes.batched_nms` and `torchvision.transforms.functional`;
    PyPI's torchvision builds do not import beside the CPU torch 2.13 here, so this script
    installs a stand-in `torchvision` module (greedy NMS with torchvision's semantics: IoU
    without the +1 pixel convention, boxes overlapping a kept higher-scoring box by more than
    the threshold dropped, per batch index) before importing facenet_pytorch. Skipped with a
    note when facenet_pytorch is not installed.
  * `pypi_mtcnn`: PyPI `mtcnn` 1.0.0 (TensorFlow), read from its stored detections
    ../shared/data/mtcnn_reference.json (as that package outputs them: whole pixels), when the
    file is there; nothing is run.
"""

from __future__ import annotations

import json
import os
import pathlib
import platform
import sys
import time
import types
import zlib
from collections.abc import Callable

import numpy as np
from absl import app, flags
from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from data_pipelines.detection import agreement, mtcnn  # noqa: E402
from data_pipelines.detection.face import LANDMARK_NAMES, Face  # noqa: E402

_SHARED = ROOT.parent / "shared" / "data"
_LANDMARKS = flags.DEFINE_string(
    "landmarks", str(_SHARED / "celeba_small" / "list_landmarks_align_celeba.txt"),
    "Human landmark file (CelebA format); the images are the files it names in its folder.")
_ROWS = flags.DEFINE_string("rows", "3000:", "START:END of the sorted annotated files.")
_REFERENCE = flags.DEFINE_string("reference", str(_SHARED / "mtcnn_reference.json"),
                                 "PyPI mtcnn detections (JSON) to score as well; empty: none.")
_FACENET = flags.DEFINE_boolean("facenet", True, "Run facenet-pytorch 2.6.0 if installed.")
_BATCH = flags.DEFINE_integer("batch", 64, "Images per detector call.")
_DEGRADE = flags.DEFINE_string(
    "degrade", "", "Score degraded copies of the faces instead (annotations moved with them): "
    "scale:S (bilinear resize by S), jpeg:Q (JPEG quality Q), dim:F (F x the values plus "
    "Gaussian noise of 6 levels, seeded per file), blur:R (Gaussian blur, radius R), "
    "rotate:DEG (about the centre, grey fill); empty: the files as they are.")
_NONFACES = flags.DEFINE_string("nonfaces", str(_SHARED / "nonfaces"),
                                "Folder of non-face images: detections per detector printed "
                                "(plus synthetic noise, blank and texture images); empty: none.")


def _install_torchvision_stand_in() -> None:
    """A minimal `torchvision` (the two names facenet_pytorch imports) for CPU torch."""
    import torch

    def batched_nms(boxes, scores, idxs, iou_threshold):
        if boxes.numel() == 0:
            return torch.empty((0,), dtype=torch.int64)
        b = boxes.detach().double().cpu().numpy()
        s = scores.detach().double().cpu().numpy()
        g = idxs.detach().cpu().numpy()
        order = np.argsort(-s, kind="stable")
        area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        keep = []
        alive = np.ones(len(b), bool)
        for i in order:
            if not alive[i]:
                continue
            keep.append(i)
            lo = np.maximum(b[i, :2], b[:, :2])
            hi = np.minimum(b[i, 2:], b[:, 2:])
            inter = np.prod(np.clip(hi - lo, 0, None), axis=1)
            iou = inter / np.maximum(area[i] + area - inter, 1e-12)
            alive &= ~((iou > iou_threshold) & (g == g[i]))
        return torch.as_tensor(np.asarray(keep, np.int64))

    tv = types.ModuleType("torchvision")
    ops = types.ModuleType("torchvision.ops")
    boxes = types.ModuleType("torchvision.ops.boxes")
    boxes.batched_nms = ops.batched_nms = batched_nms
    transforms = types.ModuleType("torchvision.transforms")
    functional = types.ModuleType("torchvision.transforms.functional")
    tv.ops, ops.boxes, tv.transforms, transforms.functional = ops, boxes, transforms, functional
    for name, module in [("torchvision", tv), ("torchvision.ops", ops),
                         ("torchvision.ops.boxes", boxes), ("torchvision.transforms", transforms),
                         ("torchvision.transforms.functional", functional)]:
        sys.modules.setdefault(name, module)


def _facenet_detector():
    try:
        import torch  # noqa: F401
    except ImportError:
        return None, "torch not installed"
    _install_torchvision_stand_in()
    try:
        import facenet_pytorch
    except ImportError:
        return None, "facenet_pytorch not installed (pip install --no-deps facenet-pytorch==2.6.0)"
    from importlib.metadata import version

    detector = facenet_pytorch.MTCNN(min_face_size=20, thresholds=[0.6, 0.7, 0.7], factor=0.709,
                                     keep_all=True, device="cpu")

    def detect_batch(images: list[np.ndarray]) -> list[list[Face]]:
        boxes, probs, points = detector.detect(np.stack(images), landmarks=True)
        out = []
        for b, p, m in zip(boxes, probs, points, strict=True):
            if b is None:
                out.append([])
                continue
            out.append([Face(box=tuple(float(v) for v in bb), score=float(pp),
                             landmarks=np.asarray(mm, np.float32))
                        for bb, pp, mm in zip(b, p, m, strict=True)])
        return out

    return detect_batch, f"facenet-pytorch {version('facenet-pytorch')}"


def degrade(spec: str, image: np.ndarray, seed: int) -> tuple[np.ndarray, Callable]:
    """A degraded copy of a uint8 `[H, W, 3]` image, and the map `move(points, pixel_centres)`
    of `[..., 2]` pixel points from the original into it (`pixel_centres`: the points are pixel
    indices, scaled as `(x + 0.5) * s - 0.5`; see the module docstring).

    `spec` is `kind:value` (see `--degrade`); `seed` seeds `dim`'s noise.
    """
    import io

    from PIL import ImageFilter

    kind, _, value = spec.partition(":")
    pil = Image.fromarray(image)
    height, width = image.shape[:2]
    unmoved = lambda points, pixel_centres=False: points  # noqa: E731
    if kind == "scale":
        s = float(value)
        size = (round(width * s), round(height * s))

        def scaled(points, pixel_centres=False):
            return (points + 0.5) * s - 0.5 if pixel_centres else points * s

        return np.asarray(pil.resize(size, Image.BILINEAR)), scaled
    if kind == "jpeg":
        buffer = io.BytesIO()
        pil.save(buffer, "JPEG", quality=int(value))
        return np.asarray(Image.open(buffer).convert("RGB")), unmoved
    if kind == "dim":
        noise = np.random.default_rng(seed).normal(0.0, 6.0, image.shape)
        return np.clip(image * float(value) + noise, 0, 255).astype(np.uint8), unmoved
    if kind == "blur":
        return np.asarray(pil.filter(ImageFilter.GaussianBlur(float(value)))), unmoved
    if kind == "rotate":
        # PIL turns the picture counter-clockwise by DEG about its centre, (w / 2, h / 2) with
        # pixel centres at i + 0.5: ((w - 1) / 2, (h - 1) / 2) in pixel indices, y down.
        t = np.deg2rad(float(value))
        centre = np.array([(width - 1) / 2, (height - 1) / 2])
        turn = np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]])
        rotated = pil.rotate(float(value), Image.BILINEAR, fillcolor=(128, 128, 128))
        return np.asarray(rotated), \
            lambda points, pixel_centres=False: (points - centre) @ turn.T + centre
    raise ValueError(f"expected --degrade scale|jpeg|dim|blur|rotate:VALUE, got {spec!r}")


def _run(detect_batch, names: list[str], images: dict[str, np.ndarray], batch: int):
    found, start = {}, time.perf_counter()
    for i in range(0, len(names), batch):
        chunk = names[i:i + batch]
        found.update(zip(chunk, detect_batch([images[n] for n in chunk]), strict=True))
    return found, time.perf_counter() - start


def _row(name: str, acc: agreement.LandmarkAccuracy, common: agreement.LandmarkAccuracy) -> dict:
    s, c = acc.summary(), common.summary()
    return dict(detector=name, images=s["images"], detected=s["detected"],
                detection_rate=s["detection_rate"], detected_faces=s.get("detected_faces"),
                extra_detections=s.get("detected_faces", 0) - s["detected"],
                nme_mean=s["nme"]["mean"], nme_median=s["nme"]["median"], nme_p90=s["nme"]["p90"],
                failure_rate=s["failure_rate"],
                per_landmark_mean={k: v["mean"] for k, v in s["per_landmark"].items()},
                common_faces=c["images"], common_nme_mean=c["nme"]["mean"],
                common_nme_median=c["nme"]["median"])


def main(argv):
    del argv
    import jax

    path = pathlib.Path(_LANDMARKS.value)
    annotations = agreement.load_landmarks(path)
    names = sorted(annotations)[agreement._parse_rows(_ROWS.value)]
    truth = agreement.scaled_landmarks({n: annotations[n] for n in names}, path.parent)
    centre = agreement.scaled_landmarks({n: annotations[n] for n in names}, path.parent,
                                        pixel_centres=True)
    images = {n: np.asarray(Image.open(path.parent / n).convert("RGB")) for n in names}
    if _DEGRADE.value:
        for n in names:
            images[n], move = degrade(_DEGRADE.value, images[n], zlib.crc32(n.encode()))
            truth[n], centre[n] = move(truth[n]), move(centre[n], pixel_centres=True)
    detectors = {"ours": (mtcnn.MTCNN().detect_batch, "data_pipelines (Flax)"),
                 "ours_single": (mtcnn.MTCNN(mirror_landmarks=False).detect_batch,
                                 "data_pipelines (Flax), single O-Net pass"),
                 "ours_high": (mtcnn.MTCNN(recall="high").detect_batch,
                               "data_pipelines (Flax), recall='high'")}
    notes = {}
    if _FACENET.value:
        fn, note = _facenet_detector()
        if fn is None:
            print(f"facenet: skipped ({note})")
        else:
            detectors["facenet"] = (fn, note)
    results, seconds = {}, {}
    for key, (fn, note) in detectors.items():
        notes[key] = note
        _run(fn, names[: _BATCH.value], images, _BATCH.value)  # warm-up (compilation)
        results[key], seconds[key] = _run(fn, names, images, _BATCH.value)
    stored = None
    if _REFERENCE.value and pathlib.Path(_REFERENCE.value).is_file() and not _DEGRADE.value:
        stored = agreement.load_reference(_REFERENCE.value)
        prefix = f"{path.parent.name}/"
        if all(prefix + n in stored for n in names):
            results["pypi_mtcnn"] = {n: agreement.faces_from_json(stored[prefix + n])
                                     for n in names}
            notes["pypi_mtcnn"] = "PyPI mtcnn 1.0.0, stored detections (whole pixels)"

    kept = _kept(results["ours"], results["ours_high"])
    print(f"ours_high keeps every ours face with the same box on {kept}/{len(names)} images")
    nonfaces = _nonface_check(detectors, stored)
    frames = {"x * s": truth, "(x + 0.5) * s - 0.5": centre}
    tables = {}
    for frame, marks in frames.items():
        accuracy = {k: agreement.landmark_accuracy(marks, v) for k, v in results.items()}
        common = [k for i, k in enumerate(names) if all(a.detected[i] for a in accuracy.values())]
        tables[frame] = [_row(k, a, a.subset(common)) for k, a in accuracy.items()]
        print(f"\n{len(names)} faces ({path.parent.name} rows {_ROWS.value}"
              f"{', degraded ' + _DEGRADE.value if _DEGRADE.value else ''}), annotation frame "
              f"{frame}; common to all detectors: {len(common)}")
        _print_table(tables[frame])
    print(json.dumps(dict(machine=platform.processor() or platform.machine(),
                          cpu_count=os.cpu_count(), jax=jax.__version__, rows_slice=_ROWS.value,
                          degrade=_DEGRADE.value,
                          faces=len(names), common=len(common), notes=notes,
                          ours_high_keeps_ours=kept, nonfaces=nonfaces,
                          seconds={k: round(v, 2) for k, v in seconds.items()}, results=tables)))


def _kept(ours: dict[str, list[Face]], high: dict[str, list[Face]]) -> int:
    """Images on which every face of `ours` is in `high` with the same box."""
    return sum(all(f.box in {g.box for g in high[k]} for f in faces) for k, faces in ours.items())


def _synthetic_nonfaces(seed: int = 0) -> dict[str, np.ndarray]:
    """Noise, blank, gradient, checkerboard, stripe and blurred-noise images, 3 sizes."""
    from PIL import ImageFilter

    rng = np.random.default_rng(seed)
    out = {}
    for h, w in [(109, 89), (128, 128), (256, 256)]:
        yy, xx = np.mgrid[:h, :w]
        for j in range(4):
            out[f"uniform_{h}x{w}_{j}"] = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            out[f"gauss_{h}x{w}_{j}"] = np.clip(rng.normal(128, 40, (h, w, 3)), 0, 255)
            blur = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
            blur = np.asarray(blur.filter(ImageFilter.GaussianBlur(1 + j)), np.float32)
            out[f"smooth_{h}x{w}_{j}"] = (blur - blur.mean()) / (blur.std() + 1e-6) * 50 + 128
            out[f"checker_{h}x{w}_{j}"] = ((yy // (2 + j) + xx // (2 + j)) % 2)[..., None] * 255.0
            angle = np.pi * j / 4
            out[f"stripes_{h}x{w}_{j}"] = (127.5 + 127.5 * np.sin(
                2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / (3 + 2 * j)))[..., None]
        for v in (0, 128, 255):
            out[f"blank{v}_{h}x{w}"] = np.full((h, w, 1), float(v))
        out[f"gradient_{h}x{w}"] = np.broadcast_to(np.linspace(0, 255, w)[None, :, None],
                                                   (h, w, 1))
    return {k: np.broadcast_to(np.clip(v, 0, 255), v.shape[:2] + (3,)).astype(np.uint8)
            for k, v in out.items()}


def _nonface_check(detectors: dict, stored: dict | None = None) -> dict:
    """Detections of each detector on `--nonfaces` images and on synthetic non-faces (and the
    stored PyPI `mtcnn` detections of the `--nonfaces` images, when `stored` has them)."""
    sets = {"synthetic": _synthetic_nonfaces()}
    folder = pathlib.Path(_NONFACES.value) if _NONFACES.value else None
    if folder and folder.is_dir():
        sets[folder.name] = {p.name: np.asarray(Image.open(p).convert("RGB"))
                             for p in sorted(folder.iterdir()) if p.is_file()}
    out = {}
    for key, (fn, _) in detectors.items():
        for name, images in sets.items():
            found = {k: fn([im])[0] for k, im in images.items()}  # sizes differ: one per call
            fired = {k: len(v) for k, v in found.items() if v}
            out.setdefault(key, {})[name] = dict(images=len(images), images_with_faces=len(fired),
                                                 faces=sum(fired.values()), which=fired)
            print(f"{key:11} non-faces {name}: {sum(fired.values())} faces on {len(fired)}/"
                  f"{len(images)} images {sorted(fired)}")
    if stored and folder and all(f"{folder.name}/{k}" in stored for k in sets.get(folder.name, {})):
        fired = {k: len(stored[f"{folder.name}/{k}"]) for k in sets[folder.name]
                 if stored[f"{folder.name}/{k}"]}
        out["pypi_mtcnn"] = {folder.name: dict(images=len(sets[folder.name]),
                                               images_with_faces=len(fired),
                                               faces=sum(fired.values()), which=fired)}
        print(f"pypi_mtcnn  non-faces {folder.name} (stored): {sum(fired.values())} faces on "
              f"{len(fired)}/{len(sets[folder.name])} images {sorted(fired)}")
    return out


def _print_table(rows: list[dict]) -> None:
    print(f"{'detector':11} {'detected':>9} {'rate':>7} {'NME mean':>9} {'median':>7} "
          f"{'p90':>7} {'>0.1':>6} {'extra':>5} {'common mean':>11} {'median':>7}  "
          f"per-landmark mean ({', '.join(LANDMARK_NAMES)})")
    for r in rows:
        marks = " ".join(f"{v:.4f}" for v in r["per_landmark_mean"].values())
        print(f"{r['detector']:11} {r['detected']:4d}/{r['images']:<4d} "
              f"{r['detection_rate']:7.4f} {r['nme_mean']:9.5f} {r['nme_median']:7.5f} "
              f"{r['nme_p90']:7.5f} {r['failure_rate']:6.4f} {r['extra_detections']:5d} "
              f"{r['common_nme_mean']:11.5f} {r['common_nme_median']:7.5f}  {marks}")


if __name__ == "__main__":
    app.run(main)
