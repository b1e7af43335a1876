"""Training and held-out evaluation of the ToyFaces segmenter and classifier.

Data is an infinite, deterministic stream of fresh renders: step t of a run
trains on seeds `seed_offset + t * batch_size + [0, batch_size)`, so a
resumed run sees exactly the data (and, via `fold_in(key, t)`, the
augmentation) of an uninterrupted one. Held-out sets use seeds from
`HELDOUT_OFFSET` on, disjoint from every training stream here (< 10M) and
from the GAN's (>= 1e9, `train.configs`).

Augmentation (`augment`) imitates generator output: a per-image 3-tap blur,
Gaussian noise and, for some images, a +-1 px shift (labels shifted along).
"""

import dataclasses
import functools
import json
import pathlib
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ss_jax.runtime import jobs
from ss_jax.toyfaces import models
from ss_jax.toyfaces.model_metrics import evaluate_classifier, evaluate_segmenter
from ss_jax.toyfaces import parts as parts_lib
from ss_jax.toyfaces import render as render_lib

HELDOUT_OFFSET = 10_000_000
SEGMENTER_SEED_OFFSET = 0
CLASSIFIER_SEED_OFFSET = 5_000_000


@dataclasses.dataclass(frozen=True)
class AugmentSettings:
  """Per-image random degradations (all drawn uniformly per image).

  blur: max weight a of the separable kernel [a, 1 - 2a, a] (0.2 is about
    a Gaussian of sigma 0.6 px).
  noise: max std of additive Gaussian noise, in [-1, 1] units.
  shift_prob: probability that an image is shifted by dx, dy in {-1, 0, 1}
    (edge padded). The classifier uses less: a 1 px shift is a large part of
    the head_x / head_y range and would blur those labels.
  """

  blur: float = 0.2
  noise: float = 0.04
  shift_prob: float = 0.5


@dataclasses.dataclass(frozen=True)
class TrainSettings:
  """Everything that determines a training run (checked on resume)."""

  steps: int
  batch_size: int
  learning_rate: float = 3e-3
  warmup_steps: int = 50
  seed_offset: int = 0
  key_seed: int = 0
  class_weight_power: float = 0.0  # Segmenter only, see `part_class_weights`.
  augment: AugmentSettings = AugmentSettings()

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self), sort_keys=True)


def default_segmenter_settings(steps: int) -> TrainSettings:
  return TrainSettings(steps=steps, batch_size=16, seed_offset=SEGMENTER_SEED_OFFSET, class_weight_power=0.5)


def default_classifier_settings(steps: int) -> TrainSettings:
  return TrainSettings(
    steps=steps, batch_size=16, seed_offset=CLASSIFIER_SEED_OFFSET, augment=AugmentSettings(shift_prob=0.2)
  )


# ----------------------------------------------------------------------------- data


def to_float(images_uint8: np.ndarray) -> np.ndarray:
  """uint8 [N, H, W, 3] -> float32 in [-1, 1]."""
  return np.asarray(images_uint8, np.float32) / 127.5 - 1.0


def render_batch(seeds, resolution: int = models.RESOLUTION):
  """-> images float32 [N, R, R, 3] in [-1, 1], labels uint8 [N, R, R],
  attrs float32 [N, A] for the given seeds."""
  images, labels, attrs = render_lib.render(np.asarray(seeds, np.int64), resolution)
  return to_float(images), labels, attrs


def step_seeds(step: int, settings: TrainSettings) -> np.ndarray:
  """int64 [batch_size] seeds of training step `step`."""
  return settings.seed_offset + np.int64(step) * settings.batch_size + np.arange(settings.batch_size, dtype=np.int64)


def heldout_seeds(n: int, offset: int = HELDOUT_OFFSET) -> np.ndarray:
  return offset + np.arange(n, dtype=np.int64)


def _shift_axis(x: jax.Array, d: jax.Array, axis: int) -> jax.Array:
  """out[i] = x[i - d] along `axis` (edge padded), d: int [N] in {-1, 0, 1}.

  Selects between three slices instead of a per-image dynamic slice, which
  is several times slower on CPU.
  """
  pad = [(0, 0)] * x.ndim
  pad[axis] = (1, 1)
  xp = jnp.pad(x, pad, mode="edge")
  n = x.shape[axis]
  take = lambda start: jax.lax.slice_in_dim(xp, start, start + n, axis=axis)
  d = d.reshape((-1,) + (1,) * (x.ndim - 1))
  return jnp.where(d > 0, take(0), jnp.where(d < 0, take(2), take(1)))


def _shift(x: jax.Array, dy: jax.Array, dx: jax.Array) -> jax.Array:
  """Shifts [N, H, W, ...] by per-image (dy, dx) in {-1, 0, 1}, edge padded."""
  return _shift_axis(_shift_axis(x, dy, 1), dx, 2)


def _normal(key: jax.Array, shape) -> jax.Array:
  """`jax.random.normal(key, shape)`, same values: drawn flat and reshaped,
  which XLA on CPU compiles far faster than an N-D draw."""
  return jax.random.normal(key, (int(np.prod(shape)),)).reshape(shape)


def _blur(x: jax.Array, a: jax.Array) -> jax.Array:
  """Separable [a, 1 - 2a, a] blur of [N, H, W, C] with a: [N] (edge padded)."""
  a = a[:, None, None, None]
  xp = jnp.pad(x, [(0, 0), (1, 1), (0, 0), (0, 0)], mode="edge")
  x = a * xp[:, :-2] + (1 - 2 * a) * xp[:, 1:-1] + a * xp[:, 2:]
  xp = jnp.pad(x, [(0, 0), (0, 0), (1, 1), (0, 0)], mode="edge")
  return a * xp[:, :, :-2] + (1 - 2 * a) * xp[:, :, 1:-1] + a * xp[:, :, 2:]


def augment(key: jax.Array, images: jax.Array, labels: jax.Array | None, settings: AugmentSettings):
  """Random degradations of a batch (pure).

  Args:
    key: PRNG key.
    images: float32 [N, H, W, 3] in [-1, 1].
    labels: int [N, H, W] part labels shifted with the images, or None.
    settings: ranges, see `AugmentSettings`.

  Returns:
    (images float32 [N, H, W, 3], labels [N, H, W] or None).
  """
  n = images.shape[0]
  k_shift, k_on, k_blur, k_std, k_noise = jax.random.split(key, 5)
  d = jax.random.randint(k_shift, (n, 2), -1, 2)
  d = d * (jax.random.uniform(k_on, (n, 1)) < settings.shift_prob)
  images = _shift(images, d[:, 0], d[:, 1])
  if labels is not None:
    labels = _shift(labels, d[:, 0], d[:, 1])
  images = _blur(images, jax.random.uniform(k_blur, (n,), maxval=settings.blur))
  std = jax.random.uniform(k_std, (n, 1, 1, 1), maxval=settings.noise)
  images = images + std * _normal(k_noise, images.shape)
  return images, labels


# ----------------------------------------------------------------------------- losses and steps


def part_class_weights(num_images: int = 512, power: float = 0.5, resolution: int = models.RESOLUTION) -> np.ndarray:
  """float32 [K] cross-entropy weights ~ frequency ** -power.

  Frequencies are measured on fixed renders (seeds just below the held-out
  range). Normalised so the average weight over pixels is 1. Tiny parts
  (nose, earring: ~0.2% of pixels) are otherwise learned last, which hurts
  mIoU, a per-class mean.
  """
  _, labels, _ = render_batch(heldout_seeds(num_images, HELDOUT_OFFSET - num_images), resolution)
  freq = np.bincount(labels.ravel(), minlength=parts_lib.NUM_PARTS) / labels.size
  w = np.maximum(freq, 1e-4) ** -power
  return (w / np.sum(freq * w)).astype(np.float32)


def segmenter_loss(config: models.SegmenterConfig, params, images, labels, class_weights=None):
  """Mean per-pixel (optionally class-weighted) cross-entropy.

  Args:
    labels: int [N, H, W] part labels.
    class_weights: float [K] or None (uniform).
  """
  logits = models.segmenter_logits(config, params, images)
  # One-hot form: the integer-label gather's gradient is a slow scatter on CPU.
  onehot = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
  if class_weights is not None:
    onehot = onehot * jnp.asarray(class_weights, logits.dtype)
  return -jnp.mean(jnp.sum(onehot * jax.nn.log_softmax(logits), axis=-1))


def classifier_loss(config: models.ClassifierConfig, params, images, targets):
  """Mean BCE over all attributes; targets float32 [N, A] in {0, 1}."""
  logits, _ = models.classifier_outputs(config, params, images)
  return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, targets))


def make_optimizer(settings: TrainSettings) -> optax.GradientTransformation:
  warmup = min(settings.warmup_steps, settings.steps // 2)
  schedule = optax.warmup_cosine_decay_schedule(
    0.0, settings.learning_rate, warmup, max(settings.steps, warmup + 1), end_value=0.02 * settings.learning_rate
  )
  return optax.chain(optax.clip_by_global_norm(1.0), optax.adam(schedule))


@functools.partial(jax.jit, static_argnames=("config", "settings"))
def train_step(config, settings: TrainSettings, params, opt_state, key, step, images, y, class_weights=None):
  """One augmented Adam step (pure; jitted once per (config, settings)).

  Args:
    config: `models.SegmenterConfig` or `models.ClassifierConfig`.
    settings: the run's settings (optimizer schedule, augmentation).
    params, opt_state: current state.
    key: the run's augmentation key; step t uses fold_in(key, t).
    step: int32 scalar step index.
    images: float32 [N, H, W, 3] clean renders in [-1, 1].
    y: int [N, H, W] part labels (segmenter; shifted with the images) or
      float32 [N, A] binary targets (classifier).
    class_weights: float32 [K] or None, segmenter only.

  Returns:
    (params, opt_state, loss scalar).
  """
  seg = isinstance(config, models.SegmenterConfig)
  images, shifted = augment(jax.random.fold_in(key, step), images, y if seg else None, settings.augment)
  if seg:
    loss_fn = lambda p: segmenter_loss(config, p, images, shifted, class_weights)
  else:
    loss_fn = lambda p: classifier_loss(config, p, images, y)
  loss, grads = jax.value_and_grad(loss_fn)(params)
  updates, opt_state = make_optimizer(settings).update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state, loss


# ----------------------------------------------------------------------------- training loop


def _save_state(path, step, settings, state):
  leaves = jax.tree_util.tree_leaves(jax.device_get(state))
  arrays = {f"leaf_{i:05d}": np.asarray(x) for i, x in enumerate(leaves)}
  jobs.atomic_save_npz(path, step=np.int64(step), settings=np.array(settings.to_json()), **arrays)


def _load_state(path, settings, like):
  """(step, state) from `path`, or (0, like) when there is none."""
  path = pathlib.Path(path)
  if not path.is_file():
    return 0, like
  data = jobs.load_npz(path)
  if str(data["settings"]) != settings.to_json():
    raise jobs.SettingsMismatch(f"{path} was written with other settings; use another --workdir or delete it")
  leaves, treedef = jax.tree_util.tree_flatten(like)
  new = [jnp.asarray(data[f"leaf_{i:05d}"], dtype=x.dtype) for i, x in enumerate(leaves)]
  return int(data["step"]), jax.tree_util.tree_unflatten(treedef, new)


def _train(
  kind: str,
  config,
  settings: TrainSettings,
  batch_fn: Callable,
  class_weights=None,
  checkpoint=None,
  checkpoint_every: int = 250,
  log: Callable = print,
):
  """Generic loop: returns trained params; resumes from `checkpoint`."""
  optimizer = make_optimizer(settings)
  key = jax.random.key(settings.key_seed)
  params = models.init_params(config, key)
  state = (params, optimizer.init(params))
  start = 0
  if checkpoint is not None:
    start, state = _load_state(checkpoint, settings, state)
    if start:
      log(f"{kind}: resuming at step {start}")
  aug_key = jax.random.fold_in(key, 1)
  t0, ema = time.time(), None
  for step in range(start, settings.steps):
    images, y = batch_fn(step_seeds(step, settings))
    params, opt_state, loss = train_step(config, settings, *state, aug_key, step, images, y, class_weights)
    state = (params, opt_state)
    if step % 25 == 0 or step == settings.steps - 1:
      loss = float(loss)
      ema = loss if ema is None else 0.8 * ema + 0.2 * loss
      log(f"{kind}: step {step + 1}/{settings.steps} loss {loss:.4f} (avg {ema:.4f}) {time.time() - t0:.0f}s")
    if checkpoint is not None and ((step + 1) % checkpoint_every == 0 or step + 1 == settings.steps):
      _save_state(checkpoint, step + 1, settings, state)
  return state[0]


def train_segmenter(
  settings: TrainSettings,
  config: models.SegmenterConfig = models.SegmenterConfig(),
  checkpoint=None,
  checkpoint_every: int = 250,
  log: Callable = print,
):
  """Trains the part segmenter on fresh renders -> params.

  checkpoint: optional .npz path; written every `checkpoint_every` steps and
  at the end, resumed from when present (same settings required).
  """

  def batch_fn(seeds):
    images, labels, _ = render_batch(seeds, config.resolution)
    return images, labels.astype(np.int32)

  weights = (
    part_class_weights(power=settings.class_weight_power, resolution=config.resolution)
    if settings.class_weight_power
    else None
  )
  return _train("segmenter", config, settings, batch_fn, weights, checkpoint, checkpoint_every, log)


def train_classifier(
  settings: TrainSettings,
  config: models.ClassifierConfig = models.ClassifierConfig(),
  checkpoint=None,
  checkpoint_every: int = 250,
  log: Callable = print,
):
  """Trains the attribute classifier on fresh renders -> params (see
  `train_segmenter` for the checkpoint)."""

  def batch_fn(seeds):
    images, _, attrs = render_batch(seeds, config.resolution)
    return images, models.binary_targets(attrs, config)

  return _train("classifier", config, settings, batch_fn, None, checkpoint, checkpoint_every, log)


def degrade(images: np.ndarray, seed: int = 0) -> np.ndarray:
  """Fixed strongest-setting degradation (blur 0.2, noise 0.04, no shift)
  of float images [N, H, W, 3], for robustness metrics."""
  key = jax.random.key(seed)
  x = _blur(jnp.asarray(images), jnp.full((images.shape[0],), 0.2))
  x = x + 0.04 * _normal(key, x.shape)
  return np.asarray(x)


# ----------------------------------------------------------------------------- end-to-end


def install(src_dir, dst_dir):
  """Copies a saved model (config.json, params.npz) into `dst_dir` atomically."""
  src_dir, dst_dir = pathlib.Path(src_dir), pathlib.Path(dst_dir)
  for name in ("params.npz", "config.json"):
    jobs.atomic_write_bytes(dst_dir / name, (src_dir / name).read_bytes())


def train_and_export(
  workdir,
  segmenter_settings: TrainSettings | None,
  classifier_settings: TrainSettings | None,
  eval_images: int = 1024,
  install_assets: bool = False,
  log: Callable = print,
) -> dict:
  """Trains the requested helpers, evaluates them on held-out renders and
  writes WORKDIR/{segmenter,classifier}/ and WORKDIR/metrics.json.

  Training checkpoints (WORKDIR/*_train.npz) make reruns resume. With
  `install_assets` the models are copied into `ss_jax/assets/toyfaces/`.

  Returns:
    The metrics dict (also written to metrics.json).
  """
  workdir = jobs.open_workdir(workdir)
  images, labels, attrs = render_batch(heldout_seeds(eval_images))
  degraded = degrade(images)
  metrics_path = workdir / "metrics.json"
  metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
  metrics["heldout"] = {"seeds": [HELDOUT_OFFSET, HELDOUT_OFFSET + eval_images]}
  tasks = []
  if segmenter_settings is not None:
    tasks.append(
      (
        "segmenter",
        segmenter_settings,
        train_segmenter,
        models.SegmenterConfig(),
        models.Segmenter,
        lambda m, x: evaluate_segmenter(m, x, labels),
        models.SEGMENTER_DIR,
      )
    )
  if classifier_settings is not None:
    tasks.append(
      (
        "classifier",
        classifier_settings,
        train_classifier,
        models.ClassifierConfig(),
        models.Classifier,
        lambda m, x: evaluate_classifier(m, x, attrs),
        models.CLASSIFIER_DIR,
      )
    )
  for kind, settings, train_fn, config, wrap, eval_fn, asset_dir in tasks:
    t0 = time.time()
    params = train_fn(settings, config, checkpoint=workdir / f"{kind}_train.npz", log=log)
    seconds = time.time() - t0
    model = wrap(config, params)
    result = {
      "clean": eval_fn(model, images),
      "degraded": eval_fn(model, degraded),
      "train_seconds_this_run": round(seconds, 1),
      "settings": dataclasses.asdict(settings),
      "num_params": models.num_params(params),
    }
    metrics[kind] = result
    summary = {k: v for k, v in result["clean"].items() if isinstance(v, float)}
    models.save_model(
      workdir / kind,
      config,
      params,
      extra={
        "heldout": metrics["heldout"],
        "heldout_metrics": result["clean"],
        "heldout_metrics_degraded": result["degraded"],
        "settings": dataclasses.asdict(settings),
      },
    )
    log(f"{kind}: {summary}")
    if install_assets:
      install(workdir / kind, asset_dir)
      log(f"{kind}: installed into {asset_dir}")
  jobs.atomic_write_json(metrics_path, metrics)
  return metrics
