r"""Edit success and disentanglement of fitted latent directions (issue 17 item 6).

    # 1. a classifier that sees faces as celeba32 draws them (the face box at 32²); celeba32
    #    ships the one made this way (flaxgan/pretrained/celeba32/attributes):
    python -m benchmarks.edit_success --prepare_faces=out/celeba_faces32
    python -m experiments.train_attributes --data=out/celeba_faces32 --resolution=32 \
        --channel_base=2048 --channel_max=128 --epochs=15 --outdir=out/attr_faces32
    # 2. directions (10k latents, RandomState(0); the bundled classifier unless --classifier):
    python -m experiments.directions --network=celeba32 --spaces=w,z --outdir=out/dirs_celeba32
    # 3. this measurement, on other latents (RandomState(--seed)):
    python -m benchmarks.edit_success --network=celeba32 --directions=out/dirs_celeba32 \
        [--num=200] [--condition=young:male,smile:male]

Every direction file of `--directions` (W, and Z: z moved, then mapped) and every
`--condition=a:b` pair (`a` without `b`, `flaxgan.edit.condition`) is swept over `--strengths`
for `--num` latents; each image is scored by the same labellers the directions were fitted
with (the classifier's probabilities for smile/young/male/eyeglasses, the MTCNN yaw). A random
W direction of the median scale is the baseline. Per direction:

* `success`: fraction of latents whose target score is higher at the largest strength than at
  the smallest (for yaw: of the latents with a face at both ends);
* `monotone`: fraction whose target score never decreases along the sweep;
* `delta`: mean target change, largest minus smallest strength (probability; yaw: raw);
* `other`: mean |change| of each other attribute's probability (disentanglement; lower is
  better, compare with the random direction).

Prints a markdown table and writes `--out` (JSON). The classifier's held-out accuracy bounds
what these figures can show (its `accuracy.json`).
"""

from __future__ import annotations

import json
import pathlib
import time

import numpy as np
from absl import app, flags

from flaxgan import edit, pretrained, sample

_NETWORK = flags.DEFINE_string("network", "celeba32", "Generator (sample.load).")
_DIRECTIONS = flags.DEFINE_string("directions", "out/dirs_celeba32",
                                  "Folder of experiments.directions files.")
_CLASSIFIER = flags.DEFINE_string("classifier", None, "Attribute classifier folder (default: "
                                  "the one bundled with --network).")
_NUM = flags.DEFINE_integer("num", 200, "Latents swept per direction.")
_SEED = flags.DEFINE_integer("seed", 1, "Seed of the swept latents (the fit used 0).")
_STRENGTHS = flags.DEFINE_list("strengths", "-3,-1.5,0,1.5,3", "Sweep strengths.")
_CONDITION = flags.DEFINE_list("condition", "young:male,smile:male,male:young",
                               "Conditioned directions a:b (a without b).")
_OUT = flags.DEFINE_string("out", "out/edit_success.json", "JSON output.")
_PREPARE = flags.DEFINE_string("prepare_faces", None, "Only write the celeba32 face crops "
                               "with their attribute table to this folder, then exit.")

CELEBA = ("Smiling", "Young", "Male", "Eyeglasses")
FACES = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "celeba_small"


def prepare_faces(outdir: str, resolution: int = 32) -> int:
    """The celeba_small faces cut and resized as the celeba32 training data
    (`experiments/configs/celeba32.py`), as PNGs beside their `list_attr_celeba.txt` rows."""
    from PIL import Image

    from data_pipelines import input as data_input
    from experiments.configs.celeba32 import CELEBA_FACE_BOX

    out = pathlib.Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    source, _ = data_input.open_source(str(FACES), "train", resolution=resolution,
                                       crop_box=CELEBA_FACE_BOX)
    for i, path in enumerate(source.files):
        Image.fromarray(source[i]["image"]).save(out / f"{path.stem}.png")
    lines = (FACES / "list_attr_celeba.txt").read_text().splitlines()
    rows = [line.replace(".jpg", ".png", 1) for line in lines[2:]]
    (out / "list_attr_celeba.txt").write_text("\n".join(lines[:2] + rows) + "\n")
    return len(source.files)


def score(g, labellers, ws: np.ndarray) -> dict[str, np.ndarray]:
    """ws `[S, N, num_ws, w_dim]` -> attribute -> `[S, N]` (CelebA: probabilities)."""
    s, n = ws.shape[:2]
    images = sample.to_uint8(edit.render(g, ws, batch_size=64))
    images = images.reshape(s * n, *images.shape[2:])
    out: dict[str, list] = {}
    for i in range(0, len(images), 256):
        for lab in labellers:
            values = lab.fn(images[i:i + 256])
            for j, name in enumerate(lab.names):
                out.setdefault(name, []).append(values[:, j])
    scores = {k: np.concatenate(v).reshape(s, n) for k, v in out.items()}
    return {k: (1 / (1 + np.exp(-v)) if k != edit.YAW else v) for k, v in scores.items()}


def measure(scores: dict[str, np.ndarray], target: str | None) -> dict:
    """The figures of one sweep (see the module docstring); `target` None: only `other`."""
    row: dict = dict(success=None, monotone=None, delta=None, counted=0)
    if target is not None:
        t = scores[target]
        ends = np.isfinite(t[0]) & np.isfinite(t[-1])
        if ends.any():
            row.update(success=float(np.mean(t[-1][ends] > t[0][ends])),
                       monotone=float(np.mean(np.all(np.diff(t[:, ends], axis=0) >= 0,
                                                     axis=0))),
                       delta=float(np.mean(t[-1][ends] - t[0][ends])), counted=int(ends.sum()))
    row["other"] = {k: float(np.nanmean(np.abs(v[-1] - v[0])))
                    for k, v in scores.items() if k not in (target, edit.YAW)}
    return row


def main(argv) -> None:
    del argv
    if _PREPARE.value:
        n = prepare_faces(_PREPARE.value)
        print(f"wrote {n} faces to {_PREPARE.value}; now: python -m experiments.train_attributes "
              f"--data={_PREPARE.value} --resolution=32 --channel_base=2048 --channel_max=128 "
              "--epochs=15 --outdir=out/attr_faces32")
        return
    start = time.perf_counter()
    g = sample.load(_NETWORK.value)
    strengths = np.array([float(v) for v in _STRENGTHS.value], np.float32)
    files = sorted(pathlib.Path(_DIRECTIONS.value).glob("*.npz"))
    directions = {f.stem: edit.load_direction(f) for f in files}
    for pair in _CONDITION.value:
        a, b = pair.split(":")
        if a in directions and b in directions:
            directions[f"{a}|{b}"] = edit.condition(directions[a], directions[b])
    random = np.random.RandomState(12345).randn(g.w_dim)
    scales = [d.scale for d in directions.values() if d.space == "w"]
    directions["random"] = edit.Direction(
        normal=(random / np.linalg.norm(random)).astype(np.float32), offset=0.0,
        scale=float(np.median(scales)), mean=np.zeros(g.w_dim, np.float32), attribute="random")
    wanted = [*CELEBA, edit.YAW]
    classifier = _CLASSIFIER.value or pretrained.matched_classifier(_NETWORK.value)
    if classifier is None:
        raise app.UsageError(f"--network={_NETWORK.value} carries no attribute classifier: "
                             "pass --classifier=DIR")
    labellers = edit.make_labellers(wanted, str(classifier))
    z = np.random.RandomState(_SEED.value).randn(_NUM.value, g.z_dim).astype(np.float32)
    ws = sample.mapping(g, z)

    results = {}
    for name, d in directions.items():
        if d.space == "z":
            moved = edit.apply_z(z, d, strengths)
            swept = sample.mapping(g, moved.reshape(-1, g.z_dim)).reshape(
                len(strengths), len(z), g.num_ws, g.w_dim)
        else:
            swept = edit.apply(ws, d, strengths)
        scores = score(g, labellers, swept)
        target = d.attribute if d.attribute in scores else None
        results[name] = dict(attribute=d.attribute, space=d.space,
                             fit_accuracy=d.accuracy, **measure(scores, target))
        print(name, json.dumps(results[name]), flush=True)

    print(f"\n{_NUM.value} latents (RandomState({_SEED.value})), strengths "
          f"{', '.join(_STRENGTHS.value)}, {time.perf_counter() - start:.0f} s\n")
    print("| direction | space | counted | success | monotone | delta | "
          + " | ".join(f"|d {a}|" for a in CELEBA) + " |")
    print("|---|---|---|---|---|---|" + "---|" * len(CELEBA))
    fmt = lambda v: "-" if v is None else f"{v:.3f}"
    for name, r in results.items():
        others = [fmt(r["other"].get(a)) if a != r["attribute"] else "(target)" for a in CELEBA]
        print(f"| {name} | {r['space']} | {r['counted']} | {fmt(r['success'])} | "
              f"{fmt(r['monotone'])} | {fmt(r['delta'])} | " + " | ".join(others) + " |")
    out = pathlib.Path(_OUT.value)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dict(network=_NETWORK.value, num=_NUM.value, seed=_SEED.value,
                                   strengths=strengths.tolist(), results=results), indent=1))


if __name__ == "__main__":
    app.run(main)
