"""Pure-function StyleGAN2 discriminator (resnet architecture), NHWC.

Follows NVlabs/stylegan2-ada-pytorch `DiscriminatorBlock`/`DiscriminatorEpilogue`
with architecture='resnet' and no conditioning:

  img (N, R, R, 3) -> fromRGB (1x1 conv, lrelu) at R
  per block at r = R, R/2, ..., 8 (tmp = channels(r), out = channels(r/2)):
    y = skip(x): blur-downsample, 1x1 conv tmp->out, no bias, gain sqrt(.5)
    x = conv0(x): 3x3 tmp->tmp, lrelu
    x = conv1(x): [1,3,3,1] blur, 3x3 stride-2 tmp->out, lrelu, gain sqrt(.5)
    x = x + y
  epilogue at 4: minibatch-stddev (+F channels), 3x3 conv, fc, fc -> 1 logit.

Parameters are stored raw (N(0,1) weights, zero biases); the equalised-lr gain
1/sqrt(fan_in) is applied at runtime, so Adam on raw params matches StyleGAN2's
training dynamics. lrelu carries the usual sqrt(2) gain.

  params = {
    "fromrgb": {"w": (1, 1, img_channels, C_R), "b": (C_R,)},
    "blocks": [{"conv0": {"w": (3, 3, C, C), "b": (C,)},       # one per r = R..8
                "conv1": {"w": (3, 3, C, C'), "b": (C',)},
                "skip": {"w": (1, 1, C, C')}}, ...],
    "epilogue": {"conv": {"w": (3, 3, C4 + F, C4), "b": (C4,)},
                 "fc": {"w": (16 * C4, C4), "b": (C4,)},
                 "out": {"w": (C4, 1), "b": (1,)}},
  }
"""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from ss_jax.stylegan2 import ops
from ss_jax.stylegan2.config import NetworkConfig, check_resolution_channels


@dataclasses.dataclass(frozen=True)
class DiscriminatorConfig(NetworkConfig):
  """Static hyper-parameters; channels[k] is the width at resolution 2**(k + 2) (4..R)."""

  img_resolution: int
  channels: tuple
  img_channels: int = 3
  mbstd_group: int = 4
  mbstd_features: int = 1
  fir: tuple = (1.0, 3.0, 3.0, 1.0)

  def __post_init__(self):
    check_resolution_channels(self.img_resolution, self.channels, min_resolution=8)
    object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
    object.__setattr__(self, "fir", tuple(float(f) for f in self.fir))

  @property
  def block_resolutions(self):
    """Block input resolutions, highest first: R, R/2, ..., 8."""
    return tuple(2**k for k in range(int(math.log2(self.img_resolution)), 2, -1))


def init_params(cfg: DiscriminatorConfig, key):
  """Raw parameters: weights N(0,1), biases 0 (float32)."""
  keys = iter(jax.random.split(key, 3 * len(cfg.block_resolutions) + 8))
  normal = lambda shape: jax.random.normal(next(keys), shape, jnp.float32)
  zeros = lambda n: jnp.zeros((n,), jnp.float32)
  c_top = cfg.channels_at(cfg.img_resolution)
  params = {"fromrgb": {"w": normal((1, 1, cfg.img_channels, c_top)), "b": zeros(c_top)}, "blocks": []}
  for res in cfg.block_resolutions:
    tmp, out = cfg.channels_at(res), cfg.channels_at(res // 2)
    params["blocks"].append(
      {
        "conv0": {"w": normal((3, 3, tmp, tmp)), "b": zeros(tmp)},
        "conv1": {"w": normal((3, 3, tmp, out)), "b": zeros(out)},
        "skip": {"w": normal((1, 1, tmp, out))},
      }
    )
  c4, f = cfg.channels_at(4), cfg.mbstd_features
  params["epilogue"] = {
    "conv": {"w": normal((3, 3, c4 + f, c4)), "b": zeros(c4)},
    "fc": {"w": normal((16 * c4, c4)), "b": zeros(c4)},
    "out": {"w": normal((c4, 1)), "b": zeros(1)},
  }
  return params


def _fir(fir):
  f = np.asarray(fir, np.float64)
  return (f / f.sum()).astype(np.float32)  # per-axis gain 1: a pure blur


def blur(x, fir, pad):
  """Separable FIR blur of (N, H, W, C) with `pad` zeros each side: (N, H+2p-3, W+2p-3, C)."""
  f = _fir(fir)
  for axis in (1, 2):
    widths = [(0, 0)] * 4
    widths[axis] = (pad, pad)
    xp = jnp.pad(x, widths)
    n = xp.shape[axis] - len(f) + 1
    x = sum(float(f[j]) * jax.lax.slice_in_dim(xp, j, j + n, axis=axis) for j in range(len(f)))
  return x


def downsample2d(x, fir):
  """upfirdn2d(x, f, down=2, pad 1): blur then keep even pixels, (N,H,W,C) -> (N,H/2,W/2,C).

  Only the kept outputs are computed (strided slices), so it costs a quarter of a blur.
  """
  f = _fir(fir)
  for axis in (1, 2):
    widths = [(0, 0)] * 4
    widths[axis] = (1, 1)
    xp = jnp.pad(x, widths)
    n = x.shape[axis] // 2
    x = sum(float(f[j]) * jax.lax.slice_in_dim(xp, j, j + 2 * (n - 1) + 1, stride=2, axis=axis) for j in range(len(f)))
  return x


def _conv(x, w, stride=1, padding="SAME", precision=None):
  fan_in = w.shape[0] * w.shape[1] * w.shape[2]
  return jax.lax.conv_general_dilated(
    x,
    w * (1.0 / math.sqrt(fan_in)),
    window_strides=(stride, stride),
    padding=padding,
    dimension_numbers=("NHWC", "HWIO", "NHWC"),
    precision=precision,
  )


def _fc(x, p, precision=None):
  return jnp.matmul(x, p["w"] * (1.0 / math.sqrt(p["w"].shape[0])), precision=precision)


def conv_down(x, w, fir, precision=None):
  """3x3 conv with 2x down-sampling as NVIDIA's conv2d_resample(down=2).

  Blur with 2 zeros of padding each side (H -> H+1), then a VALID 3x3 stride-2
  conv (H+1 -> H/2): the conv runs at output resolution, 4x cheaper than
  convolving at full resolution and subsampling.
  """
  return _conv(blur(x, fir, 2), w, stride=2, padding="VALID", precision=precision)


def minibatch_stddev(x, group_size=4, num_features=1):
  """Append F channels of per-group feature stddev: (N, H, W, C) -> (N, H, W, C + F).

  Groups are G consecutive samples (NVIDIA strides them across the batch): with
  a batch sharded over devices, a group then lives on one device whenever the
  per-device batch is a multiple of G, so the layer needs no communication.
  """
  n, h, w, c = x.shape
  g = min(group_size, n)
  if n % g:
    raise ValueError(f"batch {n} is not divisible by the minibatch-stddev group {g}")
  f = num_features
  y = x.reshape(n // g, g, h, w, f, c // f)
  y = y - jnp.mean(y, axis=1, keepdims=True)
  y = jnp.sqrt(jnp.mean(jnp.square(y), axis=1) + 1e-8)  # (M, H, W, F, C/F)
  y = jnp.mean(y, axis=(1, 2, 4))  # (M, F)
  y = jnp.broadcast_to(y[:, None, None, None, :], (n // g, g, h, w, f)).reshape(n, h, w, f)
  return jnp.concatenate([x, y], axis=-1)


def discriminator(cfg: DiscriminatorConfig, params, img, precision=None):
  """img (N, R, R, img_channels) float32 in about [-1, 1] -> logits (N,) float32."""
  if img.shape[1:] != (cfg.img_resolution, cfg.img_resolution, cfg.img_channels):
    raise ValueError(
      f"expected images (N, {cfg.img_resolution}, {cfg.img_resolution}, {cfg.img_channels}), got {img.shape}"
    )
  sqrt_half = math.sqrt(0.5)
  p = params["fromrgb"]
  x = ops.bias_act(_conv(img, p["w"], precision=precision), p["b"], "lrelu")
  for blk in params["blocks"]:
    y = _conv(downsample2d(x, cfg.fir), blk["skip"]["w"], precision=precision) * sqrt_half
    x = ops.bias_act(_conv(x, blk["conv0"]["w"], precision=precision), blk["conv0"]["b"], "lrelu")
    x = ops.bias_act(conv_down(x, blk["conv1"]["w"], cfg.fir, precision), blk["conv1"]["b"], "lrelu", sqrt_half)
    x = y + x
  e = params["epilogue"]
  if cfg.mbstd_features > 0:
    x = minibatch_stddev(x, cfg.mbstd_group, cfg.mbstd_features)
  x = ops.bias_act(_conv(x, e["conv"]["w"], precision=precision), e["conv"]["b"], "lrelu")
  x = ops.bias_act(_fc(x.reshape(x.shape[0], -1), e["fc"], precision), e["fc"]["b"], "lrelu")
  return (_fc(x, e["out"], precision) + e["out"]["b"])[:, 0]
