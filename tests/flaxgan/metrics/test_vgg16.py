"""VGG16 of the official metrics: resize, PR features and LPIPS vs torch, weight loading, PPL.

References in tests/data/vgg16 come from tools/make_vgg16_reference.py: torch's grid_sample,
torchvision's VGG16 and the PyPI ``lpips==0.1.4`` package, run with VGG16 weights drawn by numpy
from a seed. The tests draw the same weights with the tool's ``seeded_state_dict`` (numpy only;
checked by checksum), so no weight file is needed. NVIDIA's ``vgg16.pt`` itself is not
available here: its layout is covered by an in-memory conversion and a tiny TorchScript file
with the same key names.
"""

import functools
import hashlib
import json
import pathlib
import pickle
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from flaxgan import files
from flaxgan.metrics import features, ppl, torchfile, vgg16
from flaxgan.models import stylegan2
from flaxgan.train.sharding import make_mesh
from tools.make_vgg16_reference import TORCHVISION_CONV, lpips_pairs, seeded_state_dict

DATA = pathlib.Path(__file__).resolve().parents[2] / 'data'
REF = DATA / 'vgg16'
FACES = DATA / 'celeba_small'

# Measured on CPU: features 2.3e-5 abs (values up to 12), LPIPS 2.6e-6 relative, resize 7e-4.
# Another CPU's conv kernels sum in another order, and the nearest LPIPS pair (grey-level noise,
# 3e-5) amplifies rounding by cancellation; a wrong head, normalisation or resize is >= 1e-2.
MAX_FEATURE_ERROR = 2e-4
MAX_LPIPS_REL_ERROR = 1e-4
MAX_RESIZE_ERROR = 2e-2  # float32 sample positions, as in the Inception resize test


def load_faces(names) -> np.ndarray:
    return np.stack([np.asarray(Image.open(FACES / n).convert('RGB')) for n in names])


@pytest.fixture(scope='module')
def meta() -> dict:
    return json.loads((REF / 'reference.json').read_text())


@pytest.fixture(scope='module')
def ref():
    with np.load(REF / 'reference.npz') as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(scope='module')
def state(meta) -> dict[str, np.ndarray]:
    return seeded_state_dict(meta['seed'])


@pytest.fixture(scope='module')
def params(state):
    return vgg16.convert_torchvision(state)


def test_seeded_weights_are_the_tools(state, meta):
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(np.ascontiguousarray(state[k]).tobytes())
    assert h.hexdigest() == meta['state_sha256']


def test_vendored_heads_are_the_lpips_packages(ref):
    heads = vgg16.load_lpips_heads()
    for s in range(5):
        np.testing.assert_array_equal(heads[f'lpips{s}'],
                                      ref[f'heads/lin{s}.model.1.weight'].reshape(-1))


# ---------------------------------------------------------------------------------- resize


def test_resize_matches_torch_grid_sample(ref, meta):
    faces = load_faces(meta['pr_files'])
    got = np.asarray(vgg16.resize_to_224(jnp.asarray(faces, jnp.float32)))
    assert got.shape == (3, 224, 224, 3)
    err = np.abs(got.reshape(-1)[ref['resize_index']] - ref['resize_values']).max()
    assert err < MAX_RESIZE_ERROR, err
    rand = np.random.default_rng(2).integers(0, 256, (1, 17, 23, 3)).astype(np.float32)
    got = np.asarray(vgg16.resize_to_224(jnp.asarray(rand)))[0, ::4, ::4]
    np.testing.assert_allclose(got, ref['resize_random'], atol=MAX_RESIZE_ERROR)


def test_resize_is_near_identity_at_224():
    img = np.random.default_rng(1).integers(0, 256, (1, 224, 224, 3)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(vgg16.resize_to_224(jnp.asarray(img))), img,
                               atol=MAX_RESIZE_ERROR)


# ----------------------------------------------------------------------------- PR features


@pytest.fixture(scope='module')
def our_features(params, meta) -> np.ndarray:
    return np.asarray(jax.jit(vgg16.vgg16_features)(params, load_faces(meta['pr_files'])))


def test_features_match_torchvision(our_features, ref):
    assert our_features.shape == (3, vgg16.FEATURE_DIM) and our_features.dtype == np.float32
    assert 0.2 < np.mean(ref['features'] > 0) < 0.8  # a ReLU output, not degenerate
    err = np.abs(our_features - ref['features']).max()
    assert err < MAX_FEATURE_ERROR, f'max abs feature error {err:.3g}'


def test_features_through_a_sharded_extractor(params, meta, our_features):
    mesh = make_mesh(jax.local_devices()[:2])
    extract = features.make_extractor(vgg16.vgg16_features, params, mesh=mesh, batch_size=2,
                                      name='vgg16')
    got = extract(load_faces(meta['pr_files']))  # 2 + 1 padded
    np.testing.assert_allclose(got, our_features, atol=MAX_FEATURE_ERROR / 2)


def test_features_reject_bad_shapes(params):
    with pytest.raises(ValueError, match=r'\[N, H, W, 3\]'):
        vgg16.vgg16_features(params, np.zeros((2, 3, 32, 32), np.uint8))


# ---------------------------------------------------------------------------------- LPIPS


@pytest.fixture(scope='module')
def conv_params(params):
    return {k: v for k, v in params.items() if not k.startswith('fc')}


@pytest.fixture(scope='module')
def pairs(meta):
    return lpips_pairs(load_faces(meta['lpips_files']))


def _stage_distances(feats_a, feats_b, h, w) -> np.ndarray:
    """Per-stage parts of ||a - b||^2 (stage s has C_s (h / 2^s) (w / 2^s) entries)."""
    sizes = [c * (h >> s) * (w >> s) for s, c in enumerate(vgg16.LPIPS_CHANNELS)]
    d = np.square(np.asarray(feats_a) - np.asarray(feats_b))
    return np.stack([p.sum(1) for p in np.split(d, np.cumsum(sizes)[:-1], axis=1)], 1)


def test_lpips_matches_lpips_package(conv_params, pairs, ref):
    a, b = pairs
    f = np.asarray(jax.jit(vgg16.lpips_features)(conv_params, np.concatenate([a, b])))
    h, w = a.shape[1:3]
    assert f.shape[1] == sum(c * (h >> s) * (w >> s)
                             for s, c in enumerate(vgg16.LPIPS_CHANNELS))
    layers = _stage_distances(f[:5], f[5:], h, w)
    np.testing.assert_allclose(layers, ref['lpips_layers'], rtol=MAX_LPIPS_REL_ERROR, atol=1e-9)
    dist = np.asarray(jax.jit(vgg16.lpips_distance)(conv_params, a, b))
    np.testing.assert_allclose(dist, ref['lpips'], rtol=MAX_LPIPS_REL_ERROR)
    # The pairs span ~4 decades (different faces down to 0.5-grey-level noise).
    assert ref['lpips'][0] > 1e3 * ref['lpips'][4] > 0


def test_lpips_properties(conv_params, pairs):
    a, b = (x[:2, :32, :48] for x in pairs)
    d = functools.partial(jax.jit(vgg16.lpips_distance, static_argnames='resize'), conv_params)
    # a and a sit at different batch positions (lpips_distance stacks [a, b]): squared feature
    # rounding ~1e-14, far below the smallest real pair in the reference (3e-5).
    np.testing.assert_allclose(d(a, a), 0.0, atol=1e-8)
    # Swapped batch positions and, below, another program: float32 rounding ~1e-6 relative;
    # an asymmetric or unresized distance differs by O(1).
    np.testing.assert_allclose(d(a, b), d(b, a), rtol=1e-4)
    # resize=True is LPIPS of the 224x224 resized images.
    resized = lambda x: np.asarray(vgg16.resize_to_224(jnp.asarray(x)))
    np.testing.assert_allclose(d(a, b, resize=True), d(resized(a), resized(b)), rtol=1e-4)


# ------------------------------------------------------------------------------- weights


def test_nvidia_layout_converts_like_torchvision(state, params):
    """NVIDIA key names (layers.convN / fcN, lpipsN) -> the same trunk, its own heads, ImageNet
    normalisation (= LPIPS ScalingLayer up to float rounding)."""
    rng = np.random.default_rng(7)
    tree = {}
    for i, idx in enumerate(TORCHVISION_CONV, 1):
        for kind in ('weight', 'bias'):
            tree[f'layers.conv{i}.{kind}'] = state[f'features.{idx}.{kind}']
    for i, idx in enumerate((0, 3), 1):
        for kind in ('weight', 'bias'):
            tree[f'layers.fc{i}.{kind}'] = state[f'classifier.{idx}.{kind}']
    tree['layers.fc3.weight'] = np.zeros((1000, 4096), np.float32)
    heads = {f'lpips{s}': rng.uniform(0, 1, (1, c, 1, 1)).astype(np.float32)
             for s, c in enumerate(vgg16.LPIPS_CHANNELS)}
    tree.update(heads)
    nv = vgg16.convert_nvidia(tree)
    for layer in [f'conv{i}' for i in range(1, 14)] + ['fc1', 'fc2']:
        for kind in ('weight', 'bias'):
            a, b = nv[layer][kind], params[layer][kind]
            # np.array_equal: one pass over fc1's 100M entries (assert_array_equal makes four)
            assert a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b), layer
    for s in range(5):
        np.testing.assert_array_equal(nv[f'lpips{s}'], heads[f'lpips{s}'].reshape(-1))
    for k in ('shift', 'scale'):
        np.testing.assert_allclose(nv['normalize'][k], params['normalize'][k], rtol=1e-6)
    assert params['conv1']['weight'].shape == (3, 3, 3, 64)  # HWIO
    assert params['fc1']['weight'].shape == (25088, 4096)


def test_convert_names_missing_and_misshaped_entries(state):
    broken = dict(state)
    del broken['classifier.3.weight']
    with pytest.raises(ValueError, match=r'missing fc2\.weight'):
        vgg16.convert_torchvision(broken)
    broken = dict(state)
    broken['features.2.bias'] = np.zeros(65, np.float32)
    with pytest.raises(ValueError, match=r'conv2\.bias has shape \(65,\), expected \(64,\)'):
        vgg16.convert_torchvision(broken)


@pytest.mark.parametrize('name', ['tiny_torchvision_zip.pth', 'tiny_torchvision_legacy.pth'])
def test_reads_torchvision_state_dicts(name):
    got = torchfile.read_torch_file(REF / name)
    with np.load(REF / 'tiny.npz') as want:
        keys = [k.split('/', 1)[1] for k in want.files if k.startswith('state_dict/')]
        assert sorted(got) == sorted(keys)
        for k in keys:
            np.testing.assert_array_equal(got[k], want[f'state_dict/{k}'])
    assert got['features.0.weight'].flags['C_CONTIGUOUS']  # saved as a transposed view


def test_reads_nvidia_layout_torchscript():
    got = torchfile.read_torch_file(REF / 'tiny_nvidia_layout.pt')
    with np.load(REF / 'tiny.npz') as want:
        for k in (k for k in want.files if k.startswith('script/')):
            np.testing.assert_array_equal(got[k.split('/', 1)[1]], want[k])


@pytest.mark.parametrize('name, message', [
    ('tiny_torchvision_zip.pth', r'conv1\.weight has shape \(3, 4, 3, 3\), expected \(64, 3'),
    ('tiny_torchvision_legacy.pth', r'conv1\.weight has shape \(3, 4, 3, 3\), expected'),
    ('tiny_nvidia_layout.pt', r'conv1\.weight has shape \(4, 3, 3, 3\), expected \(64, 3'),
])
def test_wrong_shapes_fail_in_one_line(name, message, tmp_path):
    with pytest.raises(ValueError, match=message) as e:
        vgg16.load_params(REF / name, cache_dir=str(tmp_path))
    assert name in str(e.value) and '\n' not in str(e.value)
    # No converted weights cached on failure (the source file's memoised sha256 may be).
    cached = [p.name for p in tmp_path.rglob('*') if p.is_file()]
    assert cached in ([], [torchfile.DIGEST_INDEX]), cached


def test_missing_weights_name_both_files(monkeypatch, tmp_path):
    monkeypatch.delenv('FLAXGAN_VGG16', raising=False)
    with pytest.raises(vgg16.WeightsNotFoundError) as e:
        vgg16.load_params()
    msg = str(e.value)
    for part in (vgg16.NVIDIA_URL, 'vgg16-397923af.pth', 'FLAXGAN_VGG16', '--vgg16'):
        assert part in msg
    assert '\n' not in msg
    missing = tmp_path / 'vgg16.pt'
    monkeypatch.setenv('FLAXGAN_VGG16', str(missing))
    with pytest.raises(vgg16.WeightsNotFoundError, match=str(missing)):
        vgg16.load_params()
    monkeypatch.setenv('FLAXGAN_VGG16', str(REF / 'tiny_nvidia_layout.pt'))  # env is used
    with pytest.raises(ValueError, match='tiny_nvidia_layout.pt: layers|conv1.weight'):
        vgg16.load_params(cache_dir=str(tmp_path))


def _corrupt_files(tmp_path: pathlib.Path) -> dict[str, pathlib.Path]:
    files = {}
    files['garbage'] = tmp_path / 'garbage.pt'
    files['garbage'].write_bytes(b'this is not a torch file' * 10)
    data = (REF / 'tiny_torchvision_zip.pth').read_bytes()
    files['truncated_zip'] = tmp_path / 'truncated.pth'
    files['truncated_zip'].write_bytes(data[: len(data) // 2])
    data = (REF / 'tiny_torchvision_legacy.pth').read_bytes()
    files['truncated_legacy'] = tmp_path / 'truncated_legacy.pth'
    files['truncated_legacy'].write_bytes(data[:-7])
    files['evil'] = tmp_path / 'evil.pt'
    with zipfile.ZipFile(files['evil'], 'w') as zf:
        zf.writestr('archive/data.pkl', pickle.dumps(pathlib.Path.cwd))  # a global: refused
    files['not_vgg'] = tmp_path / 'not_vgg.pt'
    with zipfile.ZipFile(files['not_vgg'], 'w') as zf:
        zf.writestr('archive/data.pkl', pickle.dumps({'weight': 1}, protocol=2))
    files['npz'] = tmp_path / 'other.npz'
    np.savez(files['npz'], a=np.zeros(3))
    return files


@pytest.mark.parametrize('kind', ['garbage', 'truncated_zip', 'truncated_legacy', 'evil',
                                  'not_vgg', 'npz'])
def test_corrupt_files_fail_in_one_line(kind, tmp_path):
    path = _corrupt_files(tmp_path)[kind]
    with pytest.raises(ValueError) as e:
        vgg16.load_params(path, cache_dir=str(tmp_path / 'cache'))
    assert path.name in str(e.value) and '\n' not in str(e.value), str(e.value)


def test_conversion_is_cached_as_npz(state, params, monkeypatch, tmp_path):
    """A torch file is read and converted once; the converted .npz loads back identically (also
    directly). The conversion returns a few elements of each real array: the cache is under
    test here, not the conversion (tested above), and the full 550 MB round trip through the
    disk took most of this file's time."""
    fake = tmp_path / 'vgg16-397923af.pth'
    fake.write_bytes(b'stand-in')
    small = jax.tree.map(lambda x: np.asarray(x).reshape(-1)[:5], params)
    calls = []

    def read(path, what):
        calls.append(path)
        return state
    monkeypatch.setattr(torchfile, 'read_torch_file', read)
    monkeypatch.setattr(vgg16, 'convert_torchvision', lambda tree, path: small)
    first = vgg16.load_params(fake, cache_dir=str(tmp_path / 'cache'))
    second = vgg16.load_params(fake, cache_dir=str(tmp_path / 'cache'))
    assert len(calls) == 1
    (cache,) = (tmp_path / 'cache').glob('vgg16-*.npz')
    _, meta = files.load_npz_tree(str(cache))
    assert meta['source'] == 'torchvision' and meta['file'] == fake.name
    direct = vgg16.load_params(cache)
    for tree in (first, second, direct):
        assert jax.tree.structure(tree) == jax.tree.structure(params)
        for got, want in zip(jax.tree.leaves(tree), jax.tree.leaves(small), strict=True):
            np.testing.assert_array_equal(got, want)


# ------------------------------------------------------------------------------------ PPL


def _tiny_generator():
    G = stylegan2.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=32, img_channels=3,
                            mapping_kwargs={'num_layers': 2},
                            synthesis_kwargs={'channel_base': 128, 'channel_max': 8})
    variables = jax.jit(lambda: G.init({'params': jax.random.key(0), 'noise': jax.random.key(1)},
                                       jnp.zeros([1, 8]), noise_mode='const'))()
    mapping = lambda z, c=None: G.apply(variables, z, None, method=G.map)
    synthesis = lambda ws, key: G.apply(variables, ws, noise_mode='const', method=G.synthesize)
    return mapping, synthesis


def test_ppl_end_to_end_with_lpips(conv_params):
    """ppl_wend on a tiny StyleGAN2 (32x32, face crop -> 16x16) with the seeded LPIPS-VGG16:
    finite, positive and deterministic (one device: the sharded path is ppl's own test)."""
    mapping, synthesis = _tiny_generator()
    lpips = functools.partial(vgg16.lpips_features, conv_params)
    # 8 pairs: 16 LPIPS-VGG16 passes at 256² per run (the PPL program, not the sample size,
    # is under test).
    run = lambda mesh: ppl.ppl(mapping, synthesis, lpips, 8, num_samples=8, space='w',
                               sampling='end', crop=True, batch_size=8, seed=0,
                               progress=False, mesh=mesh)
    one_device = make_mesh(jax.local_devices()[:1])
    value = run(one_device)
    assert np.isfinite(value) and value > 0
    assert run(one_device) == value  # deterministic: the same program on the same machine
