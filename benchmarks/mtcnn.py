r"""MTCNN face-detection throughput (images/s): data_pipelines vs PyPI `mtcnn` 1.0.0 side by side.

    python -m benchmarks.mtcnn                       # both, default image sets
    python -m benchmarks.mtcnn --reference_python=   # ours only

The comparison is the PyPI package `mtcnn==1.0.0` (TensorFlow/Keras). It is the same network
with the same original MTCNN weights (ours were converted from its `assets/weights/*.lz4`) and
the same crop sampling, so detections should agree. It is a benchmark-only extra, not in
requirements.txt: it needs TensorFlow, so install it into its own venv under the git-ignored
`third_party/` (the benchmark runs it there as a subprocess):

    python3.11 -m venv third_party/venv-mtcnn
    third_party/venv-mtcnn/bin/pip install tensorflow-cpu==2.21.0 mtcnn==1.0.0

(facenet-pytorch 2.6.0, the other PyPI MTCNN with the original weights, needs a torchvision
whose compiled `nms` op loads with the installed torch; PyPI has only CUDA builds of
torchvision 0.28, whose ops do not load with the CPU-only torch 2.13 used here. Its accuracy
against human landmarks is compared in `benchmarks/mtcnn_landmarks.py`, which runs it beside a
stand-in for the two torchvision names it imports.)

Both detectors get the same decoded uint8 RGB images and the same settings: min face 20 px,
pyramid factor 0.709, thresholds 0.6 / 0.7 / 0.7 (passed explicitly to `mtcnn`, whose O-Net
default is 0.8), NMS 0.5 / 0.7 / 0.7 / 0.7. Image sets, each timed separately: the CelebA
aligned faces of tests/data/celeba_small (89x109) and the 1024x1024 CelebA-HQ faces of
../shared/data/faces_hq (the four vendored in tests/data/data_pipelines/faces_hq without it).

Modes: `single` (one image per call, the dataset-build loop) and `batch` (`--batch` same-sized
images per call: our `detect_batch`, their `detect_faces(list)`). Each implementation first
makes one untimed pass over the whole set (warm-up: our jit compilations for this image size and
every R-/O-Net bucket, TensorFlow's tracing); then `--repeats` timed passes alternate between
the two (theirs runs in a long-lived subprocess) and the best pass of each is kept, so that
load from other processes on the machine hits both sides alike. The warm-up pass time and the
first call's time (≈ compile) are reported separately. Agreement: images where both find the
same number of faces, and the mean box IoU of matched faces. Prints a table and one JSON line.
"""

from __future__ import annotations

import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np
from absl import app, flags
from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from data_pipelines.detection import mtcnn  # noqa: E402

_SHARED_HQ = ROOT.parent / "shared" / "data" / "faces_hq"
_REF_PY = flags.DEFINE_string(
    "reference_python", str(ROOT / "third_party" / "venv-mtcnn" / "bin" / "python"),
    "Python of a venv with mtcnn==1.0.0 + TensorFlow; empty: time ours only.")
_SMALL = flags.DEFINE_string("small", str(ROOT / "tests" / "data" / "celeba_small"),
                             "Folder of small faces (89x109 CelebA).")
_LARGE = flags.DEFINE_string(
    "large", str(_SHARED_HQ if _SHARED_HQ.is_dir()
                 else ROOT / "tests" / "data" / "data_pipelines" / "faces_hq"),
    "Folder of large faces (the 1024x1024 images in it are used).")
_NUM_SMALL = flags.DEFINE_integer("num_small", 128, "Small images to time.")
_NUM_LARGE = flags.DEFINE_integer("num_large", 12, "Large images to time.")
_BATCH = flags.DEFINE_integer("batch", 16, "Images per call in batch mode (large: batch / 4).")
_MODES = flags.DEFINE_list("modes", ["single", "batch"], "single and/or batch.")
_REPEATS = flags.DEFINE_integer("repeats", 2, "Timed passes per implementation (best kept).")

SETTINGS = dict(min_face_size=20, scale_factor=0.709, threshold_pnet=0.6, threshold_rnet=0.7,
                threshold_onet=0.7, nms_pnet1=0.5, nms_pnet2=0.7, nms_rnet=0.7, nms_onet=0.7)

# Runs in the mtcnn venv: times `mtcnn.MTCNN().detect_faces` on the same arrays.
_REFERENCE_SCRIPT = r"""
import json, os, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np
from mtcnn import MTCNN
data = np.load(sys.argv[1])
settings = json.loads(sys.argv[2])
images, batch = data["images"], int(data["batch"])
detector = MTCNN(device="CPU:0")

def run(mode):
    faces, first = [], None
    step = 1 if mode == "single" else batch
    start = time.perf_counter()
    for i in range(0, len(images), step):
        chunk = [im for im in images[i:i + step]]
        out = detector.detect_faces(chunk[0] if step == 1 else chunk, box_format="xyxy",
                                    **settings)
        out = [out] if step == 1 else out
        faces += [[f["box"] + [f["confidence"]] for f in o] for o in out]
        if first is None:
            first = time.perf_counter() - start
    return faces, time.perf_counter() - start, first

from importlib.metadata import version
versions = {name: version(name) for name in ("mtcnn", "tensorflow-cpu", "keras")}
print("RESULT " + json.dumps(versions), flush=True)
for line in sys.stdin:  # one request per line: a mode; one timed pass per request
    faces, seconds, first = run(line.strip())
    print("RESULT " + json.dumps(dict(seconds=seconds, first_call_s=first, faces=[
        [[float(v) for v in f] for f in fs] for fs in faces])), flush=True)
"""


def _load(folder: str, size: tuple[int, int] | None, num: int) -> np.ndarray:
    images = []
    for path in sorted(pathlib.Path(folder).iterdir()):
        if path.suffix.lower() not in (".jpg", ".jpeg", ".png"):
            continue
        image = Image.open(path)
        if size is None or image.size == size:
            images.append(np.asarray(image.convert("RGB")))
        if len(images) == num:
            break
    if not images:
        raise FileNotFoundError(f"{folder}: no images of size {size}")
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise ValueError(f"{folder}: expected one image size, got {sorted(shapes)}")
    return np.stack(images)


class _Ours:
    def __init__(self, images: np.ndarray, batch: int):
        self.images, self.batch, self.detector = images, batch, mtcnn.MTCNN()

    def run(self, mode: str) -> dict:
        faces, first = [], None
        step = 1 if mode == "single" else self.batch
        start = time.perf_counter()
        for i in range(0, len(self.images), step):
            out = self.detector.detect_batch(list(self.images[i:i + step]))
            faces += [[[*f.box, f.score] for f in fs] for fs in out]
            if first is None:
                first = time.perf_counter() - start
        return dict(seconds=time.perf_counter() - start, first_call_s=first, faces=faces)


class _Theirs:
    """PyPI `mtcnn` in its own venv, as a subprocess serving one timed pass per request."""

    def __init__(self, images: np.ndarray, batch: int, tmp: str):
        path = os.path.join(tmp, "images.npz")
        np.savez(path, images=images, batch=batch)
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        self.proc = subprocess.Popen([_REF_PY.value, "-c", _REFERENCE_SCRIPT, path,
                                      json.dumps(SETTINGS)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env)
        self.versions = self._reply()

    def _reply(self) -> dict:
        for line in self.proc.stdout:
            if line.startswith("RESULT "):
                return json.loads(line[len("RESULT "):])
        raise RuntimeError(f"{_REF_PY.value}: the mtcnn subprocess ended (see stderr above)")

    def run(self, mode: str) -> dict:
        self.proc.stdin.write(mode + "\n")
        self.proc.stdin.flush()
        return self._reply()

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def _measure(impls: dict, mode: str, repeats: int) -> dict:
    """Warm-up pass, then `repeats` timed passes alternating between the implementations
    (best pass kept, so that load from other processes affects both sides alike)."""
    result = {}
    for name, impl in impls.items():
        warm = impl.run(mode)
        result[name] = dict(warmup_s=warm["seconds"], first_call_s=warm["first_call_s"],
                            seconds=float("inf"))
    for _ in range(repeats):
        for name, impl in impls.items():
            timed = impl.run(mode)
            if timed["seconds"] < result[name]["seconds"]:
                result[name].update(seconds=timed["seconds"], faces=timed["faces"])
    return result


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _agreement(ours: list, theirs: list) -> dict:
    same = sum(len(a) == len(b) for a, b in zip(ours, theirs, strict=True))
    ious = []
    for a, b in zip(ours, theirs, strict=True):
        for box in a:  # best match of each of our faces among theirs
            if b:
                ious.append(max(_iou(box, other) for other in b))
    return dict(images=len(ours), same_count=same, faces_ours=sum(map(len, ours)),
                faces_theirs=sum(map(len, theirs)),
                box_iou_mean=float(np.mean(ious)) if ious else None)


def main(argv):
    del argv
    import jax

    sets = {
        "celeba_small": _load(_SMALL.value, None, _NUM_SMALL.value),
        "faces_hq_1024": _load(_LARGE.value, (1024, 1024), _NUM_LARGE.value),
    }
    modes = list(_MODES.value)
    out = dict(device=platform.processor() or platform.machine(), jax=jax.__version__,
               jax_backend=jax.default_backend(), cpu_count=os.cpu_count(), sets={})
    rows = []
    for name, images in sets.items():
        batch = _BATCH.value if images.shape[1] < 512 else max(1, _BATCH.value // 4)
        entry = dict(shape=list(images.shape[1:3]), num=len(images), batch=batch)
        with tempfile.TemporaryDirectory() as tmp:
            impls = {"ours": _Ours(images, batch)}
            if _REF_PY.value:
                impls["theirs"] = _Theirs(images, batch, tmp)
                out["reference_versions"] = impls["theirs"].versions
            try:
                for mode in modes:
                    m = _measure(impls, mode, _REPEATS.value)
                    ours = m["ours"]
                    res = dict(ours_ips=len(images) / ours["seconds"],
                               ours_warmup_s=ours["warmup_s"],
                               ours_first_call_s=ours["first_call_s"])
                    if "theirs" in m:
                        ref = m["theirs"]
                        res.update(theirs_ips=len(images) / ref["seconds"],
                                   theirs_warmup_s=ref["warmup_s"],
                                   theirs_first_call_s=ref["first_call_s"],
                                   ratio=ref["seconds"] / ours["seconds"],
                                   agreement=_agreement(ours["faces"], ref["faces"]))
                    entry[mode] = res
                    rows.append((name, images.shape[1:3], mode,
                                 batch if mode == "batch" else 1, res))
            finally:
                if "theirs" in impls:
                    impls["theirs"].close()
        out["sets"][name] = entry

    print(f"{'set':15} {'HxW':>9} {'mode':6} {'B':>3} {'ours img/s':>10} {'mtcnn img/s':>11} "
          f"{'ratio':>6} {'ours warm-up s':>14} {'same count':>10} {'IoU':>5}")
    for name, (h, w), mode, b, r in rows:
        agree = r.get("agreement", {})
        theirs = f"{r['theirs_ips']:11.2f}" if "theirs_ips" in r else f"{'-':>11}"
        ratio = f"{r['ratio']:6.2f}" if "ratio" in r else f"{'-':>6}"
        same = f"{agree['same_count']}/{agree['images']}" if agree else "-"
        iou = f"{agree['box_iou_mean']:.3f}" if agree.get("box_iou_mean") else "-"
        print(f"{name:15} {f'{h}x{w}':>9} {mode:6} {b:3d} {r['ours_ips']:10.2f} {theirs} "
              f"{ratio} {r['ours_warmup_s']:14.1f} {same:>10} {iou:>5}")
    print(json.dumps(out))


if __name__ == "__main__":
    app.run(main)
