"""An export labelled by a classifier, evaluated with that same classifier, is flagged as
circular (100% by construction); `edit.load_classifier` is the public loader."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from PIL import Image

from data_pipelines.builders.synthetic_faces import synthetic_faces as builder
from flaxgan import edit
from flaxgan.errors import InvalidArgument
from flaxgan.metrics import attributes
from flaxgan.synth import evaluate

NAMES = ("Male", "Young")


def _classifier(seed: int) -> attributes.AttributeClassifier:
    config = attributes.ClassifierConfig(resolution=8, channel_base=64, channel_max=8,
                                         num_attributes=len(NAMES))
    return attributes.AttributeClassifier(config, attributes.init_params(
        config, jax.random.key(seed)), NAMES)


def _export(folder, clf: attributes.AttributeClassifier) -> str:
    """A 6-image export whose labels are `clf`'s predictions, its fingerprint in the settings
    as `synth.export_faces` records it."""
    images = np.random.default_rng(0).integers(0, 256, (6, 8, 8, 3), dtype=np.uint8)
    labeller = edit.classifier_labeller(clf, NAMES, batch_size=8)
    present = labeller.fn(images) > 0

    def examples():
        for i, image in enumerate(images):
            yield i, {"image": Image.fromarray(image), "seed": i, "psi": np.float32(1),
                      "attributes": dict(zip(NAMES, map(bool, present[i]), strict=True)),
                      "scores": {"std": np.float32(0)}}

    layout = builder.Layout("export", 8, attributes=NAMES, scores=("std",))
    settings = {"scorers": {"classifier": labeller.fingerprint}}
    return builder.build(str(folder), "export", layout, examples, settings)


def test_own_labels_are_flagged_circular_and_another_classifier_is_not(tmp_path):
    own, other = _classifier(0), _classifier(1)
    assert edit.classifier_fingerprint(own) == edit.classifier_fingerprint(_classifier(0))
    assert edit.classifier_fingerprint(own) != edit.classifier_fingerprint(other)
    data = evaluate.open_labelled(_export(tmp_path, own), name="synth")
    assert data.labelled_by == edit.classifier_fingerprint(own)

    circular = evaluate.evaluate_dataset(data, own, progress=False)
    assert circular["circular"] is True
    assert all(s["accuracy"] == 1.0 for s in circular["attributes"].values())
    text = evaluate.table([circular])
    assert "| synth* |" in text
    assert [line for line in text.splitlines() if "by construction" in line] == [
        "\\* labelled by this very classifier: 100% by construction, not a measurement "
        "(evaluate it with another classifier)"]

    measured = evaluate.evaluate_dataset(data, other, progress=False)
    assert measured["circular"] is False
    assert "by construction" not in evaluate.table([measured])


def test_load_classifier_is_public_and_fails_in_one_line(tmp_path):
    clf = _classifier(0)
    assert edit.load_classifier(clf) is clf
    attributes.save_classifier(tmp_path / "clf", clf.config, clf.params, NAMES)
    loaded = edit.load_classifier(tmp_path / "clf")
    assert edit.classifier_fingerprint(loaded) == edit.classifier_fingerprint(clf)
    with pytest.raises(InvalidArgument, match="classifier.json") as error:
        edit.load_classifier(tmp_path / "missing")
    assert "\n" not in str(error.value)
