"""ToyFaces helper networks: a part segmenter and an attribute classifier.

Both read NHWC float32 images in [-1, 1] (the generator's output range) and
are trained on ToyFaces renders (`train_helpers`) with light blur, noise and
1 px shifts, so they also work on generated images.

* Segmenter: a tiny U-Net, images [N, H, W, 3] -> logits [N, H, W, 13] over
  `parts.PART_NAMES`; `segment` returns uint8 label maps [N, H, W].
* Classifier: a small CNN, images -> one logit per attribute [N, 26] in
  `attributes.ATTRIBUTE_NAMES` order. logit > 0 means "present" for binary
  attributes and "above the median" for continuous ones (all 26 heads are
  trained with BCE on those binary targets). `features` exposes the
  penultimate activations [N, F] (for Fréchet distances).

A trained model is a directory holding `config.json` (kind, architecture,
input resolution, ...) and `params.npz` (the flax param tree flattened with
'/'-joined keys, float32). `load_segmenter` / `load_classifier` default to
the copies shipped under `ss_jax/assets/toyfaces/`.
"""

import dataclasses
import functools
import json
import pathlib
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from ss_jax.runtime import defaults, jobs
from ss_jax.toyfaces import attributes as attr_lib
from ss_jax.toyfaces import parts as parts_lib

SEGMENTER_DIR = defaults.ASSETS / "toyfaces" / "segmenter"
CLASSIFIER_DIR = defaults.ASSETS / "toyfaces" / "classifier"
RESOLUTION = 64  # Both nets are trained on 64 px renders.

Params = Any  # A flax param pytree (nested dicts of arrays).


# ----------------------------------------------------------------------------- networks


def _fan_in_init(scale: float):
  """`variance_scaling(scale, "fan_in", "truncated_normal")`, same values.

  The counter-based PRNG fills elements in flat order, so a 1-D draw
  reshaped equals the N-D draw, and XLA on CPU compiles it in a fraction of
  the time (an N-D truncated normal took seconds per layer).
  """

  def init(key, shape, dtype=jnp.float32):
    variance = jnp.array(scale / int(np.prod(shape[:-1])), dtype)
    # .8796 = std of a unit normal truncated to [-2, 2] (float32 as in jax).
    std = jnp.sqrt(variance) / jnp.array(0.87962566103423978, dtype)
    flat = jax.random.truncated_normal(key, -2, 2, (int(np.prod(shape)),), dtype)
    return (flat * std).reshape(shape)

  return init


# He init for the SiLU convs keeps the activation scale through the norm-free
# stacks, so the short CPU trainings do not start with vanishing signals.
_KERNEL_INIT = _fan_in_init(2.0)
_LINEAR_INIT = _fan_in_init(1.0)  # = flax's default lecun_normal.


class _ConvAct(nn.Module):
  """3x3 (or k x k) convolution + SiLU."""

  features: int
  strides: int = 1
  kernel: int = 3

  @nn.compact
  def __call__(self, x):
    x = nn.Conv(
      self.features,
      (self.kernel, self.kernel),
      strides=(self.strides, self.strides),
      padding="SAME",
      kernel_init=_KERNEL_INIT,
    )(x)
    return nn.silu(x)


class SegmenterNet(nn.Module):
  """Tiny U-Net: float [N, H, W, 3] -> part logits float32 [N, H, W, K].

  H and W must be divisible by 2 ** (len(widths) - 1). Each level has two
  3x3 convs; downsampling is a stride-2 conv, upsampling nearest + conv,
  then the encoder skip is concatenated.
  """

  widths: Sequence[int] = (12, 24, 48, 64)
  num_classes: int = parts_lib.NUM_PARTS

  @nn.compact
  def __call__(self, x):
    skips = []
    for i, w in enumerate(self.widths):
      x = _ConvAct(w, strides=2 if i else 1)(x)
      x = _ConvAct(w)(x)
      skips.append(x)
    for w, skip in zip(self.widths[-2::-1], skips[-2::-1]):
      # Nearest 2x upsampling by repeat: much faster on CPU than a resize.
      x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
      x = _ConvAct(w)(x)
      x = jnp.concatenate([x, skip], axis=-1)
      x = _ConvAct(w)(x)
    return nn.Conv(self.num_classes, (1, 1), kernel_init=_LINEAR_INIT)(x).astype(jnp.float32)


class ClassifierNet(nn.Module):
  """Small CNN: float [N, 64, 64, 3] -> (logits [N, A], features [N, F]).

  A full-resolution stem conv keeps small details (earrings, iris colour);
  each later width halves the resolution. The last map is flattened rather
  than pooled so absolute position (head shift/roll) stays readable; the
  spatial means of every downsampled level are appended, which read out
  "how much of X" (eye, nose, ear size, eyebrow thickness) independently of
  where the head is.
  """

  widths: Sequence[int] = (16, 32, 48, 64, 64)
  feature_dim: int = 128
  num_outputs: int = attr_lib.NUM_ATTRIBUTES

  @nn.compact
  def __call__(self, x):
    x = _ConvAct(self.widths[0])(x)
    pooled = []
    for w in self.widths[1:]:
      x = _ConvAct(w, strides=2)(x)
      x = _ConvAct(w)(x)
      pooled.append(jnp.mean(x, axis=(1, 2)))
    x = jnp.concatenate([x.reshape(x.shape[0], -1)] + pooled, axis=-1)
    feats = nn.silu(nn.Dense(self.feature_dim, kernel_init=_LINEAR_INIT)(x))
    logits = nn.Dense(self.num_outputs, kernel_init=_LINEAR_INIT)(feats)
    return logits.astype(jnp.float32), feats.astype(jnp.float32)


@dataclasses.dataclass(frozen=True)
class SegmenterConfig:
  """Plain data that rebuilds a `SegmenterNet` (stored in config.json)."""

  widths: tuple[int, ...] = (12, 24, 48, 64)
  resolution: int = RESOLUTION
  part_names: tuple[str, ...] = parts_lib.PART_NAMES

  def net(self) -> SegmenterNet:
    return SegmenterNet(widths=tuple(self.widths), num_classes=len(self.part_names))


@dataclasses.dataclass(frozen=True)
class ClassifierConfig:
  """Plain data that rebuilds a `ClassifierNet` (stored in config.json).

  thresholds: per attribute, the value of `attributes.attribute_targets`
  above which the training label is 1 (0.5 for binary attributes, the
  median, also 0.5, for the uniform continuous ones).
  """

  widths: tuple[int, ...] = (16, 32, 48, 64, 64)
  feature_dim: int = 128
  resolution: int = RESOLUTION
  attribute_names: tuple[str, ...] = attr_lib.ATTRIBUTE_NAMES
  thresholds: tuple[float, ...] = (0.5,) * attr_lib.NUM_ATTRIBUTES

  def net(self) -> ClassifierNet:
    return ClassifierNet(widths=tuple(self.widths), feature_dim=self.feature_dim, num_outputs=len(self.attribute_names))


_CONFIGS = {"segmenter": SegmenterConfig, "classifier": ClassifierConfig}


def binary_targets(attrs: np.ndarray, config: ClassifierConfig = ClassifierConfig()) -> np.ndarray:
  """Raw attributes float [N, A] -> classifier labels float32 [N, A] in {0, 1}."""
  t = attr_lib.attribute_targets(attrs)
  return (t > np.asarray(config.thresholds, np.float32)).astype(np.float32)


def init_params(config, key: jax.Array) -> Params:
  """Fresh parameters for a `SegmenterConfig` or `ClassifierConfig`."""
  x = jnp.zeros((1, config.resolution, config.resolution, 3), jnp.float32)
  return config.net().init(key, x)["params"]


def num_params(params: Params) -> int:
  return int(sum(np.size(p) for p in jax.tree_util.tree_leaves(params)))


# ----------------------------------------------------------------------------- pure apply functions


def _to_model_input(images, resolution: int) -> jax.Array:
  """uint8 (0..255) or float ([-1, 1]) NHWC -> float32 at `resolution`."""
  if images.dtype == jnp.uint8:
    images = images.astype(jnp.float32) / 127.5 - 1.0
  images = images.astype(jnp.float32)
  n, h, w, c = images.shape
  if (h, w) != (resolution, resolution):
    images = jax.image.resize(images, (n, resolution, resolution, c), "linear", antialias=True)
  return images


def segmenter_logits(config: SegmenterConfig, params: Params, images: jax.Array) -> jax.Array:
  """images [N, H, W, 3] ([-1, 1] float or uint8) -> float32 [N, H, W, K].

  Inputs of another size are resized to the training resolution and the
  logits resized back.
  """
  n, h, w, _ = images.shape
  logits = config.net().apply({"params": params}, _to_model_input(images, config.resolution))
  if (h, w) != (config.resolution, config.resolution):
    logits = jax.image.resize(logits, (n, h, w, logits.shape[-1]), "linear")
  return logits


def segment_labels(config: SegmenterConfig, params: Params, images: jax.Array) -> jax.Array:
  """images [N, H, W, 3] -> uint8 part labels [N, H, W]."""
  return jnp.argmax(segmenter_logits(config, params, images), axis=-1).astype(jnp.uint8)


def classifier_outputs(config: ClassifierConfig, params: Params, images: jax.Array) -> tuple[jax.Array, jax.Array]:
  """images [N, H, W, 3] -> (logits float32 [N, A], features float32 [N, F])."""
  return config.net().apply({"params": params}, _to_model_input(images, config.resolution))


# ----------------------------------------------------------------------------- save / load


def save_model(directory, config, params: Params, extra: dict | None = None):
  """Writes config.json + params.npz (atomically) into `directory`.

  Args:
    directory: output folder (created).
    config: a `SegmenterConfig` or `ClassifierConfig`.
    params: the param tree.
    extra: optional JSON-able data stored under "extra" (e.g. metrics),
      returned by `load_model` and kept as `.info` by the loaders.
  """
  directory = pathlib.Path(directory)
  kind = {v: k for k, v in _CONFIGS.items()}[type(config)]
  flat = traverse_util.flatten_dict(jax.device_get(params), sep="/")
  jobs.atomic_save_npz(directory / "params.npz", **{k: np.asarray(v, np.float32) for k, v in flat.items()})
  meta = {"kind": kind, "config": dataclasses.asdict(config), "num_params": num_params(params)}
  if extra:
    meta["extra"] = extra
  jobs.atomic_write_json(directory / "config.json", meta)


def load_model(directory, kind: str | None = None):
  """Reads a directory written by `save_model` -> (config, params, extra).

  `extra` is the dict stored with the model ({} if none); the shipped models
  keep their held-out metrics there.

  Raises:
    FileNotFoundError: the directory lacks config.json or params.npz.
    ValueError: the model is not of the expected `kind`, or its params do
      not match the architecture in its config.
  """
  directory = pathlib.Path(directory)
  for name in ("config.json", "params.npz"):
    if not (directory / name).is_file():
      raise FileNotFoundError(f"ToyFaces helper model incomplete: {directory / name} is missing")
  meta = json.loads((directory / "config.json").read_text())
  if kind is not None and meta.get("kind") != kind:
    raise ValueError(f"{directory} holds a {meta.get('kind')!r} model, expected {kind!r}")
  cls = _CONFIGS[meta["kind"]]
  config = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in meta["config"].items()})
  flat = jobs.load_npz(directory / "params.npz")
  params = traverse_util.unflatten_dict({tuple(k.split("/")): jnp.asarray(v) for k, v in flat.items()})
  expected = jax.eval_shape(functools.partial(init_params, config), jax.random.key(0))
  got = jax.tree_util.tree_map(lambda a: (a.shape, a.dtype), params)
  want = jax.tree_util.tree_map(lambda a: (a.shape, a.dtype), expected)
  if got != want:
    raise ValueError(f"{directory}: params do not match the architecture in config.json")
  return config, params, meta.get("extra", {})


def _batched(fn: Callable, images, batch_size: int):
  """Applies jitted `fn` in chunks of batch_size; the last one is padded to the next power of two (at least 8,
  at most batch_size), so any number of images compiles at most ~log2(batch_size) shapes and pads less than
  a full chunk (96 images: 64 + 32, not 64 + 64). Returns numpy output(s)."""
  images = np.asarray(images)
  if images.ndim != 4 or images.shape[-1] != 3:
    raise ValueError(f"expected images [N, H, W, 3], got shape {images.shape}")
  n = images.shape[0]
  outs = []
  for i in range(0, max(n, 1), batch_size):
    chunk = images[i : i + batch_size]
    m = chunk.shape[0]
    b = min(batch_size, max(8, 1 << max(m - 1, 0).bit_length()))
    if m < b:
      pad = np.zeros((b - m,) + chunk.shape[1:], chunk.dtype)
      chunk = np.concatenate([chunk, pad])
    out = jax.device_get(fn(chunk))
    outs.append(jax.tree_util.tree_map(lambda a, m=m: np.asarray(a)[:m], out))
  return jax.tree_util.tree_map(lambda *a: np.concatenate(a)[:n], *outs)


@dataclasses.dataclass(frozen=True)
class Segmenter:
  """A loaded segmenter; call it (or `.segment`) on images [N, H, W, 3].

  Images are float32 in [-1, 1] (uint8 0..255 also accepted); any batch
  size, any square size (resized to 64 px internally).
  """

  config: SegmenterConfig
  params: Params
  batch_size: int = 32  # per image 2.31 ms at 16-32, 2.67 at 64, 3.07 at 128 (64 px, this 2-core CPU: cache)
  info: dict = dataclasses.field(default_factory=dict, compare=False)

  @functools.cached_property
  def _labels(self):
    return jax.jit(functools.partial(segment_labels, self.config, self.params))

  @functools.cached_property
  def _logits(self):
    return jax.jit(functools.partial(segmenter_logits, self.config, self.params))

  def segment(self, images) -> np.ndarray:
    """-> uint8 part labels [N, H, W] (`parts.PART_NAMES`)."""
    return _batched(self._labels, images, self.batch_size)

  def logits(self, images) -> np.ndarray:
    """-> float32 part logits [N, H, W, 13]."""
    return _batched(self._logits, images, self.batch_size)

  __call__ = segment


@dataclasses.dataclass(frozen=True)
class Classifier:
  """A loaded attribute classifier; call it (or `.classify`) on images.

  Images are float32 [N, H, W, 3] in [-1, 1] (uint8 also accepted).
  """

  config: ClassifierConfig
  params: Params
  batch_size: int = 64
  info: dict = dataclasses.field(default_factory=dict, compare=False)

  @functools.cached_property
  def _outputs(self):
    return jax.jit(functools.partial(classifier_outputs, self.config, self.params))

  def classify(self, images) -> np.ndarray:
    """-> float32 logits [N, A]; > 0 means present / above the median."""
    return self.outputs(images)[0]

  def features(self, images) -> np.ndarray:
    """-> float32 penultimate features [N, F]."""
    return self.outputs(images)[1]

  def outputs(self, images) -> tuple[np.ndarray, np.ndarray]:
    """-> (logits [N, A], features [N, F]) from one pass."""
    return _batched(self._outputs, images, self.batch_size)

  @property
  def attribute_names(self) -> tuple[str, ...]:
    return tuple(self.config.attribute_names)

  def reliable(self, min_auc: float = 0.8) -> np.ndarray:
    """bool [A]: attributes whose held-out AUC (stored with the model) is at
    least `min_auc`; all True when the model carries no metrics.

    Some fine geometric attributes (nose size, eyebrow angle, ...) change
    only ~1 px at 64 px and the small shipped classifier barely reads them;
    analyses relying on the classifier should skip those.
    """
    auc = self.info.get("heldout_metrics", {}).get("auc")
    if not auc:
      return np.ones(len(self.attribute_names), bool)
    return np.array([auc.get(n, 0.0) >= min_auc for n in self.attribute_names])

  __call__ = classify


def load_segmenter(directory=None, batch_size: int = 32) -> Segmenter:
  """The segmenter in `directory` (default: the shipped one)."""
  config, params, extra = load_model(directory or SEGMENTER_DIR, "segmenter")
  return Segmenter(config, params, batch_size, extra)


def load_classifier(directory=None, batch_size: int = 64) -> Classifier:
  """The attribute classifier in `directory` (default: the shipped one)."""
  config, params, extra = load_model(directory or CLASSIFIER_DIR, "classifier")
  return Classifier(config, params, batch_size, extra)


# Module-level entry points on the shipped models, loaded on first use; e.g.
# `--segmenter=ss_jax.toyfaces.models:segment`.
_default_segmenter = functools.lru_cache(maxsize=1)(load_segmenter)
_default_classifier = functools.lru_cache(maxsize=1)(load_classifier)


def segment(images) -> np.ndarray:
  """Shipped segmenter: images [N, H, W, 3] in [-1, 1] -> uint8 [N, H, W]."""
  return _default_segmenter().segment(images)


def classify(images) -> np.ndarray:
  """Shipped classifier: images [N, H, W, 3] in [-1, 1] -> logits [N, 26]."""
  return _default_classifier().classify(images)


def features(images) -> np.ndarray:
  """Shipped classifier: images [N, H, W, 3] in [-1, 1] -> features [N, F]."""
  return _default_classifier().features(images)
