"""flaxgan: the StyleGAN family (StyleGAN v1, StyleGAN2-ADA, StyleGAN3) in JAX/Flax.

What the package offers, by module (`import flaxgan.<module>`; nothing heavy is imported here):

- `sample`: the notebook API. `sample.load(path)` reads an official `.pkl` snapshot (PyTorch or
  TensorFlow, no code in it run), a flaxgan export folder or a bundled model
  (`sample.pretrained()`); `generate`, `mapping`, `synthesize`, `style_mix`, `interpolate`,
  `blend`, `grid`.
- `models`: Flax networks built from official class names and kwargs (`build_generator`,
  `build_discriminator`); `nn`: their building blocks (equalized-lr layers, modulated and
  resampling convolutions, upfirdn2d, bias_act, filtered_lrelu).
- `convert`: official snapshots and state_dicts <-> Flax variables (`load_snapshot`, `to_flax`,
  `from_flax`), export folders (`convert.export`), the bounded torch-format reader
  (`convert.torch_io`).
- `train`: the sharded training loop (`train.loop.train(config, workdir)`), its state, steps,
  checkpoints and the one device mesh (`train.sharding.make_mesh`); `losses`, `augment` (ADA).
- `metrics`: the official metrics (FID, KID, precision/recall, IS, PPL, linear separability) with
  their detectors read from the official weights; `metrics.evaluation.evaluate` evaluates a
  generator against its dataset.
- `project`, `edit`: projection into W / W+, latent directions and edits.
- `images`, `files`: reading image files, uint8 conversion, grids; atomic writes and `.npz`
  trees, shared by all of the above.
- `errors`: `UserError`, the one-line errors of bad input.
- `cpu_layout`: how many XLA host devices a CPU-only training process splits into (one per
  core, chosen before JAX starts; `experiments.train` applies it).
- `xla_cpu`: `jit`, `jax.jit` compiling convolutions on XLA CPU's own kernels instead of
  YNNPACK's (measured faster for every workload; every program of the package uses it).

Entry points live in `experiments/` (`python -m experiments.train`, `.generate`, `.eval`, ...),
dataset preparation in `data_pipelines/`.
"""

__version__ = "0.1.0"
