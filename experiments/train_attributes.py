"""Train the 40-attribute CelebA classifier used by the linear-separability metric (`ls`).

    # a prepared TFDS dataset with `attributes` (celeba_faces), 256x256 as the official:
    python -m experiments.train_attributes --data=celeba_faces/mtcnn_256 --outdir=runs/attr256
    # a plain folder of CelebA images with list_attr_celeba.txt beside them:
    python -m experiments.train_attributes --data=../shared/data/celeba_small --resolution=64 \
        --channel_base=2048 --channel_max=128 --epochs=6 --outdir=runs/attr64

One network with 40 logits (see `flaxgan.metrics.attributes`), binary cross-entropy per
attribute, Adam, random x-flips, data parallel over the local devices. A held-out part
(`--eval_split`, else the last `--holdout` fraction of `--split`) is scored at the end:
per-attribute accuracy next to the majority-class baseline (the training set's more frequent
value, applied to the held-out images), printed and written to `<outdir>/accuracy.json`.
The classifier goes to `<outdir>/classifier.{json,npz}` (`attributes.load_classifier`).
Bad input (a missing attribute table, a TFDS dataset not prepared in `--data_dir`, a bad flag)
is one line `error: ...` with exit status 2.
"""

from __future__ import annotations

import json
import pathlib
import time
from collections.abc import Sequence

import grain
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags, logging
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from PIL import Image

from data_pipelines import crop
from data_pipelines import input as data_input
from data_pipelines.builders.celeba_faces.celeba_faces import read_table
from experiments import cli
from flaxgan.errors import UserError
from flaxgan.metrics import attributes, features
from flaxgan.metrics.attributes import ATTRIBUTES
from flaxgan.metrics.features import BATCH_AXIS


def define_flags() -> None:
    """The command-line flags (defined only when run as a program, so that importing this
    module next to other entry points never redefines a flag)."""
    flags.DEFINE_string("data", None, "TFDS name (celeba_faces/mtcnn_256), prepared dataset "
                        "folder, or a folder of CelebA images holding list_attr_celeba.txt.")
    flags.DEFINE_string("attr_file", None, "Attribute table for a folder (default: "
                        "<data>/list_attr_celeba.txt).")
    flags.DEFINE_string("data_dir", None, "TFDS data_dir (default TFDS's).")
    flags.DEFINE_string("split", "train", "TFDS split to train on.")
    flags.DEFINE_string("eval_split", None, "TFDS split to evaluate on (default: "
                        "hold out the last --holdout of --split).")
    flags.DEFINE_float("holdout", 0.1, "Held-out fraction when no --eval_split.")
    flags.DEFINE_integer("max_images", None, "Use at most this many examples.")
    flags.DEFINE_string("outdir", None, "Where the classifier and accuracy.json go.")
    flags.DEFINE_integer("resolution", 256, "Classifier input side (official 256).")
    flags.DEFINE_integer("channel_base", 16384, "Discriminator channel_base.")
    flags.DEFINE_integer("channel_max", 512, "Discriminator channel_max.")
    flags.DEFINE_enum("architecture", "resnet", ["orig", "skip", "resnet"],
                      "Discriminator architecture.")
    flags.DEFINE_integer("batch_size", 32, "Global batch (rounded up to the devices).")
    flags.DEFINE_float("epochs", 10, "Passes over the training part.")
    flags.DEFINE_float("lr", 0.002, "Adam learning rate.")
    flags.DEFINE_float("beta1", 0.9, "Adam beta1.")
    flags.DEFINE_float("beta2", 0.99, "Adam beta2.")
    flags.DEFINE_bool("xflip", True, "Random horizontal flips.")
    flags.DEFINE_integer("seed", 0, "Initialisation, shuffling and flips.")
    flags.DEFINE_integer("num_threads", 2, "Image decoding threads.")
    flags.DEFINE_integer("log_every", 50, "Log the training loss every N steps.")
    flags.mark_flags_as_required(["data", "outdir"])


# ----------------------------------------------------------------------------------------------
# Data: random-access records {'image': uint8 [R, R, 3], 'attributes': float32 [40]}.


class FolderAttributes:
    """Images of a folder labelled by a CelebA `list_attr_celeba.txt` (rows of missing files
    are skipped and counted)."""

    def __init__(self, root: str | pathlib.Path, attr_file: str | pathlib.Path | None,
                 resolution: int):
        self.root = pathlib.Path(root)
        table = pathlib.Path(attr_file) if attr_file else self.root / "list_attr_celeba.txt"
        if not table.is_file():
            raise FileNotFoundError(f"{table}: attribute table not found (CelebA "
                                    "list_attr_celeba.txt: count line, names line, file rows)")
        names, rows = read_table(table, header_lines=2)
        if tuple(names) != ATTRIBUTES:
            raise ValueError(f"{table}: expected the 40 CelebA attribute names "
                             f"{list(ATTRIBUTES[:3])}..., got {names[:3]}...")
        self.files, labels = [], []
        self.missing = 0
        for name in sorted(rows):
            if (self.root / name).is_file():
                self.files.append(self.root / name)
                labels.append([v == "1" for v in rows[name]])
            else:
                self.missing += 1
        if not self.files:
            raise FileNotFoundError(f"{self.root}: none of the {len(rows)} images named in "
                                    f"{table} is there")
        self.labels = np.asarray(labels, np.float32)
        self.resolution = resolution

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict:
        with Image.open(self.files[i]) as im:
            image = np.asarray(im.convert("RGB"), np.uint8)
        return {"image": crop.resize_image(image, self.resolution),
                "attributes": self.labels[i]}


class TfdsAttributes:
    """A TFDS split (or prepared folder) whose records carry the `attributes` dict."""

    def __init__(self, name_or_dir: str, split: str, data_dir: str | None, resolution: int):
        self.source, _ = data_input.open_source(name_or_dir, split, data_dir=data_dir,
                                                resolution=resolution)
        first = self.source[0]
        if "attributes" not in first:
            raise ValueError(f"{name_or_dir}: records have no 'attributes' feature (expected "
                             "a celeba_faces dataset)")
        absent = [a for a in ATTRIBUTES if a not in first["attributes"]]
        if absent:
            raise ValueError(f"{name_or_dir}: attributes lack {absent[:3]}")
        self.names = ATTRIBUTES
        self.resolution = resolution
        self.labels = None

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> dict:
        record = self.source[i]
        image = np.asarray(record["image"], np.uint8)
        if image.ndim == 2 or image.shape[-1] == 1:
            image = np.repeat(image.reshape(*image.shape[:2], 1), 3, axis=-1)
        if image.shape[:2] != (self.resolution, self.resolution):
            image = crop.resize_image(image, self.resolution)
        attrs = np.asarray([bool(record["attributes"][a]) for a in self.names], np.float32)
        return {"image": image, "attributes": attrs}


class Subset:
    """Examples `start:stop` of a source."""

    def __init__(self, source, start: int, stop: int):
        self.source, self.start, self.stop = source, start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, i: int) -> dict:
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self.source[self.start + i]


def open_data(data: str, resolution: int, *, attr_file: str | None = None,
              data_dir: str | None = None, split: str = "train", eval_split: str | None = None,
              holdout: float = 0.1, max_images: int | None = None):
    """(train source, held-out source) of attribute records at `resolution`."""
    path = pathlib.Path(data).expanduser()
    if path.is_dir() and not data_input.is_prepared_dir(path):
        if eval_split:
            raise ValueError("--eval_split applies to TFDS data; a folder uses --holdout")
        source = FolderAttributes(path, attr_file, resolution)
        if source.missing:
            logging.warning("%s: %d rows of the attribute table have no image", path,
                            source.missing)
        held = None
    else:
        source = TfdsAttributes(data, split, data_dir, resolution)
        held = TfdsAttributes(data, eval_split, data_dir, resolution) if eval_split else None
    n = min(len(source), max_images) if max_images else len(source)
    if held is not None:
        return Subset(source, 0, n), Subset(held, 0, min(len(held), max_images or len(held)))
    n_held = int(round(n * holdout))
    if n_held < 1 or n - n_held < 1:
        raise ValueError(f"{data}: {n} examples cannot be split with holdout={holdout}")
    return Subset(source, 0, n - n_held), Subset(source, n - n_held, n)


def batches(source, batch_size: int, *, shuffle: bool, seed: int, num_epochs: int | None,
            drop_remainder: bool, num_threads: int):
    """Iterator of `{'image': uint8 [B, R, R, 3], 'attributes': float32 [B, 40]}`."""
    ds = grain.MapDataset.source(source)
    if shuffle:
        ds = ds.shuffle(seed=seed)
    ds = ds.repeat(num_epochs)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    options = grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=4 * batch_size)
    return iter(ds.to_iter_dataset(options))


# ----------------------------------------------------------------------------------------------
# Training.


def make_train_step(config, optimizer, mesh, xflip: bool, seed: int):
    """`step(params, opt_state, images uint8, labels, step_index) -> (params, opt_state, loss,
    accuracy)`: jitted `shard_map` over the batch mesh, gradient of the global mean loss."""

    def local(params, opt_state, images, labels, step):
        key = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), step),
                                 jax.lax.axis_index(BATCH_AXIS))
        x = attributes.to_classifier_input(images, config.resolution)
        if xflip:
            flip = jax.random.bernoulli(key, 0.5, (x.shape[0], 1, 1, 1))
            x = jnp.where(flip, x[:, :, ::-1], x)

        def loss_fn(p):
            logits = attributes.logits_fn(p, x, config)
            loss = jnp.mean(optax.sigmoid_binary_cross_entropy(logits, labels))
            return jax.lax.pmean(loss, BATCH_AXIS), logits

        (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        acc = jax.lax.pmean(jnp.mean(((logits > 0) == (labels > 0.5)).astype(jnp.float32)),
                            BATCH_AXIS)
        return params, opt_state, loss, acc

    mapped = jax.shard_map(local, mesh=mesh,
                           in_specs=(P(), P(), P(BATCH_AXIS), P(BATCH_AXIS), P()),
                           out_specs=(P(), P(), P(), P()))
    return jax.jit(mapped, donate_argnums=(0, 1))


def evaluate(classifier, source, batch_size: int, train_positive_rate: np.ndarray,
             num_threads: int) -> dict:
    """Per-attribute held-out accuracy and the majority-class baseline."""
    extract = features.make_extractor(classifier.detector, classifier.params,
                                      batch_size=batch_size, name="attributes")
    probs, labels = [], []
    for batch in batches(source, batch_size, shuffle=False, seed=0, num_epochs=1,
                         drop_remainder=False, num_threads=num_threads):
        probs.append(extract(batch["image"]))
        labels.append(batch["attributes"])
    probs, labels = np.concatenate(probs), np.concatenate(labels) > 0.5
    accuracy = np.mean((probs > 0.5) == labels, axis=0)
    majority = train_positive_rate >= 0.5
    baseline = np.mean(labels == majority[None], axis=0)
    per = {name: dict(accuracy=float(a), majority_baseline=float(b),
                      positive_rate_train=float(t), positive_rate_heldout=float(h))
           for name, a, b, t, h in zip(classifier.attributes, accuracy, baseline,
                                       train_positive_rate, labels.mean(0), strict=True)}
    return dict(num_heldout=int(len(labels)), mean_accuracy=float(accuracy.mean()),
                mean_majority_baseline=float(baseline.mean()),
                attributes_above_baseline=int(np.sum(accuracy > baseline)), per_attribute=per)


def positive_rates(source, num_threads: int) -> np.ndarray:
    """Fraction of positives per attribute (from the attribute table of a folder, else by
    reading the records)."""
    inner = source.source if isinstance(source, Subset) else source
    if getattr(inner, "labels", None) is not None and isinstance(source, Subset):
        return inner.labels[source.start:source.stop].mean(0)
    total, count = 0.0, 0
    for batch in batches(source, 256, shuffle=False, seed=0, num_epochs=1,
                         drop_remainder=False, num_threads=num_threads):
        total = total + batch["attributes"].sum(0)
        count += len(batch["attributes"])
    return np.asarray(total / max(count, 1), np.float32)


def train(outdir: str, data: str, *, resolution: int = 256, channel_base: int = 16384,
          channel_max: int = 512, architecture: str = "resnet", batch_size: int = 32,
          epochs: float = 10, lr: float = 0.002, betas: tuple[float, float] = (0.9, 0.99),
          xflip: bool = True, seed: int = 0, num_threads: int = 2, log_every: int = 50,
          **data_kwargs) -> dict:
    """Trains, evaluates on the held-out part, saves; returns the accuracy record."""
    config = attributes.ClassifierConfig(resolution=resolution, channel_base=channel_base,
                                         channel_max=channel_max, architecture=architecture)
    train_src, held_src = open_data(data, resolution, **data_kwargs)
    mesh = features.batch_mesh()
    n_dev = mesh.shape[features.BATCH_AXIS]
    batch_size = -(-batch_size // n_dev) * n_dev
    if len(train_src) < batch_size:
        raise ValueError(f"{data}: {len(train_src)} training examples, fewer than one batch "
                         f"of {batch_size}")
    steps_per_epoch = len(train_src) // batch_size
    total_steps = max(1, int(round(epochs * steps_per_epoch)))
    logging.info("attributes: %d train / %d held-out examples at %d^2, batch %d on %d "
                 "devices, %d steps", len(train_src), len(held_src), resolution, batch_size,
                 n_dev, total_steps)

    optimizer = optax.adam(lr, b1=betas[0], b2=betas[1], eps=1e-8)
    replicated = NamedSharding(mesh, P())
    data_sharding = NamedSharding(mesh, P(features.BATCH_AXIS))
    params = attributes.init_params(config, jax.random.key(seed))
    # Start every output at its attribute's log-odds in the training part.
    rates = positive_rates(train_src, num_threads)
    r = np.clip(rates, 1e-3, 1 - 1e-3)
    params["b4"]["out"]["bias"] = jnp.asarray(np.log(r / (1 - r)), jnp.float32)
    params = jax.device_put(params, replicated)
    opt_state = jax.device_put(optimizer.init(params), replicated)
    step_fn = make_train_step(config, optimizer, mesh, xflip, seed)

    it = batches(train_src, batch_size, shuffle=True, seed=seed, num_epochs=None,
                 drop_remainder=True, num_threads=num_threads)
    start = time.time()
    losses, accs = [], []
    for step in range(total_steps):
        batch = next(it)
        params, opt_state, loss, acc = step_fn(
            params, opt_state, jax.device_put(batch["image"], data_sharding),
            jax.device_put(batch["attributes"], data_sharding), np.int32(step))
        losses.append(loss)
        accs.append(acc)
        if (step + 1) % log_every == 0 or step + 1 == total_steps:
            logging.info("step %d/%d epoch %.2f: loss %.4f train acc %.4f (%.1f s)", step + 1,
                         total_steps, (step + 1) / steps_per_epoch,
                         float(np.mean(jax.device_get(losses))),
                         float(np.mean(jax.device_get(accs))), time.time() - start)
            losses, accs = [], []
    train_seconds = time.time() - start

    params = jax.device_get(params)
    classifier = attributes.AttributeClassifier(config, params)
    record = evaluate(classifier, held_src, batch_size, rates, num_threads)
    record.update(num_train=len(train_src), steps=total_steps, batch_size=batch_size,
                  epochs=epochs, train_seconds=train_seconds, data=str(data),
                  resolution=resolution)
    out = pathlib.Path(outdir)
    attributes.save_classifier(out, config, params, metadata=dict(
        data=str(data), num_train=len(train_src), steps=total_steps, batch_size=batch_size,
        lr=lr, mean_heldout_accuracy=record["mean_accuracy"]))
    (out / "accuracy.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def format_record(record: dict) -> str:
    lines = [f"{'attribute':<22}{'acc':>8}{'major':>8}{'pos%':>7}"]
    for name, r in record["per_attribute"].items():
        lines.append(f"{name:<22}{r['accuracy']:>8.4f}{r['majority_baseline']:>8.4f}"
                     f"{100 * r['positive_rate_heldout']:>7.1f}")
    lines.append(f"{'mean':<22}{record['mean_accuracy']:>8.4f}"
                 f"{record['mean_majority_baseline']:>8.4f}")
    lines.append(f"held-out {record['num_heldout']} images; "
                 f"{record['attributes_above_baseline']}/{len(record['per_attribute'])} "
                 "attributes above the majority baseline")
    return "\n".join(lines)


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        cli.fail(f"unexpected arguments {argv[1:]}")
    cli.quiet_dependency_logs()
    f = flags.FLAGS
    try:
        cli.check_dataset({"name": f.data, "data_dir": f.data_dir, "split": f.split},
                          data_dir_flag="--data_dir")
        record = train(
            f.outdir, f.data, resolution=f.resolution, channel_base=f.channel_base,
            channel_max=f.channel_max, architecture=f.architecture, batch_size=f.batch_size,
            epochs=f.epochs, lr=f.lr, betas=(f.beta1, f.beta2), xflip=f.xflip, seed=f.seed,
            num_threads=f.num_threads, log_every=f.log_every, attr_file=f.attr_file,
            data_dir=f.data_dir, split=f.split, eval_split=f.eval_split, holdout=f.holdout,
            max_images=f.max_images)
    except (UserError, FileNotFoundError, ValueError) as e:  # bad input: one line, exit 2
        cli.fail(e)
    print(format_record(record))
    print(f"saved {pathlib.Path(f.outdir) / 'classifier.json'} and accuracy.json")


if __name__ == "__main__":
    define_flags()
    app.run(main, flags_parser=cli.parse_flags)
