"""The demo's sampling half on the bundled celeba32 model. Its fine-tuning half (a resume from
a float16 bundle) is test_loop.py::test_fine_tuning_starts_from_a_float16_bundle."""

from PIL import Image

from experiments import demo
from flaxgan import sample


def test_grids_and_interpolation_of_the_bundled_model(tmp_path):
    g = sample.load("celeba32")
    side = g.img_resolution * demo.ZOOM
    written = demo.sample_grids(g, str(tmp_path))
    sizes = {name: Image.open(path).size for name, path in
             ((p.name, p) for p in tmp_path.glob("*.png"))}
    assert sizes["uncurated.png"] == (8 * side, 4 * side)
    assert sizes["truncation.png"] == (8 * side, len(demo.TRUNCATIONS) * side)
    for layers in ("coarse", "middle", "fine"):  # sources on the top row and left column
        assert sizes[f"style_mixing_{layers}.png"] == (
            (len(demo.MIX_COLS) + 1) * side, (len(demo.MIX_ROWS) + 1) * side)
    assert len(written) == 5
    gif = Image.open(demo.interpolation_gif(g, str(tmp_path / "walk.gif")))
    assert gif.n_frames == demo.FRAMES_PER_STEP * (len(demo.WALKS[0]) - 1)
    assert gif.size == (len(demo.WALKS) * side, side)
