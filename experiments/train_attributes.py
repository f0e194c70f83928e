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

import jax
import numpy as np
import optax
from absl import app, flags, logging

from data_pipelines import attributes as attr_data
from experiments import cli
from flaxgan import files
from flaxgan.errors import UserError
from flaxgan.metrics import attributes
from flaxgan.train import sharding
from flaxgan.train.sharding import BATCH_AXIS, make_mesh


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


def train(outdir: str, data: str, *, resolution: int = 256, channel_base: int = 16384,
          channel_max: int = 512, architecture: str = "resnet", batch_size: int = 32,
          epochs: float = 10, lr: float = 0.002, betas: tuple[float, float] = (0.9, 0.99),
          xflip: bool = True, seed: int = 0, num_threads: int = 2, log_every: int = 50,
          **data_kwargs) -> dict:
    """Trains, evaluates on the held-out part, saves; returns the accuracy record."""
    config = attributes.ClassifierConfig(resolution=resolution, channel_base=channel_base,
                                         channel_max=channel_max, architecture=architecture)
    train_src, held_src = attr_data.open_data(data, resolution, **data_kwargs)
    mesh = make_mesh(local=True)
    n_dev = mesh.shape[BATCH_AXIS]
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
    data_sharding = sharding.batch_sharded(mesh)
    rates = attr_data.positive_rates(train_src, num_threads)
    params = sharding.replicate(attributes.init_with_priors(config, jax.random.key(seed), rates),
                                mesh)
    opt_state = sharding.replicate(optimizer.init(params), mesh)
    step_fn = attributes.make_train_step(config, optimizer, mesh, xflip, seed)

    it = attr_data.batches(train_src, batch_size, shuffle=True, seed=seed, num_epochs=None,
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
    held = attr_data.batches(held_src, batch_size, num_threads=num_threads)
    record = attributes.heldout_accuracy(classifier, held, rates, batch_size)
    record.update(num_train=len(train_src), steps=total_steps, batch_size=batch_size,
                  epochs=epochs, train_seconds=train_seconds, data=str(data),
                  resolution=resolution)
    out = pathlib.Path(outdir)
    attributes.save_classifier(out, config, params, metadata=dict(
        data=str(data), num_train=len(train_src), steps=total_steps, batch_size=batch_size,
        lr=lr, mean_heldout_accuracy=record["mean_accuracy"]))
    files.write_text(out / "accuracy.json", json.dumps(record, indent=2) + "\n")
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
