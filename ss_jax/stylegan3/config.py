"""StyleGAN3 generator configuration and the layer table derived from it.

The table follows the alias-free generator's construction rules (Karras et al.
2021): a geometric progression of cutoffs and minimum stopbands over the layers,
sampling rates rounded up to powers of two, a margin around the image for all but
the last two layers, widths `min(channel_base / 2 / cutoff, channel_max)`, and per
layer the up/down factors, filter lengths and padding of the filtered leaky ReLU.
Everything here is static Python data (hashable), the static part of the
`StyleGAN3Generator` pytree.
"""

import dataclasses

import numpy as np

from ss_jax.stylegan2 import config as sg2_config


@dataclasses.dataclass(frozen=True)
class StyleGAN3Config:
  """Hyper-parameters of a StyleGAN3 generator (names as in the official constructors).

  variant "T" (translation equivariant) is conv_kernel 3 and separable
  down-sampling filters; "R" (rotation) is conv_kernel 1 and radially symmetric
  down-sampling filters (use_radial_filters) on the non-critical layers.
  """

  z_dim: int
  w_dim: int
  img_resolution: int
  c_dim: int = 0
  img_channels: int = 3
  mapping_layers: int = 2
  mapping_lr: float = 0.01
  channel_base: int = 32768
  channel_max: int = 512
  num_layers: int = 14
  num_critical: int = 2
  first_cutoff: float = 2.0
  first_stopband: float = 2**2.1
  last_stopband_rel: float = 2**0.3
  margin_size: int = 10
  output_scale: float = 0.25
  conv_kernel: int = 3
  filter_size: int = 6
  lrelu_upsampling: int = 2
  use_radial_filters: bool = False
  conv_clamp: float | None = None

  family = "stylegan3"
  flavour = "nvidia"  # truncation as torch.lerp (shared with ss_jax.stylegan2.generator.truncate)

  def __post_init__(self):
    if self.z_dim <= 0 and self.c_dim <= 0:
      raise ValueError("need z_dim > 0 or c_dim > 0")
    if self.num_layers < 1 or not 0 <= self.num_critical < self.num_layers:
      raise ValueError(
        f"need num_layers >= 1 and 0 <= num_critical < num_layers, got {self.num_layers}, {self.num_critical}"
      )
    if self.img_resolution < 1:
      raise ValueError(f"img_resolution must be positive, got {self.img_resolution}")
    layer_table(self)  # raises for resolutions/rates the constructor cannot build

  @property
  def num_ws(self):
    return self.num_layers + 2

  @property
  def variant(self):
    return "R" if self.use_radial_filters else "T"

  @property
  def embed_dim(self):
    return self.w_dim if self.c_dim else 0

  def to_dict(self):
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, d):
    return cls(**dict(d))


@dataclasses.dataclass(frozen=True)
class InputSpec:
  """The Fourier-feature input: channels, size (square, margin included), rate, bandwidth."""

  channels: int
  size: int
  sampling_rate: float
  bandwidth: float


@dataclasses.dataclass(frozen=True)
class LayerSpec:
  """One SynthesisLayer (L0 ... L{num_layers}; the last is toRGB). Sizes are square."""

  name: str
  idx: int
  is_torgb: bool
  is_critically_sampled: bool
  in_channels: int
  out_channels: int
  in_size: int
  out_size: int
  in_sampling_rate: int
  out_sampling_rate: int
  tmp_sampling_rate: int
  in_cutoff: float
  out_cutoff: float
  in_half_width: float
  out_half_width: float
  conv_kernel: int
  up_factor: int
  down_factor: int
  up_taps: int
  down_taps: int
  down_radial: bool
  padding: tuple  # (x0, x1, y0, y1), negative = crop


def _progression(cfg):
  res = cfg.img_resolution
  last_cutoff = res / 2
  last_stopband = last_cutoff * cfg.last_stopband_rel
  exponents = np.minimum(np.arange(cfg.num_layers + 1) / (cfg.num_layers - cfg.num_critical), 1)
  cutoffs = cfg.first_cutoff * (last_cutoff / cfg.first_cutoff) ** exponents
  stopbands = cfg.first_stopband * (last_stopband / cfg.first_stopband) ** exponents
  rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, res))))
  half_widths = np.maximum(stopbands, rates / 2) - cutoffs
  sizes = rates + cfg.margin_size * 2
  sizes[-2:] = res
  channels = np.rint(np.minimum((cfg.channel_base / 2) / cutoffs, cfg.channel_max))
  channels[-1] = cfg.img_channels
  return cutoffs, rates, half_widths, sizes, channels


def layer_table(cfg: StyleGAN3Config):
  """(InputSpec, tuple of LayerSpec) exactly as the official constructors compute them (float64)."""
  cutoffs, rates, half_widths, sizes, channels = _progression(cfg)
  inp = InputSpec(int(channels[0]), int(sizes[0]), float(rates[0]), float(cutoffs[0]))
  layers = []
  for idx in range(cfg.num_layers + 1):
    prev = max(idx - 1, 0)
    torgb = idx == cfg.num_layers
    critical = idx >= cfg.num_layers - cfg.num_critical
    in_sr, out_sr = int(rates[prev]), int(rates[idx])
    tmp_sr = max(in_sr, out_sr) * (1 if torgb else cfg.lrelu_upsampling)
    k = 1 if torgb else cfg.conv_kernel
    up = int(np.rint(tmp_sr / in_sr))
    down = int(np.rint(tmp_sr / out_sr))
    if in_sr * up != tmp_sr or out_sr * down != tmp_sr:
      raise ValueError(
        f"layer {idx}: sampling rates {in_sr} -> {tmp_sr} -> {out_sr} are not integer ratios "
        f"(img_resolution {cfg.img_resolution} is not supported by the StyleGAN3 constructor)"
      )
    up_taps = cfg.filter_size * up if up > 1 and not torgb else 1
    down_taps = cfg.filter_size * down if down > 1 and not torgb else 1
    in_size, out_size = int(sizes[prev]), int(sizes[idx])
    pad_total = (out_size - 1) * down + 1 - (in_size + k - 1) * up + up_taps + down_taps - 2
    pad_lo = (pad_total + up) // 2
    pad_hi = pad_total - pad_lo
    out_ch = int(channels[idx])
    layers.append(
      LayerSpec(
        name=f"L{idx}_{out_size}_{out_ch}",
        idx=idx,
        is_torgb=torgb,
        is_critically_sampled=critical,
        in_channels=int(channels[prev]),
        out_channels=out_ch,
        in_size=in_size,
        out_size=out_size,
        in_sampling_rate=in_sr,
        out_sampling_rate=out_sr,
        tmp_sampling_rate=tmp_sr,
        in_cutoff=float(cutoffs[prev]),
        out_cutoff=float(cutoffs[idx]),
        in_half_width=float(half_widths[prev]),
        out_half_width=float(half_widths[idx]),
        conv_kernel=k,
        up_factor=up,
        down_factor=down,
        up_taps=up_taps,
        down_taps=down_taps,
        down_radial=bool(cfg.use_radial_filters and not critical),
        padding=(pad_lo, pad_hi, pad_lo, pad_hi),
      )
    )
  return inp, tuple(layers)


@dataclasses.dataclass(frozen=True)
class StyleGAN3Layer:
  """One block of S (one affine) of a StyleGAN3 generator, in generator order.

  Same fields as ss_jax.stylegan2.config.StyleLayer (index is the L of an "L_C" channel name,
  offset the first flat-S index, channels the style length) plus the layer's
  geometry. kind: "input" (the Fourier input's 4 values (r_c, r_s, t_x, t_y)),
  "conv" (L0 ... L{n-1}: style length = input channels) or "torgb" (the last).
  resolution: output size in pixels, margin included (the image size for the last
  two); sampling_rate: output sampling rate; up: the layer raises the sampling rate.
  """

  name: str
  index: int
  resolution: int
  channels: int
  out_channels: int
  kind: str
  w_index: int
  offset: int
  up: bool = False
  sampling_rate: float = 0.0
  cutoff: float = 0.0


def style_layout(cfg: StyleGAN3Config):
  """S blocks in generator order: input (4 values), L0 ... L{n-1} (conv), L{n} (toRGB)."""
  inp, layers = layer_table(cfg)
  out = [StyleGAN3Layer("input", 0, inp.size, 4, inp.channels, "input", 0, 0, False, inp.sampling_rate, inp.bandwidth)]
  for spec in layers:
    prev = out[-1]
    out.append(
      StyleGAN3Layer(
        spec.name,
        len(out),
        spec.out_size,
        spec.in_channels,
        spec.out_channels,
        "torgb" if spec.is_torgb else "conv",
        spec.idx + 1,
        prev.offset + prev.channels,
        spec.out_sampling_rate > spec.in_sampling_rate,
        float(spec.out_sampling_rate),
        spec.out_cutoff,
      )
    )
  return tuple(out)


def is_config(cfg):
  """True for a StyleGAN3Config."""
  return getattr(cfg, "family", None) == "stylegan3"


def is_config_dict(d):
  """True when a config dict (StyleGAN3Config.to_dict) describes a StyleGAN3 generator."""
  return "num_critical" in d and "channel_base" in d and "first_cutoff" in d


def any_config_from_dict(d):
  """A StyleGAN2 (ss_jax.stylegan2.config.GeneratorConfig) or StyleGAN3 config from its `to_dict()`."""
  return StyleGAN3Config.from_dict(d) if is_config_dict(d) else sg2_config.GeneratorConfig.from_dict(d)


def any_style_layout(d):
  """The style layout of a StyleGAN2 or StyleGAN3 config dict (`to_dict()`)."""
  cfg = any_config_from_dict(d)
  return style_layout(cfg) if is_config(cfg) else sg2_config.style_layout(cfg)


def config_t(resolution=256, z_dim=512, w_dim=512, **kw):
  """The official config-T widths (channel_base 32768, channel_max 512, conv_kernel 3)."""
  return StyleGAN3Config(z_dim=z_dim, w_dim=w_dim, img_resolution=resolution, **kw)


def config_r(resolution=256, z_dim=512, w_dim=512, **kw):
  """The official config-R widths (train.py doubles channel_base/max: 65536 / 1024; conv_kernel 1, radial)."""
  kw = {"channel_base": 65536, "channel_max": 1024, "conv_kernel": 1, "use_radial_filters": True, **kw}
  return StyleGAN3Config(z_dim=z_dim, w_dim=w_dim, img_resolution=resolution, **kw)
