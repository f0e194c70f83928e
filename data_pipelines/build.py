"""Prepares one of the face datasets: `python -m data_pipelines.build NAME --manual_dir=DIR`.

    python -m data_pipelines.build celeba_faces --manual_dir=~/celeba --config=mtcnn_256
    python -m data_pipelines.build casia_webface --manual_dir=~/casia --config=mtcnn_256
    python -m data_pipelines.build ffhq --manual_dir=~/ffhq --config=256
    python -m data_pipelines.build image_mix --manual_dir=~/mix --config=haar_64_gray

NAME is a builder under data_pipelines/builders/. The dataset is written as ArrayRecord under
`--data_dir` (default ~/tensorflow_datasets) in `NAME/CONFIG/VERSION/`, with
`filter_report.json` beside it; the report's summary is printed at the end. No TensorFlow is
needed. Equivalent TFDS CLI (needs TensorFlow installed):
`tfds build data_pipelines/builders/NAME --manual_dir=DIR --config=CONFIG`.

Bad input (an unknown NAME or config, a missing or empty `--manual_dir`, a bad flag) is one
line `error: ...` with exit status 2, like the other entry points (`experiments.cli`).
"""

from __future__ import annotations

import importlib
import json
import pathlib
from collections.abc import Sequence

import tensorflow_datasets as tfds
from absl import app, flags, logging

from data_pipelines.builders import recipe as rc
from experiments import cli

BUILDERS = ("celeba_faces", "casia_webface", "ffhq", "image_mix")


def define_flags() -> None:
    """The command line's flags, defined only when run as a program: importing `build` next to
    other entry points (e.g. `experiments.eval`, which has its own `--data_dir`) must not clash."""
    flags.DEFINE_string("manual_dir", None, "folder holding the downloaded files")
    flags.DEFINE_string("config", None, "builder config (recipe); default: the first")
    flags.DEFINE_string("data_dir", None, "TFDS data dir (default ~/tensorflow_datasets)")
    flags.DEFINE_bool("overwrite", False, "rebuild when the dataset already exists")


def builder_class(name: str) -> type[tfds.core.GeneratorBasedBuilder]:
    """The `Builder` class of `data_pipelines.builders.<name>`."""
    if name not in BUILDERS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {BUILDERS}")
    return importlib.import_module(f"data_pipelines.builders.{name}").Builder


def build(name: str, manual_dir: str | pathlib.Path, config: str | None = None,
          data_dir: str | pathlib.Path | None = None, overwrite: bool = False
          ) -> tfds.core.DatasetBuilder:
    """Builds (downloads nothing; reads `manual_dir`) and returns the prepared builder."""
    cls = builder_class(name)
    names = [c.name for c in cls.BUILDER_CONFIGS]
    if config is not None and config not in names:
        raise ValueError(f"unknown config {config!r} for {name}; expected one of {names}")
    manual = pathlib.Path(manual_dir).expanduser()
    if not manual.is_dir() or not any(manual.iterdir()):
        what = " ".join(str(getattr(cls, "MANUAL_DOWNLOAD_INSTRUCTIONS", "")).split())
        raise FileNotFoundError(f"{manual}: manual_dir is missing or empty; "
                                f"{what or 'it must hold the downloaded files'}")
    builder = cls(config=config, data_dir=None if data_dir is None else str(data_dir),
                  file_format="array_record")
    mode = (tfds.download.GenerateMode.REUSE_CACHE_IF_EXISTS if overwrite
            else tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS)
    builder.download_and_prepare(
        file_format="array_record",
        download_config=tfds.download.DownloadConfig(manual_dir=str(manual), download_mode=mode))
    return builder


def report_summary(builder: tfds.core.DatasetBuilder) -> str:
    """Lines `split: kept N of M images (dropped: ...)` from the dataset's filter report."""
    path = pathlib.Path(builder.data_dir) / rc.REPORT_NAME
    if not path.is_file():
        return f"(no {rc.REPORT_NAME} in {builder.data_dir})"
    data = json.loads(path.read_text())
    lines = []
    for split, rep in data["splits"].items():
        drops = ", ".join(f"{k} {v}" for k, v in rep["counts"].items() if k != "kept" and v)
        lines.append(f"{split}: kept {rep['kept']} of {rep['total']} images"
                     + (f" (dropped: {drops})" if drops else ""))
    return "\n".join(lines)


def main(argv: Sequence[str]) -> None:
    if len(argv) != 2:
        cli.fail(f"expected one dataset NAME (one of {', '.join(BUILDERS)}): "
                 "python -m data_pipelines.build NAME --manual_dir=DIR [--config=CONFIG]")
    f = flags.FLAGS
    if not f.manual_dir:
        cli.fail("--manual_dir=DIR is required: the folder holding the downloaded files")
    try:
        builder = build(argv[1], f.manual_dir, f.config, f.data_dir, f.overwrite)
    except (FileNotFoundError, ValueError) as e:  # bad input: one line, exit status 2
        cli.fail(e)
    logging.info("built %s", builder.data_dir)
    print(f"{builder.info.full_name} -> {builder.data_dir}")
    print(report_summary(builder))
    print(f"report: {pathlib.Path(builder.data_dir) / rc.REPORT_NAME}")


if __name__ == "__main__":
    define_flags()
    app.run(main, flags_parser=cli.parse_flags)
