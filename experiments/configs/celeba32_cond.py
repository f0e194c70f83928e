"""Conditional StyleGAN2-ADA at 32² on CelebA Male × Young (4 classes), fine-tuned from the
bundled unconditional `celeba32`.

    python -m experiments.train --config=celeba32_cond.py --workdir=runs/celeba32_cond
    python -m experiments.generate --network=runs/celeba32_cond/snapshots/network-snapshot-000040 \
        --class=3 --seeds=0-15 --grid=4       # class 3 = Male,Young

Data as `celeba32.py` (the aligned-CelebA face box at 32², files 001001–004500, x-flips), each
face labelled by the combination of its `Male` and `Young` attributes in
`list_attr_celeba.txt` (`data.attribute_labels`; `data_pipelines.input.attribute_classes`):
class 0 `not_Male,not_Young` (6.7% of the 3,500), 1 `not_Male,Young` (52.1%), 2
`Male,not_Young` (14.4%), 3 `Male,Young` (26.9%). Generated images take classes drawn
from the training stream's class frequencies (`flaxgan.train.step.generated_labels`), as the
official code.

Start: training from scratch is too slow on a CPU, so the run starts from the bundled
unconditional model (`resume_pkl = "celeba32"`) with `resume_partial`: everything whose name and
shape match is copied; the mapping's first layer, whose input grows by the label embedding, is
widened so the conditional G starts as exactly the unconditional one (new rows 0); the label
embedding, D's label mapping and its projection head start fresh; a one-line notice lists them
(`flaxgan.train.partial_resume`). The recipe is otherwise `celeba32.py`'s (batch 32, R1 γ
0.0064, path length, style mixing, ADA bgc). Snapshots every 5 ticks (20 kimg); no metric hook:
it draws a conditional generator's classes uniformly, not as the data's (the official draws
them from the dataset), so its FID would be biased; the per-class attribute accuracy of
`benchmarks/conditional_celeba32.py` judges the model.
Time: measured 53–144 sec/kimg (median 82) on 2 CPU cores shared with other jobs: the first
40 kimg took 65 min (the figures in benchmarks/RESULTS.md). Rerunning the command resumes.
"""

from experiments.configs import celeba32

ATTRIBUTES = ("Male", "Young")


def get_config(arg=None):
    if arg not in (None, "", "32"):
        raise ValueError(f"celeba32_cond is the 32² model (fine-tuned from the bundled "
                         f"celeba32); got {arg!r}")
    config = celeba32.get_config()
    config.data.use_labels = True
    config.data.attribute_labels = ATTRIBUTES
    config.resume_pkl = "celeba32"
    config.resume_partial = True
    config.train.total_kimg = 200.0
    config.log.image_every_ticks = 5
    config.log.snapshot_every_ticks = 5
    config.log.metrics = ()
    return config
