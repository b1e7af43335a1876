"""Pure-functional StyleGAN3 generator with the style vectors S as explicit inputs.

Parameters are stored raw, as the official code stores them (the runtime gains
are applied here), NHWC / HWIO:

  params = {
    "mapping": as ss_jax.stylegan2.generator (fc w (in, out), b; embed when conditional),
    "synthesis": {
      "input": {"affine_w": (w_dim, 4), "affine_b": (4,), "weight": (C0, C0)},  # weight: in x out
      "layers": [{"affine_w": (w_dim, Cin), "affine_b": (Cin,), "weight": (k, k, Cin, Cout),
                  "bias": (Cout,)}, ...]}}                                       # L0 ... toRGB
  buffers = {"w_avg": (w_dim,),
             "input": {"freqs": (C0, 2), "phases": (C0,), "transform": (3, 3)},
             "magnitude_ema": [() per layer], "up_filters": [(K,) per layer],
             "down_filters": [(K,) or (K, K) per layer]}   # (1,) = no filter (1 tap)

S (generator order, `style_layout`): the input affine's 4 values (r_c, r_s, t_x,
t_y), before the input normalises the rotation part; then every layer's affine
output (its input-channel count), for toRGB before its 1/sqrt(Cin) weight gain.
"""

import functools
import math

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from ss_jax.stylegan2.generator import Generator, check_style_blocks
from ss_jax.stylegan3 import ops
from ss_jax.stylegan3.config import StyleGAN3Config, layer_table, style_layout
from ss_jax.stylegan3.filters import layer_filters

HIGHEST = jax.lax.Precision.HIGHEST
NOISE_MODES = ("const", "random", "none")


def init_params(cfg: StyleGAN3Config, key):
  """Random parameters as the official constructors initialise them; returns (params, buffers) float32.

  Filters are designed from the layer table; magnitude_ema is 1 (its initial value).
  """
  inp, table = layer_table(cfg)
  keys = iter(jax.random.split(key, 4 * len(table) + cfg.mapping_layers + 8))
  normal = lambda shape: jax.random.normal(next(keys), shape, jnp.float32)
  dims = [cfg.z_dim + cfg.embed_dim] + [cfg.w_dim] * cfg.mapping_layers
  mapping = {
    "fc": [{"w": normal((i, o)) / cfg.mapping_lr, "b": np.zeros((o,), np.float32)} for i, o in zip(dims[:-1], dims[1:])]
  }
  if cfg.c_dim:
    mapping["embed"] = {"w": normal((cfg.c_dim, cfg.w_dim)), "b": np.zeros((cfg.w_dim,), np.float32)}
  freqs = normal((inp.channels, 2))  # uniform on a disc of radius bandwidth, as the official draw
  radii = jnp.sqrt(jnp.sum(jnp.square(freqs), axis=1, keepdims=True))
  freqs = freqs / (radii * jnp.exp(jnp.square(radii)) ** 0.25) * inp.bandwidth
  phases = jax.random.uniform(next(keys), (inp.channels,)) - 0.5
  syn_in = {
    "affine_w": np.zeros((cfg.w_dim, 4), np.float32),
    "affine_b": np.array([1, 0, 0, 0], np.float32),
    "weight": normal((inp.channels, inp.channels)),
  }
  layers, ups, downs = [], [], []
  for spec in table:
    k = spec.conv_kernel
    layers.append(
      {
        "affine_w": normal((cfg.w_dim, spec.in_channels)),
        "affine_b": np.ones((spec.in_channels,), np.float32),
        "weight": normal((k, k, spec.in_channels, spec.out_channels)),
        "bias": np.zeros((spec.out_channels,), np.float32),
      }
    )
    up, down = layer_filters(spec)
    ups.append(np.ones((1,), np.float32) if up is None else up)
    downs.append(np.ones((1,), np.float32) if down is None else down)
  params = {"mapping": mapping, "synthesis": {"input": syn_in, "layers": layers}}
  buffers = {
    "w_avg": np.zeros((cfg.w_dim,), np.float32),
    "input": {"freqs": freqs, "phases": phases, "transform": np.eye(3, dtype=np.float32)},
    "magnitude_ema": [np.ones((), np.float32) for _ in table],
    "up_filters": ups,
    "down_filters": downs,
  }
  return params, buffers


@functools.partial(jax.jit, static_argnums=0)
def styles(cfg, params, ws):
  """ws (N, num_ws, w_dim) -> tuple of S blocks (N, C_l) in generator order (affine outputs)."""
  gain = 1.0 / math.sqrt(cfg.w_dim)
  syn = params["synthesis"]
  affines = [syn["input"]] + list(syn["layers"])
  return tuple(
    jnp.matmul(ws[:, i], p["affine_w"] * gain, precision=HIGHEST) + p["affine_b"] for i, p in enumerate(affines)
  )


def input_layer(cfg, params, buffers, s_input, transform=None, precision=HIGHEST):
  """Fourier features (N, size, size, C0) from the input style (N, 4) and a 3x3 / (N,3,3) transform."""
  inp, _ = layer_table(cfg)
  b = buffers["input"]
  user = b["transform"] if transform is None else jnp.asarray(transform, jnp.float32)
  if user.shape not in ((3, 3), (s_input.shape[0], 3, 3)):
    raise ValueError(f"input_transform must have shape (3, 3) or (N, 3, 3), got {user.shape}")
  t = ops.input_transforms(s_input, user)
  return ops.fourier_features(
    t,
    b["freqs"],
    b["phases"],
    params["synthesis"]["input"]["weight"],
    inp.size,
    inp.sampling_rate,
    inp.bandwidth,
    precision,
  )


def layer(cfg, params, buffers, idx, x, s, precision=HIGHEST):
  """SynthesisLayer idx (0 = L0): x (N, in_size, in_size, Cin), s (N, Cin) -> (N, out, out, Cout)."""
  spec = layer_table(cfg)[1][idx]
  p = params["synthesis"]["layers"][idx]
  gain = jax.lax.rsqrt(jnp.asarray(buffers["magnitude_ema"][idx], jnp.float32))
  if spec.is_torgb:
    s = s * (1.0 / math.sqrt(spec.in_channels * spec.conv_kernel**2))
  x = ops.modulated_conv(x, p["weight"], s, gain, not spec.is_torgb, precision)
  return ops.filtered_lrelu(
    x, p["bias"], buffers["up_filters"][idx], buffers["down_filters"][idx], spec, cfg.conv_clamp
  )


@functools.partial(jax.jit, static_argnums=(0, 5))
def synthesis(cfg, params, buffers, s, input_transform=None, precision=HIGHEST):
  """S blocks -> image (N, R, R, img_channels) float32 NHWC, raw output (x output_scale, not clipped).

  Jitted (cfg and precision static): eagerly, the per-tap filter ops would be
  dispatched one by one; inside another jit it is inlined.
  """
  x = input_layer(cfg, params, buffers, s[0], input_transform, precision)
  for idx in range(cfg.num_layers + 1):
    x = layer(cfg, params, buffers, idx, x, s[idx + 1], precision)
  return x * cfg.output_scale if cfg.output_scale != 1 else x


@flax.struct.dataclass
class StyleGAN3Generator:
  """A StyleGAN3 generator as a pytree (params and buffers are leaves, the config is static).

  ws = g.mapping(z, c=None, psi=1.0)       # (N, z_dim) -> (N, num_ws, w_dim)
  s = g.styles(ws)                         # tuple of (N, C_l): input (4), L0 ... L{n-1}, toRGB
  x = g.synthesis(s, input_transform=None) # (N, R, R, img_channels), NHWC
  """

  params: dict
  buffers: dict
  config: StyleGAN3Config = flax.struct.field(pytree_node=False)

  @classmethod
  def random(cls, cfg: StyleGAN3Config, key=None):
    """A generator with freshly initialised random weights and designed filters."""
    init = jax.jit(init_params, static_argnums=0)  # one compiled program, not many eager ops
    params, buffers = init(cfg, jax.random.PRNGKey(0) if key is None else key)
    return cls(params, buffers, cfg)

  @property
  def layout(self):
    return style_layout(self.config)

  # The StyleGAN3 mapping network is StyleGAN2's: share its z -> ws code (and w_avg / channel count).
  w_avg = Generator.w_avg
  num_style_channels = Generator.num_style_channels
  mapping = Generator.mapping

  def styles(self, ws):
    """ws (N, num_ws, w_dim) -> tuple of S blocks (N, C_l), generator order."""
    ws = jnp.asarray(ws, jnp.float32)
    if ws.ndim != 3 or ws.shape[1:] != (self.config.num_ws, self.config.w_dim):
      raise ValueError(f"ws must have shape (N, {self.config.num_ws}, {self.config.w_dim}), got {ws.shape}")
    return styles(self.config, self.params, ws)

  def synthesis(self, s, noise_mode="const", key=None, precision=HIGHEST, input_transform=None):
    """S -> image. noise_mode/key are accepted for the StyleGAN2 signature and ignored (no noise)."""
    if noise_mode not in NOISE_MODES:
      raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
    del key
    s = tuple(jnp.asarray(x, jnp.float32) for x in s)
    check_style_blocks(style_layout(self.config), s)
    return synthesis(self.config, self.params, self.buffers, s, input_transform, precision)

  def __call__(self, z, c=None, psi=1.0, noise_mode="const", key=None, input_transform=None):
    """z -> image, through mapping, styles and synthesis."""
    return self.synthesis(self.styles(self.mapping(z, c, psi)), noise_mode, key, input_transform=input_transform)


def is_stylegan3(g):
  """True for a StyleGAN3Generator (or anything carrying a StyleGAN3 config)."""
  return getattr(getattr(g, "config", None), "family", None) == "stylegan3"


__all__ = ["StyleGAN3Generator", "init_params", "input_layer", "is_stylegan3", "layer", "styles", "synthesis"]
