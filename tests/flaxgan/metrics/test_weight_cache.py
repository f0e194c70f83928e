"""The converted-weights cache is keyed by the weight file's content (issue 14, item 7): copies
of one file at other paths or with other modification times share one ``.npz``, and the
file's sha256 is computed once per (path, size, mtime), memoised in ``sha256-index.json``."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from flaxgan import files
from flaxgan.metrics import inception, torchfile, vgg16


@pytest.fixture
def hashed(monkeypatch):
    """Records every path whose bytes are hashed."""
    calls: list[str] = []
    real = torchfile.sha256_file

    def counting(path):
        calls.append(path)
        return real(path)
    monkeypatch.setattr(torchfile, "sha256_file", counting)
    return calls


def _copies(tmp_path, data: bytes = b"the same weights") -> list[str]:
    """Two files of the same content at different paths and modification times."""
    paths = []
    for i, name in enumerate(["a/weights.pt", "b/copy.pt"]):
        path = tmp_path / name
        path.parent.mkdir()
        path.write_bytes(data)
        os.utime(path, ns=(10**18 + i, 10**18 + i * 10**9))
        paths.append(str(path))
    return paths


def test_digest_is_memoised_by_path_size_and_mtime(tmp_path, hashed):
    path = _copies(tmp_path)[0]
    cache = str(tmp_path / "cache")
    first = torchfile.file_sha256(path, cache)
    assert torchfile.file_sha256(path, cache) == first and hashed == [path]
    index = json.loads((tmp_path / "cache" / torchfile.DIGEST_INDEX).read_text())
    assert index[path][2] == first
    os.utime(path, ns=(1, 2))  # touched: hashed again, same content, same digest
    assert torchfile.file_sha256(path, cache) == first and len(hashed) == 2


def test_unreadable_index_is_rebuilt(tmp_path, hashed):
    path = _copies(tmp_path)[0]
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / torchfile.DIGEST_INDEX).write_text("{not json")
    digest = torchfile.file_sha256(path, str(tmp_path / "cache"))
    assert digest == torchfile.file_sha256(path, str(tmp_path / "cache")) and len(hashed) == 1


def test_copies_share_one_converted_vgg16(tmp_path, monkeypatch):
    params = {"conv1": {"weight": np.ones((3, 3, 3, 2), np.float32)}}
    converted = []

    def convert(path):
        converted.append(path)
        return params, "torchvision"
    monkeypatch.setattr(vgg16, "_convert_file", convert)
    cache = tmp_path / "cache"
    for path in _copies(tmp_path):
        loaded = vgg16.load_params(path, cache_dir=str(cache))
        np.testing.assert_array_equal(loaded["conv1"]["weight"], params["conv1"]["weight"])
    assert len(converted) == 1
    (npz,) = cache.glob("vgg16-*.npz")
    _, meta = files.load_npz_tree(str(npz))
    assert meta["sha256"] == torchfile.sha256_file(converted[0])
    assert meta["sha256"].startswith(npz.stem.split("-")[-1])


def test_copies_share_one_converted_inception_and_others_do_not(tmp_path, monkeypatch):
    monkeypatch.setattr(inception, "read_torchscript", lambda path: {"path": path})
    monkeypatch.setattr(inception, "convert_torchscript",
                        lambda tree: {"w": np.full(2, len(tree["path"]), np.float32)})
    cache = tmp_path / "cache"
    for path in _copies(tmp_path):
        inception.load_params(path, cache_dir=str(cache))
    assert len(list(cache.glob("inception-*.npz"))) == 1
    other = tmp_path / "other.pt"
    other.write_bytes(b"other weights")
    inception.load_params(str(other), cache_dir=str(cache))
    assert len(list(cache.glob("inception-*.npz"))) == 2


def test_legacy_copies_of_the_same_content_are_dropped(tmp_path):
    path = _copies(tmp_path)[0]
    cache = tmp_path / "cache"
    digest = torchfile.file_sha256(path, str(cache))
    same, other = cache / "vgg16-0123456789ab.npz", cache / "vgg16-ba9876543210.npz"
    files.save_npz_tree(str(same), {"w": np.zeros(1)}, sha256=digest)
    files.save_npz_tree(str(other), {"w": np.zeros(1)}, sha256="f" * 64)
    garbage = cache / "vgg16-00000000000a.npz"
    garbage.write_bytes(b"not a zip")
    target = torchfile.cache_path(path, str(cache), "vgg16")
    assert target == str(cache / f"vgg16-{digest[:16]}.npz")
    assert not same.exists() and other.exists() and garbage.exists()
