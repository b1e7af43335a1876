"""BiSeNet face parser (zllrunning/face-parsing.PyTorch) as pure JAX functions, NHWC.

The network StyleSpace uses to find locally-active channels: a ResNet-18
context path with attention refinement, a feature-fusion module and three
output heads over the 19 CelebAMask-HQ classes
(`segmentation.CELEBAMASK_HQ_CLASSES`). Architecture as in
`shared/fixtures/bisenet/README.md`; `forward` returns
`(out, out16, out32)` like the official `BiSeNet.forward` (eval mode).

Params are a flat dict, one entry per conv of the official model, keyed by
the torch module path of that conv (`"cp.resnet.layer2.0.conv1"`,
`"ffm.conv1"`, ...; `CONVS` lists them in state-dict order):

  params[name] = {"w": float32 (k, k, C_in, C_out) HWIO, "b": float32 (C_out,)}

Every official conv is bias-free; the eval-mode BatchNorm that follows most
of them is folded into that conv at load time (`fold_batchnorm`):
  w' = w * s,  b' = beta - mean * s,  s = gamma / sqrt(var + eps),
computed in float64 and rounded once to float32. This is the same affine map
as conv -> BN; the only difference to torch is float32 rounding (relative
~1e-7 per layer, measured end to end against the reference logits in
tests/test_bisenet.py, well inside the 1e-4 parity tolerance). Convs without a
BatchNorm (`ffm.conv1`, `ffm.conv2`, the `*.conv_out` classifiers) carry a
zero bias, so adding it is exact.
"""

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

BN_EPS = 1e-5
NUM_CLASSES = 19
# Spatial size of inputs must divide by the deepest stride (feat32).
STRIDE = 32

Params = Any  # dict: conv name -> {"w": (k, k, Cin, Cout), "b": (Cout,)}


class ConvSpec(NamedTuple):
  """One conv of the official model.

  name: torch module path of the conv (its weight is `name + ".weight"`).
  bn: torch module path of the BatchNorm2d folded into it, or None.
  k: kernel size (padding k // 2); c_in, c_out: channels; stride: 1 or 2.
  """

  name: str
  bn: str | None
  k: int
  c_in: int
  c_out: int
  stride: int = 1


def conv_specs(num_classes: int = NUM_CLASSES) -> tuple[ConvSpec, ...]:
  """The 36 convs of BiSeNet(n_classes=num_classes) in state-dict order."""
  specs = [ConvSpec("cp.resnet.conv1", "cp.resnet.bn1", 7, 3, 64, 2)]
  c_in = 64
  for i, c_out in enumerate((64, 128, 256, 512), start=1):
    for b in (0, 1):
      pre = f"cp.resnet.layer{i}.{b}"
      down = b == 0 and i > 1
      cin_b = c_in if b == 0 else c_out
      specs.append(ConvSpec(f"{pre}.conv1", f"{pre}.bn1", 3, cin_b, c_out, 2 if down else 1))
      specs.append(ConvSpec(f"{pre}.conv2", f"{pre}.bn2", 3, c_out, c_out))
      if down:
        specs.append(ConvSpec(f"{pre}.downsample.0", f"{pre}.downsample.1", 1, cin_b, c_out, 2))
    c_in = c_out
  for arm, c in (("cp.arm16", 256), ("cp.arm32", 512)):
    specs.append(ConvSpec(f"{arm}.conv.conv", f"{arm}.conv.bn", 3, c, 128))
    specs.append(ConvSpec(f"{arm}.conv_atten", f"{arm}.bn_atten", 1, 128, 128))
  specs += [
    ConvSpec("cp.conv_head32.conv", "cp.conv_head32.bn", 3, 128, 128),
    ConvSpec("cp.conv_head16.conv", "cp.conv_head16.bn", 3, 128, 128),
    ConvSpec("cp.conv_avg.conv", "cp.conv_avg.bn", 1, 512, 128),
    ConvSpec("ffm.convblk.conv", "ffm.convblk.bn", 1, 256, 256),
    ConvSpec("ffm.conv1", None, 1, 256, 64),
    ConvSpec("ffm.conv2", None, 1, 64, 256),
  ]
  for head, c, mid in (("conv_out", 256, 256), ("conv_out16", 128, 64), ("conv_out32", 128, 64)):
    specs.append(ConvSpec(f"{head}.conv.conv", f"{head}.conv.bn", 3, c, mid))
    specs.append(ConvSpec(f"{head}.conv_out", None, 1, mid, num_classes))
  return tuple(specs)


@dataclasses.dataclass(frozen=True)
class BiSeNetConfig:
  """What varies between BiSeNet checkpoints: only the number of classes."""

  num_classes: int = NUM_CLASSES

  def to_dict(self):
    return {"num_classes": self.num_classes}

  @classmethod
  def from_dict(cls, d):
    return cls(num_classes=int(d["num_classes"]))


def num_classes_of(params: Params) -> int:
  return int(params["conv_out.conv_out"]["w"].shape[-1])


# ----------------------------------------------------------------------------- parameters


def fold_batchnorm(w_oihw, gamma=None, beta=None, mean=None, var=None, eps=BN_EPS):
  """Torch conv weight (+ eval BatchNorm) -> (HWIO float32 weight, float32 bias).

  Args:
    w_oihw: (C_out, C_in, k, k) bias-free torch conv weight.
    gamma, beta, mean, var: (C_out,) BatchNorm weight, bias, running mean and
      variance; all None for a conv without BatchNorm (bias = 0).
  """
  w = np.asarray(w_oihw, np.float64)
  if gamma is None:
    scale = np.ones(w.shape[0])
    bias = np.zeros(w.shape[0])
  else:
    scale = np.asarray(gamma, np.float64) / np.sqrt(np.asarray(var, np.float64) + eps)
    bias = np.asarray(beta, np.float64) - np.asarray(mean, np.float64) * scale
  w = w * scale[:, None, None, None]
  return (np.ascontiguousarray(np.transpose(w, (2, 3, 1, 0)), dtype=np.float32), bias.astype(np.float32))


def random_params(seed: int = 0, num_classes: int = NUM_CLASSES) -> Params:
  """He-normal weights, small biases: for benchmarks and shape tests, not for parsing."""
  rng = np.random.default_rng(seed)
  params = {}
  for s in conv_specs(num_classes):
    std = np.sqrt(2.0 / (s.k * s.k * s.c_in))
    params[s.name] = {
      "w": (rng.standard_normal((s.k, s.k, s.c_in, s.c_out)) * std).astype(np.float32),
      "b": (rng.standard_normal(s.c_out) * 0.1).astype(np.float32),
    }
  return params


def check_params(params: Params, num_classes: int | None = None):
  """ValueError naming the first conv whose weight / bias is missing or misshapen."""
  num_classes = num_classes or num_classes_of(params)
  for s in conv_specs(num_classes):
    if s.name not in params:
      raise ValueError(f"BiSeNet params lack conv {s.name!r}")
    want = {"w": (s.k, s.k, s.c_in, s.c_out), "b": (s.c_out,)}
    for k, shape in want.items():
      got = tuple(np.shape(params[s.name].get(k)))
      if got != shape:
        raise ValueError(f"BiSeNet param {s.name}/{k} has shape {got}, expected {shape}")


# ----------------------------------------------------------------------------- resampling


def nearest_indices(n_in: int, n_out: int) -> np.ndarray:
  """Source rows of `F.interpolate(mode='nearest')`: floor(dst * (in / out)), float32 scale."""
  if n_in == n_out:
    return np.arange(n_out)
  scale = np.float32(n_in) / np.float32(n_out)
  idx = np.floor(np.arange(n_out, dtype=np.float32) * scale).astype(np.int64)
  return np.minimum(idx, n_in - 1)


def resize_nearest(x, size):
  """(N, h, w, C) -> (N, H, W, C) like torch's nearest resize to an explicit size."""
  h, w = size
  x = jnp.take(x, nearest_indices(x.shape[1], h), axis=1)
  return jnp.take(x, nearest_indices(x.shape[2], w), axis=2)


def align_corners_coeffs(n_in: int, n_out: int):
  """(i0, i1, l0, l1) of a bilinear align_corners=True resize along one axis.

  Source coordinate dst * (in - 1) / (out - 1) in float32, as torch's CPU
  kernel computes it; i1 = min(i0 + 1, in - 1); l0 = 1 - l1.
  """
  scale = np.float32(n_in - 1) / np.float32(n_out - 1) if n_out > 1 else np.float32(0)
  src = np.arange(n_out, dtype=np.float32) * scale
  i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
  l1 = np.clip(src - i0.astype(np.float32), 0, 1).astype(np.float32)
  i1 = np.minimum(i0 + 1, n_in - 1)
  return i0, i1, (np.float32(1) - l1), l1


def _lerp_axis(x, axis, n_out):
  i0, i1, l0, l1 = align_corners_coeffs(x.shape[axis], n_out)
  shape = [1] * x.ndim
  shape[axis] = n_out
  return jnp.take(x, i0, axis=axis) * l0.reshape(shape) + jnp.take(x, i1, axis=axis) * l1.reshape(shape)


def resize_bilinear_align_corners(x, size):
  """(N, h, w, C) -> (N, H, W, C), `F.interpolate(mode='bilinear', align_corners=True)`.

  Gathers two source taps per axis (no dense interpolation matrix): W first,
  then H, i.e. l0h * (row h0) + l1h * (row h1), the order of torch's kernel.
  """
  h, w = size
  return _lerp_axis(_lerp_axis(x, 2, w), 1, h)


# ----------------------------------------------------------------------------- network


def _conv(params, name, x, stride=1):
  p = params[name]
  pad = p["w"].shape[0] // 2
  y = jax.lax.conv_general_dilated(
    x,
    p["w"],
    (stride, stride),
    ((pad, pad), (pad, pad)),
    dimension_numbers=("NHWC", "HWIO", "NHWC"),
    precision=jax.lax.Precision.HIGHEST,
  )
  return y + p["b"]


def _cbr(params, name, x, stride=1):
  """ConvBNReLU with the BatchNorm folded into the conv."""
  return jax.nn.relu(_conv(params, name, x, stride))


def _gap(x):
  return jnp.mean(x, axis=(1, 2), keepdims=True)


def _max_pool_3x3_s2(x):
  # Padding acts as -inf (torch MaxPool2d); the input is >= 0 after ReLU anyway.
  return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, 2, 2, 1), ((0, 0), (1, 1), (1, 1), (0, 0)))


def _basic_block(params, pre, x, stride):
  r = _cbr(params, f"{pre}.conv1", x, stride)
  r = _conv(params, f"{pre}.conv2", r)
  short = _conv(params, f"{pre}.downsample.0", x, stride) if f"{pre}.downsample.0" in params else x
  return jax.nn.relu(short + r)


def backbone(params, x):
  """ResNet-18 without fc -> (feat8 (N,H/8,W/8,128), feat16 (.., 256), feat32 (.., 512))."""
  x = _max_pool_3x3_s2(_cbr(params, "cp.resnet.conv1", x, 2))
  feats = []
  for i in range(1, 5):
    x = _basic_block(params, f"cp.resnet.layer{i}.0", x, 1 if i == 1 else 2)
    x = _basic_block(params, f"cp.resnet.layer{i}.1", x, 1)
    feats.append(x)
  return feats[1], feats[2], feats[3]


def _arm(params, pre, x):
  f = _cbr(params, f"{pre}.conv.conv", x)
  a = jax.nn.sigmoid(_conv(params, f"{pre}.conv_atten", _gap(f)))
  return f * a


def context_path(params, x):
  """-> (feat8, cp8, cp16, feat32): backbone stride-8 features, refined stride-8 / -16 features."""
  feat8, feat16, feat32 = backbone(params, x)
  h8, w8 = feat8.shape[1:3]
  h16, w16 = feat16.shape[1:3]
  h32, w32 = feat32.shape[1:3]
  avg = resize_nearest(_cbr(params, "cp.conv_avg.conv", _gap(feat32)), (h32, w32))
  s32 = _arm(params, "cp.arm32", feat32) + avg
  cp16 = _cbr(params, "cp.conv_head32.conv", resize_nearest(s32, (h16, w16)))  # conv after the resize
  s16 = _arm(params, "cp.arm16", feat16) + cp16
  cp8 = _cbr(params, "cp.conv_head16.conv", resize_nearest(s16, (h8, w8)))
  return feat8, cp8, cp16, feat32


def feature_fusion(params, feat8, cp8):
  f = _cbr(params, "ffm.convblk.conv", jnp.concatenate([feat8, cp8], axis=-1))
  a = jax.nn.sigmoid(_conv(params, "ffm.conv2", jax.nn.relu(_conv(params, "ffm.conv1", _gap(f)))))
  return f * a + f


def _head(params, pre, x):
  return _conv(params, f"{pre}.conv_out", _cbr(params, f"{pre}.conv.conv", x))


def check_input_size(h: int, w: int):
  if h % STRIDE or w % STRIDE or h <= 0 or w <= 0:
    raise ValueError(
      f"BiSeNet input size {h}x{w} must be a positive multiple of {STRIDE} (the parser's own input is 512x512)"
    )


def forward(params: Params, x, return_features: bool = False):
  """BiSeNet forward pass (eval mode).

  Args:
    params: folded params (module docstring).
    x: float32 (N, H, W, 3), ImageNet-normalised RGB; H, W multiples of 32.
    return_features: also return a dict of intermediates.

  Returns:
    (out, out16, out32): float32 (N, H, W, num_classes) logits of the main
    head and of the two auxiliary heads (`conv_out16` on the stride-8 context
    features, `conv_out32` on the stride-16 ones), each resized to (H, W) by
    align-corners bilinear interpolation. With return_features, a 4-tuple
    whose last item maps "feat8" (backbone layer2, H/8), "feat32" (layer4,
    H/32), "cp8", "cp16" (context path, H/8 and H/16), "fuse" (ffm output),
    "head_lowres", "head_lowres_out16" (H/8) and "head_lowres_out32" (H/16)
    to NHWC float32 arrays.
  """
  n, h, w, c = x.shape
  check_input_size(h, w)
  if c != 3:
    raise ValueError(f"BiSeNet expects RGB input (N, H, W, 3), got {x.shape}")
  feat8, cp8, cp16, feat32 = context_path(params, x)
  fuse = feature_fusion(params, feat8, cp8)
  lows = (_head(params, "conv_out", fuse), _head(params, "conv_out16", cp8), _head(params, "conv_out32", cp16))
  outs = tuple(resize_bilinear_align_corners(o, (h, w)) for o in lows)
  if not return_features:
    return outs
  feats = {
    "feat8": feat8,
    "feat32": feat32,
    "cp8": cp8,
    "cp16": cp16,
    "fuse": fuse,
    "head_lowres": lows[0],
    "head_lowres_out16": lows[1],
    "head_lowres_out32": lows[2],
  }
  return outs + (feats,)
