"""Jitted, data-parallel training phases of StyleGAN2-ADA / StyleGAN3.

One training iteration is, as in the official loop: G main (non-saturating loss), G reg
(path-length penalty, every `g_reg_interval` steps), D main (logistic loss on fakes and reals),
D reg (R1 on reals, every `d_reg_interval` steps), then the G EMA update, the step counters and
the ADA adjustment of `p`. Each phase is its own jitted function over the whole state (donated):
a `shard_map` over the 1-D `batch` mesh where parameters are replicated and every device takes
its slice of the batch, exactly the official one-GPU-per-process layout (minibatch-std groups
stay within a device).

Gradients: each device computes its local mean loss; the phase differentiates the `pmean` of it
over the mesh. The parameters enter the map replicated, so the transpose of that mean is the
all-reduce: the gradient of the global-batch mean loss (never N times it; see
tests/flaxgan/train/test_step.py, which checks that against one device with plain SGD).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from flaxgan import augment as augment_lib
from flaxgan import losses, xla_cpu
from flaxgan.errors import InvalidArgument
from flaxgan.train import progressive
from flaxgan.train.sharding import BATCH_AXIS
from flaxgan.train.state import GanState

__all__ = ["Hyperparameters", "Phase", "TrainSteps", "make_optimizers", "tf1_adam",
           "scale_by_tf1_adam", "phases", "make_train_steps", "generated_labels", "Batch",
           "AugmentFn"]

Batch = dict[str, jax.Array]  # image uint8 [N, H, W, C]; label float32 [N, c_dim]
# (images [N, H, W, C] in [-1, 1], key, p) -> augmented images, differentiable in the images.
AugmentFn = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class Hyperparameters:
    """Objective and optimisation settings; defaults are those of the official code.

    `batch_size` is the global batch (all devices). `*_reg_interval=None` folds the
    regulariser into the main phase every step (official 'Gboth' / 'Dboth').
    `ema_update_phases` are the phases whose generator pass updates the generator's EMA
    buffers (`w_avg`, StyleGAN3 `magnitude_ema`): every pass for StyleGAN2-ADA, only D main for
    StyleGAN3.
    `progressive` (StyleGAN v1, `flaxgan.train.progressive`): D sees the reals faded to its
    `lod` buffer, style mixing draws its crossover among the layers in use at that `lod`, and
    the learning rates are injected (set per stage). `d_first` runs the D phases before the G
    phases (the official StyleGAN v1 iteration: D step, then G step). `adam` is the Adam
    formulation: 'pytorch' (ε added to the bias-corrected √v̂, as torch.optim.Adam of
    StyleGAN2-ADA / StyleGAN3 and optax) or 'tf1' (ε added to the raw √v, as TF 1's
    AdamOptimizer of NVlabs/stylegan: `tf1_adam`).
    """

    batch_size: int = 32
    g_lr: float = 0.0025
    d_lr: float = 0.0025
    betas: tuple[float, float] = (0.0, 0.99)
    eps: float = 1e-8
    g_reg_interval: int | None = 4
    d_reg_interval: int | None = 16
    r1_gamma: float = 10.0
    pl_weight: float = 2.0
    pl_decay: float = 0.01
    pl_batch_shrink: int = 2
    style_mixing_prob: float = 0.9
    ema_kimg: float = 10.0
    ema_rampup: float | None = 0.05
    ema_update_phases: tuple[str, ...] = ("Gmain", "Greg", "Dmain")
    ada_target: float | None = 0.6
    ada_interval: int = 4
    ada_kimg: float = 500.0
    blur_init_sigma: float = 0.0
    blur_fade_kimg: float = 0.0
    progressive: bool = False
    d_first: bool = False
    adam: str = "pytorch"


class Phase(NamedTuple):
    """One official training phase: `name` in Gmain/Greg/Gboth/Dmain/Dreg/Dboth."""

    name: str
    interval: int

    @property
    def network(self) -> str:
        return self.name[0]

    @property
    def does_main(self) -> bool:
        return self.name[1:] in ("main", "both")

    @property
    def does_reg(self) -> bool:
        return self.name[1:] in ("reg", "both")

    def updates_emas(self, ema_update_phases: tuple[str, ...]) -> bool:
        """Whether this phase's generator pass updates G's EMA buffers ('Xboth' counts as
        'Xmain')."""
        main = self.network + "main"
        return self.name in ema_update_phases or (self.name[1:] == "both"
                                                  and main in ema_update_phases)


def phases(hp: Hyperparameters) -> tuple[Phase, ...]:
    """The phases of one iteration in the official order; a regulariser with weight 0 (e.g.
    StyleGAN3's disabled path length) runs no phase, but still scales the optimizer (a
    weight-0 regulariser folded into the main phase, StyleGAN v1's G, leaves the main phase)."""
    out = []
    nets = (("G", hp.g_reg_interval, hp.pl_weight), ("D", hp.d_reg_interval, hp.r1_gamma))
    for net, interval, weight in reversed(nets) if hp.d_first else nets:
        if interval is None and weight == 0:
            out.append(Phase(net + "main", 1))
        elif interval is None:
            out.append(Phase(net + "both", 1))
        else:
            out.append(Phase(net + "main", 1))
            if weight != 0:
                out.append(Phase(net + "reg", interval))
    return tuple(out)


def scale_by_tf1_adam(b1: float, b2: float, eps: float, eps_root: float = 0.0
                      ) -> optax.GradientTransformation:
    """Adam's direction as TF 1's `AdamOptimizer` computes it: `√(1−β₂ᵗ)/(1−β₁ᵗ) · m / (√v + ε)`
    (`eps_root`, 0 in TF, is added under the root as optax does).

    That is `m̂ / (√v̂ + ε/√(1−β₂ᵗ))`: optax's `scale_by_adam` with ε scaled up early in
    training (10× at the first step for β₂ = 0.99, 1.26× at step 100). It changes the update
    of every element whose gradient is not much larger than ε; the state is optax's
    `ScaleByAdamState`, so checkpoints and resets treat both formulations alike.
    """
    def init(params):
        zeros = lambda: jax.tree.map(jnp.zeros_like, params)
        return optax.ScaleByAdamState(count=jnp.zeros([], jnp.int32), mu=zeros(), nu=zeros())

    def update(updates, state, params=None):
        del params
        mu = jax.tree.map(lambda g, m: b1 * m + (1 - b1) * g, updates, state.mu)
        nu = jax.tree.map(lambda g, v: b2 * v + (1 - b2) * g * g, updates, state.nu)
        count = optax.safe_int32_increment(state.count)

        def step(m, v):  # the bias correction in each moment's precision (float64 stays so)
            t = count.astype(jnp.promote_types(m.dtype, jnp.float32))
            scale = jnp.sqrt(1 - b2 ** t) / (1 - b1 ** t)
            return (scale * m / (jnp.sqrt(v + eps_root) + eps)).astype(m.dtype)

        direction = jax.tree.map(step, mu, nu)
        return direction, optax.ScaleByAdamState(count=count, mu=mu, nu=nu)

    return optax.GradientTransformation(init, update)


def tf1_adam(learning_rate: float, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
             eps_root: float = 0.0) -> optax.GradientTransformation:
    """`optax.adam` with TF 1's ε placement (`scale_by_tf1_adam`); the same arguments and state
    structure (also under `optax.inject_hyperparams`), so a checkpoint serves either."""
    return optax.chain(scale_by_tf1_adam(b1, b2, eps, eps_root),
                       optax.scale_by_learning_rate(learning_rate))


ADAMS = {"pytorch": optax.adam, "tf1": tf1_adam}


def make_optimizers(hp: Hyperparameters) -> tuple[optax.GradientTransformation,
                                                  optax.GradientTransformation]:
    """Adam (`hp.adam`'s formulation) for G and D with the lazy-regularisation correction of lr
    and betas; with `hp.progressive` the learning rate is an injected hyperparameter (the
    official per-stage `lrate_in`, set by `progressive.ProgressivePlan.configure` without
    recompiling)."""
    if hp.adam not in ADAMS:
        raise InvalidArgument(f"train.adam must be one of {sorted(ADAMS)}, got {hp.adam!r}")
    make = ADAMS[hp.adam]

    def adam(lr, interval):
        lr, (b1, b2) = losses.lazy_regularization(lr, hp.betas, interval)
        if hp.progressive:
            return optax.inject_hyperparams(make)(learning_rate=lr, b1=b1, b2=b2, eps=hp.eps)
        return make(lr, b1=b1, b2=b2, eps=hp.eps)
    return adam(hp.g_lr, hp.g_reg_interval), adam(hp.d_lr, hp.d_reg_interval)


class TrainSteps(NamedTuple):
    """Jitted functions over the replicated state and a batch sharded over `batch`.

    Each phase: `(state, batch) -> (state, metrics)`, metrics a dict of global-batch means.
    `finish`: `state -> state` (G EMA, counters, ADA `p`).
    """

    phases: tuple[Phase, ...]
    run_phase: dict[str, Callable[[GanState, Batch], tuple[GanState, dict[str, jax.Array]]]]
    finish: Callable[[GanState], GanState]

    def iteration(self, state: GanState, batch: Batch, step: int
                  ) -> tuple[GanState, dict[str, jax.Array]]:
        """One official iteration; `step` is the host's copy of `state.step` (no device sync)."""
        metrics = {}
        for phase in self.phases:
            if step % phase.interval == 0:
                state, phase_metrics = self.run_phase[phase.name](state, batch)
                metrics.update(phase_metrics)
        return self.finish(state), metrics


def generated_labels(key: jax.Array, labels: jax.Array,
                     class_probs: tuple[float, ...] | None = None) -> jax.Array:
    """Labels `[N, c_dim]` for N generated images, given the batch's labels `[N, c_dim]`.

    The official gives every generated image the label of a random training example: one-hot
    classes drawn independently from the stream's class frequencies `class_probs` `[c_dim]`.
    Without them (or with c_dim = 0) the batch's own labels in a random order.
    """
    if class_probs is None or not labels.shape[1]:
        return jax.random.permutation(key, labels, axis=0)
    log_probs = jnp.log(jnp.asarray(class_probs, jnp.float32))
    classes = jax.random.categorical(key, log_probs, shape=labels.shape[:1])
    return jax.nn.one_hot(classes, labels.shape[1], dtype=labels.dtype)


def _nan_to_num(grads):
    """Official guard on gradients before the optimizer step."""
    return jax.tree.map(lambda g: jnp.nan_to_num(g, nan=0.0, posinf=1e5, neginf=-1e5), grads)


def _pmean(tree):
    return jax.tree.map(lambda x: jax.lax.pmean(x, BATCH_AXIS), tree)


def _synced(old, new):
    """Per-device updates of replicated buffers, averaged: `old + pmean(new - old)` (buffers a
    pass left unchanged stay bit-identical)."""
    return jax.tree.map(lambda o, n: o + jax.lax.pmean(n - o, BATCH_AXIS), old, new)


def make_train_steps(G: nn.Module, D: nn.Module, hp: Hyperparameters, mesh: Mesh,
                     augment: AugmentFn | None = None,
                     optimizers: tuple[optax.GradientTransformation,
                                       optax.GradientTransformation] | None = None,
                     class_probs: tuple[float, ...] | None = None) -> TrainSteps:
    """Builds the jitted phases for generator `G` and discriminator `D` (Flax modules).

    Args:
      G, D: the networks (from `flaxgan.models.registry`).
      hp: hyperparameters; `hp.batch_size` must divide evenly over the mesh.
      mesh: 1-D mesh with axis `batch` (`sharding.make_mesh()`).
      augment: ADA augmentation applied to every image D sees (reals and fakes), or None.
      optimizers: `(g_opt, d_opt)` replacing `make_optimizers(hp)` (must match the state's).
      class_probs: conditional models: the `[c_dim]` class frequencies of the training stream
        (`data_pipelines.input.class_frequencies`) the generated images' classes are drawn
        from; None: the batch's own labels in a random order.
    """
    if hp.batch_size % mesh.size:
        raise ValueError(f"batch size {hp.batch_size} does not split over {mesh.size} devices")
    local_batch = hp.batch_size // mesh.size
    g_opt, d_opt = optimizers or make_optimizers(hp)
    all_phases = phases(hp)

    def device_key(state: GanState, phase_index: int) -> jax.Array:
        key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
        key = jax.random.fold_in(key, phase_index)
        return jax.random.fold_in(key, jax.lax.axis_index(BATCH_AXIS))

    if class_probs is not None and len(class_probs) != G.c_dim:
        raise ValueError(f"expected {G.c_dim} class probabilities, got {len(class_probs)}")
    gen_labels = functools.partial(generated_labels, class_probs=class_probs)

    def run_generator(g_params, g_buffers, z, c, key, update_emas):
        """Mapping (+ style mixing) and synthesis in training mode -> (img, ws, new buffers)."""
        k_mix, k_other, k_noise = jax.random.split(key, 3)
        variables = {"params": g_params, "buffers": g_buffers}
        ws, mutated = G.apply(variables, z, c, update_emas=update_emas, method=G.map,
                              mutable=["buffers"])
        variables = {"params": g_params, "buffers": mutated["buffers"]}
        if hp.style_mixing_prob > 0:
            ws_other = G.apply(variables, jax.random.normal(k_other, z.shape), c, method=G.map)
            # v1: the crossover among the layers in use at this lod (official `cur_layers`).
            active = (progressive.active_layers(ws.shape[1], g_buffers["lod"])
                      if hp.progressive else None)
            ws = losses.mix_styles(k_mix, ws, ws_other, hp.style_mixing_prob, active)

        def synthesis(ws_in):
            return G.apply(variables, ws_in, noise_mode="random", fused_modconv=False,
                           update_emas=update_emas, rngs={"noise": k_noise},
                           method=G.synthesize, mutable=["buffers"])
        img, mutated = synthesis(ws)
        return img, ws, mutated["buffers"], lambda w: synthesis(w)[0]

    def run_discriminator(d_params, d_buffers, img, c, key, state):
        if hp.blur_init_sigma > 0:
            sigma = losses.blur_sigma(state.nimg, hp.blur_init_sigma, hp.blur_fade_kimg)
            img = losses.blur_images(img, sigma, hp.blur_init_sigma)
        if augment is not None:
            img = augment(img, key, state.ada_p)
        return D.apply({"params": d_params, "buffers": d_buffers}, img, c)

    def latents(key, n):
        return jax.random.normal(key, (n, G.z_dim), jnp.float32)

    # --------------------------------------------------------------------------------- G phase

    def g_phase(phase: Phase, phase_index: int, state: GanState, batch: Batch):
        key = device_key(state, phase_index)
        k_z, k_c, k_gen, k_aug, k_pl, k_plz, k_plgen = jax.random.split(key, 7)
        c_all = gen_labels(k_c, batch["label"])
        update = phase.updates_emas(hp.ema_update_phases)

        def loss_fn(g_params):
            buffers = state.g_buffers
            total = jnp.zeros((), jnp.float32)
            metrics = {}
            pl_mean = state.pl_mean
            if phase.does_main:
                img, _, buffers, _ = run_generator(g_params, buffers, latents(k_z, local_batch),
                                                   c_all, k_gen, update)
                logits = run_discriminator(state.d_params, state.d_buffers, img, c_all, k_aug,
                                           state)
                loss = losses.generator_loss(logits)
                total += jnp.mean(loss)
                metrics.update({"Loss/scores/fake": jnp.mean(logits),
                                "Loss/signs/fake": jnp.mean(jnp.sign(logits)),
                                "Loss/G/loss": jnp.mean(loss)})
            if phase.does_reg:
                n = max(local_batch // hp.pl_batch_shrink, 1)
                img, ws, buffers, synthesis = run_generator(
                    g_params, buffers, latents(k_plz, n), c_all[:n], k_plgen, update)
                noise = losses.path_length_noise(k_pl, img.shape)
                penalty, pl_mean = losses.path_length_penalty(
                    synthesis, ws, noise, state.pl_mean, hp.pl_decay, axis_name=BATCH_AXIS)
                reg = penalty * hp.pl_weight
                total += jnp.mean(reg)
                metrics.update({"Loss/pl_penalty": jnp.mean(penalty), "Loss/G/reg": jnp.mean(reg)})
            # Mean over the global batch; `phase.interval` is the official gain of lazy reg.
            total = jax.lax.pmean(total * phase.interval, BATCH_AXIS)
            return total, (buffers, pl_mean, metrics)

        grads, (buffers, pl_mean, metrics) = jax.grad(loss_fn, has_aux=True)(state.g_params)
        updates, g_opt_state = g_opt.update(_nan_to_num(grads), state.g_opt_state,
                                            state.g_params)
        state = state.replace(g_params=optax.apply_updates(state.g_params, updates),
                              g_opt_state=g_opt_state,
                              g_buffers=_synced(state.g_buffers, buffers),
                              pl_mean=pl_mean)
        return state, _pmean(metrics)

    # --------------------------------------------------------------------------------- D phase

    def d_phase(phase: Phase, phase_index: int, state: GanState, batch: Batch):
        key = device_key(state, phase_index)
        k_z, k_c, k_gen, k_aug_fake, k_aug_real = jax.random.split(key, 5)
        real = batch["image"].astype(jnp.float32) / 127.5 - 1.0
        if hp.progressive:  # the official `process_reals`: reals at D's level of detail
            real = progressive.fade_reals(real, state.d_buffers["lod"])
        real_c = batch["label"]
        g_buffers = state.g_buffers
        fake = fake_c = None
        if phase.does_main:
            fake_c = gen_labels(k_c, real_c)
            update = phase.updates_emas(hp.ema_update_phases)
            fake, _, g_buffers, _ = run_generator(state.g_params, g_buffers,
                                                  latents(k_z, local_batch), fake_c, k_gen, update)
            fake = jax.lax.stop_gradient(fake)

        def loss_fn(d_params):
            total = jnp.zeros((), jnp.float32)
            metrics = {}
            d_real = lambda x: run_discriminator(d_params, state.d_buffers, x, real_c,
                                                 k_aug_real, state)
            per_sample = jnp.zeros((local_batch,), jnp.float32)
            if phase.does_main:
                fake_logits = run_discriminator(d_params, state.d_buffers, fake, fake_c,
                                                k_aug_fake, state)
                metrics.update({"Loss/scores/fake": jnp.mean(fake_logits),
                                "Loss/signs/fake": jnp.mean(jnp.sign(fake_logits))})
            if phase.does_reg:
                # One D pass on the reals serves R1 and, in 'Dboth', the main loss.
                penalty, real_logits = losses.r1_penalty(d_real, real)
                reg = penalty * (hp.r1_gamma / 2)
                per_sample += reg
                metrics.update({"Loss/r1_penalty": jnp.mean(penalty), "Loss/D/reg": jnp.mean(reg)})
            else:
                real_logits = d_real(real)
            if phase.does_main:
                d_loss = losses.discriminator_loss(fake_logits, real_logits)[:, 0]
                per_sample += d_loss
                metrics["Loss/D/loss"] = jnp.mean(d_loss)
            metrics.update({"Loss/scores/real": jnp.mean(real_logits),
                            "Loss/signs/real": jnp.mean(jnp.sign(real_logits))})
            signs = jnp.stack([jnp.sum(jnp.sign(real_logits)), real_logits.shape[0]])
            total = jax.lax.pmean(jnp.mean(per_sample) * phase.interval, BATCH_AXIS)
            return total, (metrics, jax.lax.psum(signs.astype(jnp.float32), BATCH_AXIS))

        grads, (metrics, signs) = jax.grad(loss_fn, has_aux=True)(state.d_params)
        updates, d_opt_state = d_opt.update(_nan_to_num(grads), state.d_opt_state,
                                            state.d_params)
        state = state.replace(d_params=optax.apply_updates(state.d_params, updates),
                              d_opt_state=d_opt_state,
                              g_buffers=_synced(state.g_buffers, g_buffers),
                              ada_signs=state.ada_signs + jax.lax.stop_gradient(signs))
        return state, _pmean(metrics)

    # ---------------------------------------------------------------------------- finish step

    def finish(state: GanState) -> GanState:
        # G_ema <- lerp(G, G_ema, beta) with the ramped-up half-life; buffers are copied.
        beta = losses.ema_beta(hp.batch_size, hp.ema_kimg, hp.ema_rampup,
                               state.nimg.astype(jnp.float32))
        ema_params = jax.tree.map(lambda p, e: p + beta * (e - p), state.g_params,
                                  state.ema_params)
        step = state.step + 1
        ada_p, ada_signs = state.ada_p, state.ada_signs
        if hp.ada_target is not None and augment is not None:
            due = step % hp.ada_interval == 0
            new_p, _ = augment_lib.ada_update(ada_p, ada_signs[0], ada_signs[1], hp.batch_size,
                                              hp.ada_interval, hp.ada_target, hp.ada_kimg)
            ada_p = jnp.where(due, new_p, ada_p)
            ada_signs = jnp.where(due, jnp.zeros_like(ada_signs), ada_signs)
        return state.replace(ema_params=ema_params,
                             ema_buffers=jax.tree.map(jnp.copy, state.g_buffers),
                             nimg=state.nimg + hp.batch_size, step=step, ada_p=ada_p,
                             ada_signs=ada_signs)

    def sharded(fn):
        mapped = jax.shard_map(fn, mesh=mesh, in_specs=(P(), P(BATCH_AXIS)),
                               out_specs=(P(), P()))
        return xla_cpu.jit(mapped, donate_argnums=0)

    run_phase: dict[str, Any] = {}
    for index, phase in enumerate(all_phases):
        body = g_phase if phase.network == "G" else d_phase
        run_phase[phase.name] = sharded(functools.partial(body, phase, index))
    return TrainSteps(all_phases, run_phase, xla_cpu.jit(finish, donate_argnums=0))
