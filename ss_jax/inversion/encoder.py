"""A small ResNet-style image encoder: image -> flat S and W+ of one generator.

    enc = ss_jax.inversion.encoder.load_encoder()        # the shipped ToyFaces encoder
    codes = enc.encode(images)                 # images (N, H, W, 3) float in [-1, 1] or uint8
    codes["s"]                                 # (N, num_style_channels) float32, flat S
    codes["wplus"]                             # (N, num_ws, w_dim) float32, W+
    x = g.synthesis(ss_jax.unflatten_styles(g.layout, codes["s"]))
    x = g.synthesis(g.styles(codes["wplus"]))

The network (`EncoderNet`, flax.linen) reads NHWC float32 images in [-1, 1] at
`config.resolution` (other square sizes are resized) and has two linear heads
on a shared feature vector. Both predict *normalised* codes:

    S head:  (s - s_mean) / s_std           s_mean, s_std: (C,) population stats of S at psi 1
    W+ head: (w - w_avg) / w_std            w_avg: the generator's; w_std: (w_dim,) RMS of
                                            mapping(z) - w_avg over z ~ N(0, I)

so every output coordinate has unit scale whatever the generator.
`encode` de-normalises them. The statistics (ss_jax.inversion.normaliser.Normaliser) are stored
with the encoder; `encoder_training.compute_normaliser` computes them.

A saved encoder is a directory holding
  config.json   {"format": "ss-jax-encoder", "version": 1, "config": EncoderConfig,
                 "generator": {"fingerprint", "num_ws", "w_dim", "num_style_channels",
                 "config"}, "num_params", "extra": {training, metrics, ...}}
  params.npz    "params/<flax path>" float32 arrays and "normaliser/<field>" float32 arrays
The fingerprint (`ss_jax.runtime.fingerprints.model_fingerprint`) names the generator whose
codes the encoder predicts: `load_encoder(..., generator=g)` refuses (or warns
about) any other generator.
"""

import dataclasses
import functools
import json
import math
import pathlib
import warnings
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from ss_jax.inversion.normaliser import Normaliser, denormalise_s, denormalise_wplus
from ss_jax.runtime import fingerprints
from ss_jax.runtime import defaults, jobs, outputs

FORMAT = "ss-jax-encoder"
VERSION = 1
ENCODER_DIR = defaults.TOYFACES_ENCODER

Params = Any  # A flax param pytree (nested dicts of arrays).


class GeneratorMismatch(ValueError):
  """The encoder was trained for another generator than the one given."""


# ----------------------------------------------------------------------------- config


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
  """Plain, hashable data that rebuilds an `EncoderNet` (stored in config.json).

  widths: channels of the full-resolution stem, then of one stride-2 residual
    stage each (the last map is resolution / 2 ** (len(widths) - 1) px).
  blocks: residual blocks per stage (the first one strides).
  head_channels: 1x1 reduction of the last map before it is flattened (keeps
    position, which the codes encode, at a small parameter cost).
  feature_dim: shared feature vector feeding both linear heads.
  resolution, img_channels: input images.
  num_style_channels, num_ws, w_dim: the generator's code shapes.
  """

  num_style_channels: int
  num_ws: int
  w_dim: int
  resolution: int = 64
  img_channels: int = 3
  widths: tuple = (16, 32, 64, 96, 96)
  blocks: int = 1
  head_channels: int = 32
  feature_dim: int = 192

  def __post_init__(self):
    object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
    if self.resolution % 2 ** (len(self.widths) - 1):
      raise ValueError(
        f"resolution {self.resolution} must be divisible by 2 ** (len(widths) - 1) = {2 ** (len(self.widths) - 1)}"
      )

  @classmethod
  def for_generator(cls, g, **kw):
    """The config whose heads match generator g's S and W+ shapes."""
    return cls(
      num_style_channels=int(g.num_style_channels),
      num_ws=int(g.config.num_ws),
      w_dim=int(g.config.w_dim),
      resolution=int(g.config.img_resolution),
      img_channels=int(g.config.img_channels),
      **kw,
    )

  def to_dict(self):
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, d):
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

  def net(self) -> "EncoderNet":
    return EncoderNet(
      widths=self.widths,
      blocks=self.blocks,
      head_channels=self.head_channels,
      feature_dim=self.feature_dim,
      num_style_channels=self.num_style_channels,
      num_ws=self.num_ws,
      w_dim=self.w_dim,
    )


# ----------------------------------------------------------------------------- network


def _fan_in_init(scale: float):
  """variance_scaling(scale, "fan_in", "truncated_normal"), drawn flat (fast CPU compiles)."""

  def init(key, shape, dtype=jnp.float32):
    std = jnp.sqrt(jnp.array(scale / int(np.prod(shape[:-1])), dtype)) / jnp.array(0.87962566103423978, dtype)
    flat = jax.random.truncated_normal(key, -2, 2, (int(np.prod(shape)),), dtype)
    return (flat * std).reshape(shape)

  return init


_CONV_INIT = _fan_in_init(2.0)  # He init for the SiLU convs (no normalisation layers)
_LINEAR_INIT = _fan_in_init(1.0)


class ResBlock(nn.Module):
  """conv3x3 (stride s) - SiLU - conv3x3, plus a shortcut (2x2 average pool + 1x1 conv when
  the shape changes); the sum is scaled by sqrt(1/2) and passed through SiLU.

  float32 (N, H, W, Cin) -> (N, H / s, W / s, features).
  """

  features: int
  strides: int = 1

  @nn.compact
  def __call__(self, x):
    s = self.strides
    y = nn.silu(nn.Conv(self.features, (3, 3), strides=(s, s), padding="SAME", kernel_init=_CONV_INIT)(x))
    y = nn.Conv(self.features, (3, 3), padding="SAME", kernel_init=_CONV_INIT)(y)
    if s != 1:
      x = nn.avg_pool(x, (s, s), strides=(s, s))
    if x.shape[-1] != self.features:
      x = nn.Conv(self.features, (1, 1), use_bias=False, kernel_init=_LINEAR_INIT)(x)
    return nn.silu((x + y) * math.sqrt(0.5))


class EncoderNet(nn.Module):
  """float32 images (N, R, R, 3) in [-1, 1] -> (s_norm (N, C), w_norm (N, num_ws, w_dim)).

  Stem conv at full resolution, stride-2 residual stages, then the last map
  (1x1-reduced, flattened: keeps where things are) concatenated with the
  spatial means of every stage (how much of something, wherever it is) ->
  SiLU dense features -> two zero-initialised linear heads (so a fresh
  encoder predicts the population mean).
  """

  widths: Sequence[int]
  blocks: int
  head_channels: int
  feature_dim: int
  num_style_channels: int
  num_ws: int
  w_dim: int

  @nn.compact
  def __call__(self, x):
    x = nn.silu(nn.Conv(self.widths[0], (3, 3), padding="SAME", kernel_init=_CONV_INIT)(x))
    pooled = []
    for w in self.widths[1:]:
      x = ResBlock(w, strides=2)(x)
      for _ in range(self.blocks - 1):
        x = ResBlock(w)(x)
      pooled.append(jnp.mean(x, axis=(1, 2)))
    x = nn.silu(nn.Conv(self.head_channels, (1, 1), kernel_init=_CONV_INIT)(x))
    x = jnp.concatenate([x.reshape(x.shape[0], -1)] + pooled, axis=-1)
    feats = nn.silu(nn.Dense(self.feature_dim, kernel_init=_LINEAR_INIT)(x))
    s = nn.Dense(self.num_style_channels, kernel_init=nn.initializers.zeros, name="s_head")(feats)
    w = nn.Dense(self.num_ws * self.w_dim, kernel_init=nn.initializers.zeros, name="wplus_head")(feats)
    return s.astype(jnp.float32), w.reshape(-1, self.num_ws, self.w_dim).astype(jnp.float32)


def init_params(config: EncoderConfig, key) -> Params:
  """Fresh float32 parameters for `config` (pure; jit it, or use `fresh_params`)."""
  x = jnp.zeros((1, config.resolution, config.resolution, config.img_channels), jnp.float32)
  return config.net().init(key, x)["params"]


@functools.partial(jax.jit, static_argnums=0)
def fresh_params(config: EncoderConfig, key) -> Params:
  """init_params as one compiled program (eager flax init dispatches hundreds of ops)."""
  return init_params(config, key)


def num_params(params: Params) -> int:
  return int(sum(np.size(p) for p in jax.tree_util.tree_leaves(params)))


# ----------------------------------------------------------------------------- pure apply


def to_model_input(images, resolution: int):
  """uint8 (0..255) or float ([-1, 1]) NHWC -> float32 (N, resolution, resolution, C)."""
  if images.dtype == jnp.uint8:
    images = images.astype(jnp.float32) / 127.5 - 1.0
  images = images.astype(jnp.float32)
  n, h, w, c = images.shape
  if (h, w) != (resolution, resolution):
    images = jax.image.resize(images, (n, resolution, resolution, c), "linear", antialias=True)
  return images


def predict(config: EncoderConfig, params: Params, images):
  """images (N, H, W, 3) -> normalised codes (s_norm (N, C), w_norm (N, num_ws, w_dim)) float32."""
  return config.net().apply({"params": params}, to_model_input(images, config.resolution))


def encode_arrays(config: EncoderConfig, params: Params, norm: Normaliser, images):
  """images (N, H, W, 3) -> dict(s=(N, C), wplus=(N, num_ws, w_dim)) float32 (pure, jittable)."""
  s_norm, w_norm = predict(config, params, images)
  return {"s": denormalise_s(norm, s_norm), "wplus": denormalise_wplus(norm, w_norm)}


@functools.partial(jax.jit, static_argnums=0)
def _encode_jit(config, params, norm, images):
  return encode_arrays(config, params, norm, images)


# ----------------------------------------------------------------------------- the Encoder object


@dataclasses.dataclass(frozen=True)
class Encoder:
  """A trained encoder: `encode(images) -> dict(s, wplus)` (numpy float32).

  generator_fingerprint: `fingerprints.model_fingerprint` of the generator whose codes
  it predicts. info: the "extra" dict of config.json (training, metrics).
  """

  config: EncoderConfig
  params: Params
  normaliser: Normaliser
  generator_fingerprint: str = ""
  info: dict = dataclasses.field(default_factory=dict, compare=False)
  batch_size: int = 64

  def encode(self, images) -> dict:
    """images (N, H, W, 3) float in [-1, 1] or uint8 -> dict(s=(N, C), wplus=(N, num_ws, w_dim)).

    Runs in jitted chunks of batch_size (the last one padded), so any N
    reuses one compilation. Square images of another size are resized.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != self.config.img_channels:
      raise ValueError(f"expected images (N, H, W, {self.config.img_channels}), got shape {images.shape}")
    if images.dtype != np.uint8:
      images = images.astype(np.float32)
    n = len(images)
    b = max(1, min(self.batch_size, n))
    outs = []
    for i in range(0, n, b):
      chunk = images[i : i + b]
      m = len(chunk)
      if m < b:
        chunk = np.concatenate([chunk, np.zeros((b - m,) + chunk.shape[1:], chunk.dtype)])
      out = jax.device_get(_encode_jit(self.config, self.params, self.normaliser, chunk))
      outs.append({k: np.asarray(v[:m], np.float32) for k, v in out.items()})
    if not outs:
      return {
        "s": np.zeros((0, self.config.num_style_channels), np.float32),
        "wplus": np.zeros((0, self.config.num_ws, self.config.w_dim), np.float32),
      }
    return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}

  __call__ = encode

  def check_generator(self, g, on_mismatch="raise"):
    """Refuse ("raise") or warn ("warn") unless g is the generator the encoder was trained for.

    Shapes (num_ws, w_dim, style channels) that differ always raise.
    Returns True when the fingerprints match.
    """
    check_compatible(self.config, g)
    got = fingerprints.model_fingerprint(g)
    if got == self.generator_fingerprint:
      return True
    msg = (
      f"this encoder was trained for generator {self.generator_fingerprint[:12] or '?'}..., "
      f"got {got[:12]}... (a different generator: its codes would not match)"
    )
    if on_mismatch == "warn":
      warnings.warn(msg, stacklevel=2)
      return False
    if on_mismatch != "raise":
      raise ValueError(f"on_mismatch must be 'raise' or 'warn', got {on_mismatch!r}")
    raise GeneratorMismatch(msg + "; pass on_mismatch='warn' to use it anyway")

  def save(self, directory, extra=None, overwrite=False):
    save_encoder(
      directory,
      self.config,
      self.params,
      self.normaliser,
      self.generator_fingerprint,
      extra=self.info if extra is None else extra,
      overwrite=overwrite,
    )


def check_compatible(config: EncoderConfig, g):
  """ValueError unless generator g has the code shapes the encoder predicts."""
  want = (config.num_ws, config.w_dim, config.num_style_channels)
  got = (g.config.num_ws, g.config.w_dim, g.num_style_channels)
  if want != got:
    raise GeneratorMismatch(f"encoder predicts (num_ws, w_dim, style channels) = {want}, the generator has {got}")


# ----------------------------------------------------------------------------- save / load


def save_encoder(
  directory,
  config: EncoderConfig,
  params: Params,
  normaliser: Normaliser,
  generator_fingerprint: str,
  extra: dict | None = None,
  generator_config=None,
  overwrite=False,
):
  """Write config.json + params.npz into `directory` atomically (all or nothing).

  Args:
    config, params, normaliser: the model.
    generator_fingerprint: fingerprints.model_fingerprint of the generator it was trained for.
    extra: JSON-able data (training command, steps, metrics, ...), returned as `.info`.
    generator_config: optional GeneratorConfig recorded for humans.
    overwrite: replace a previous ss-jax output in `directory` (never user files).
  """
  outputs.check_target(directory, overwrite)
  flat = traverse_util.flatten_dict(jax.device_get(params), sep="/")
  arrays = {f"params/{k}": np.asarray(v, np.float32) for k, v in flat.items()}
  arrays.update({f"normaliser/{k}": v for k, v in normaliser.to_arrays().items()})
  meta = {
    "format": FORMAT,
    "version": VERSION,
    "config": config.to_dict(),
    "generator": {
      "fingerprint": generator_fingerprint,
      "num_ws": config.num_ws,
      "w_dim": config.w_dim,
      "num_style_channels": config.num_style_channels,
      "config": None if generator_config is None else generator_config.to_dict(),
    },
    "num_params": num_params(params),
    "extra": extra or {},
  }
  with jobs.atomic_directory(directory, overwrite) as tmp:
    jobs.atomic_save_npz(tmp / "params.npz", **arrays)
    jobs.atomic_write_json(tmp / "config.json", meta)


def load_encoder(directory=None, generator=None, on_mismatch="raise", batch_size=64) -> Encoder:
  """The encoder saved in `directory` (default: the shipped ToyFaces encoder).

  Args:
    generator: optional Generator to check against the recorded fingerprint.
    on_mismatch: "raise" (GeneratorMismatch) or "warn" when it differs.

  Raises:
    FileNotFoundError: no encoder there (config.json / params.npz missing).
    ValueError: not an encoder directory, or params not matching its config.
  """
  directory = pathlib.Path(directory if directory is not None else ENCODER_DIR)
  for name in ("config.json", "params.npz"):
    if not (directory / name).is_file():
      hint = (
        (
          " (the shipped ToyFaces encoder is missing from this install; train one with "
          "python -m experiments.train_encoder)"
        )
        if directory == ENCODER_DIR
        else ""
      )
      raise FileNotFoundError(f"no ss-jax encoder in {directory}: {name} is missing{hint}")
  meta = json.loads((directory / "config.json").read_text())
  if meta.get("format") != FORMAT:
    raise ValueError(f"{directory / 'config.json'}: format is {meta.get('format')!r}, expected {FORMAT!r}")
  config = EncoderConfig.from_dict(meta["config"])
  data = jobs.load_npz(directory / "params.npz")
  params = traverse_util.unflatten_dict(
    {tuple(k[len("params/") :].split("/")): jnp.asarray(v) for k, v in data.items() if k.startswith("params/")}
  )
  want = jax.tree_util.tree_map(
    lambda a: (a.shape, a.dtype), jax.eval_shape(functools.partial(init_params, config), jax.random.key(0))
  )
  got = jax.tree_util.tree_map(lambda a: (a.shape, a.dtype), params)
  if got != want:
    raise ValueError(f"{directory}: params do not match the architecture in config.json")
  try:
    norm = Normaliser(**{f.name: jnp.asarray(data[f"normaliser/{f.name}"]) for f in dataclasses.fields(Normaliser)})
  except KeyError as e:
    raise ValueError(f"{directory}: params.npz lacks normaliser array {e}") from e
  enc = Encoder(config, params, norm, meta["generator"]["fingerprint"], meta.get("extra", {}), batch_size)
  if generator is not None:
    enc.check_generator(generator, on_mismatch)
  return enc


__all__ = [
  "Encoder",
  "EncoderConfig",
  "EncoderNet",
  "GeneratorMismatch",
  "ENCODER_DIR",
  "check_compatible",
  "encode_arrays",
  "fresh_params",
  "init_params",
  "load_encoder",
  "num_params",
  "predict",
  "save_encoder",
]
