"""Static generator configuration and the style-layer layout derived from it.

The config is plain, hashable data (it is the static part of the Generator
pytree); everything about the network's shape follows from it.
"""

import dataclasses
import math
from typing import Optional

FLAVOURS = ("nvidia", "rosinality")
ARCHITECTURES = ("skip", "resnet", "orig")


def check_resolution_channels(img_resolution, channels, min_resolution):
  """Validate a power-of-two resolution and one channel width per resolution 4..R."""
  log2 = math.log2(img_resolution)
  if img_resolution < min_resolution or log2 != int(log2):
    raise ValueError(f"img_resolution must be a power of two >= {min_resolution}, got {img_resolution}")
  if len(channels) != int(log2) - 1:
    raise ValueError(f"channels needs {int(log2) - 1} entries (4..{img_resolution} px), got {len(channels)}")


class NetworkConfig:
  """What the generator's and the discriminator's configs share (a mixin of their dataclasses).

  channels[k] is the width at resolution 2**(k + 2); fir the resampling filter taps; a config
  goes to and comes from a plain dict (config.json) with tuples restored.
  """

  def channels_at(self, res):
    return self.channels[int(math.log2(res)) - 2]

  def to_dict(self):
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, d):
    d = dict(d)
    d["channels"] = tuple(d["channels"])
    d["fir"] = tuple(d.get("fir", (1.0, 3.0, 3.0, 1.0)))
    return cls(**d)


@dataclasses.dataclass(frozen=True)
class GeneratorConfig(NetworkConfig):
  """Hyper-parameters of a StyleGAN2 generator.

  channels[k] is the feature width at resolution 2**(k + 2) (4, 8, ..., R).
  flavour selects the few numeric details that differ between NVIDIA's and
  rosinality's code (demodulation epsilon scale, truncation formula).
  """

  z_dim: int
  w_dim: int
  img_resolution: int
  channels: tuple
  c_dim: int = 0
  img_channels: int = 3
  mapping_layers: int = 8
  mapping_hidden: Optional[int] = None  # default: w_dim
  mapping_lr: float = 0.01
  embed_features: Optional[int] = None  # default: w_dim when c_dim > 0
  architecture: str = "skip"
  conv_clamp: Optional[float] = None
  flavour: str = "nvidia"
  fir: tuple = (1.0, 3.0, 3.0, 1.0)

  def __post_init__(self):
    check_resolution_channels(self.img_resolution, self.channels, min_resolution=4)
    if self.architecture not in ARCHITECTURES:
      raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
    if self.flavour not in FLAVOURS:
      raise ValueError(f"flavour must be one of {FLAVOURS}, got {self.flavour!r}")
    if self.z_dim <= 0 and self.c_dim <= 0:
      raise ValueError("need z_dim > 0 or c_dim > 0")
    object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
    object.__setattr__(self, "fir", tuple(float(f) for f in self.fir))

  @property
  def log2_res(self):
    return int(math.log2(self.img_resolution))

  @property
  def num_ws(self):
    return 2 * self.log2_res - 2

  @property
  def hidden(self):
    return self.mapping_hidden or self.w_dim

  @property
  def embed_dim(self):
    if self.c_dim == 0:
      return 0
    return self.embed_features or self.w_dim


def nvidia_channels(resolution, channel_base=32768, channel_max=512):
  """NVIDIA's width table: min(channel_base // res, channel_max) for res = 4..R."""
  return tuple(min(channel_base // 2**k, channel_max) for k in range(2, int(math.log2(resolution)) + 1))


@dataclasses.dataclass(frozen=True)
class StyleLayer:
  """One modulated layer of the synthesis network (one block of S).

  index: position in generator order (toRGB layers counted), the L of an "L_C"
  channel name; offset: first flat-S index; channels: style length (= input
  channels of the conv); w_index: row of ws it reads.
  """

  name: str
  index: int
  resolution: int
  channels: int
  out_channels: int
  kind: str  # "conv" | "torgb"
  w_index: int
  offset: int
  up: bool = False


def style_layout(cfg: GeneratorConfig):
  """Style layers in generator order: b4 conv1, b4 torgb, then per block conv0, conv1, torgb.

  orig/resnet models have a toRGB only in the last block; w rows are the same.
  """
  layers = []

  def add(name, res, cin, cout, kind, w_index, up=False):
    offset = layers[-1].offset + layers[-1].channels if layers else 0
    layers.append(StyleLayer(name, len(layers), res, cin, cout, kind, w_index, offset, up))

  c4 = cfg.channels_at(4)
  add("b4_conv1", 4, c4, c4, "conv", 0)
  if cfg.architecture == "skip" or cfg.img_resolution == 4:
    add("b4_torgb", 4, c4, cfg.img_channels, "torgb", 1)
  for k in range(3, cfg.log2_res + 1):
    res = 2**k
    cin, cout = cfg.channels_at(res // 2), cfg.channels_at(res)
    add(f"b{res}_conv0", res, cin, cout, "conv", 2 * k - 5, up=True)
    add(f"b{res}_conv1", res, cout, cout, "conv", 2 * k - 4)
    if cfg.architecture == "skip" or res == cfg.img_resolution:
      add(f"b{res}_torgb", res, cout, cfg.img_channels, "torgb", 2 * k - 3)
  return tuple(layers)
