"""experiments.eval: JSON lines printed and appended."""

import json

import numpy as np
from PIL import Image

from experiments import eval as eval_main
from flaxgan.metrics import features


def _folder(path, seed):
    path.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (4, 4, 3)).astype(np.uint8)).save(path / f'{i}.png')
    return features.folder_source(path)


def test_run_prints_and_appends_jsonl(tmp_path, capsys):
    def extract(images):
        return images.reshape(len(images), -1).astype(np.float32) / 255.0

    extract = features.Extractor(extract, 'toy', 8)
    out = tmp_path / 'metrics-eval.jsonl'
    real, fake = _folder(tmp_path / 'a', 0), _folder(tmp_path / 'b', 1)
    for _ in range(2):
        eval_main.run(['fid', 'kid', 'pr'], real, fake, extract, out=str(out),
                      cache_dir=str(tmp_path / 'cache'), progress=False)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r['metric'] for r in lines] == ['fid', 'kid', 'pr'] * 2
    assert lines[0]['num_images'] == {'real': 12, 'fake': 12} and lines[0]['value'] > 0
    assert set(lines[2]['value']) == {'pr_precision', 'pr_recall'}
    assert lines[0]['value'] == lines[3]['value']  # same inputs and programs, one machine
    printed = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert printed == lines
