"""Pure-functional StyleGAN2 generator with the style vectors S as explicit inputs.

Parameters are stored raw, as both official codes store them (equalised
learning rate: the runtime gains are applied here), in NHWC/HWIO layout:

  params = {
    "mapping": {"fc": [{"w": (in, out), "b": (out,)}, ...],
                "embed": {"w": (c_dim, E), "b": (E,)}},          # conditional only
    "synthesis": {
      "const": (4, 4, C4),
      "layers": [  # one per StyleLayer, generator order
         {"affine_w": (w_dim, Cin), "affine_b": (Cin,),
          "weight": (k, k, Cin, Cout), "bias": (Cout,),
          "noise_strength": ()},                                  # conv layers only
         ...],
      "skips": [{"weight": (1, 1, Cin, Cout)}, ...]},             # resnet only, per block >= 8px
  }
  buffers = {"w_avg": (w_dim,), "noise": [(R, R) per conv layer]}

`Generator` bundles them with the static config as a pytree, so it can be passed
through jax.jit / grad / vmap.
"""

import math

import flax.struct
import jax
import jax.numpy as jnp

from ss_jax.stylegan2 import layers as synthesis_layers
from ss_jax.stylegan2 import ops
from ss_jax.stylegan2.ops import HIGHEST
from ss_jax.stylegan2.config import GeneratorConfig, style_layout

NOISE_MODES = ("const", "random", "none")


def init_params(cfg: GeneratorConfig, key):
  """Random parameters as the official constructors initialise them (+ N(0,1) noise buffers).

  Returns (params, buffers), float32.
  """
  keys = iter(jax.random.split(key, 4 * len(style_layout(cfg)) + cfg.mapping_layers + 16))
  normal = lambda shape: jax.random.normal(next(keys), shape, jnp.float32)
  dims = [cfg.z_dim + cfg.embed_dim] + [cfg.hidden] * (cfg.mapping_layers - 1) + [cfg.w_dim]
  mapping = {"fc": [{"w": normal((i, o)) / cfg.mapping_lr, "b": jnp.zeros((o,))} for i, o in zip(dims[:-1], dims[1:])]}
  if cfg.c_dim:
    mapping["embed"] = {"w": normal((cfg.c_dim, cfg.embed_dim)), "b": jnp.zeros((cfg.embed_dim,))}
  layers, noise = [], []
  for L in style_layout(cfg):
    k = 3 if L.kind == "conv" else 1
    p = {
      "affine_w": normal((cfg.w_dim, L.channels)),
      "affine_b": jnp.ones((L.channels,)),
      "weight": normal((k, k, L.channels, L.out_channels)),
      "bias": jnp.zeros((L.out_channels,)),
    }
    if L.kind == "conv":
      p["noise_strength"] = jnp.zeros(())
      noise.append(normal((L.resolution, L.resolution)))
    layers.append(p)
  synthesis = {"const": normal((4, 4, cfg.channels_at(4))), "layers": layers}
  if cfg.architecture == "resnet":
    synthesis["skips"] = [
      {"weight": normal((1, 1, cfg.channels_at(2 ** (k - 1)), cfg.channels_at(2**k)))}
      for k in range(3, cfg.log2_res + 1)
    ]
  params = {"mapping": mapping, "synthesis": synthesis}
  buffers = {"w_avg": jnp.zeros((cfg.w_dim,)), "noise": noise}
  return params, buffers


def mapping(cfg, params, z, c=None):
  """z (N, z_dim) [, c (N, c_dim)] -> w (N, w_dim), before truncation and broadcast."""
  parts = []
  if cfg.z_dim:
    parts.append(ops.normalize_2nd_moment(jnp.asarray(z, jnp.float32)))
  if cfg.c_dim:
    if c is None:
      raise ValueError(f"this generator is conditional (c_dim={cfg.c_dim}): pass c of shape (N, {cfg.c_dim})")
    c = jnp.asarray(c, jnp.float32)
    e = params["mapping"]["embed"]
    y = jnp.matmul(c, e["w"] * (1.0 / math.sqrt(cfg.c_dim)), precision=HIGHEST) + e["b"]
    parts.append(ops.normalize_2nd_moment(y))
  x = parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=1)
  lr = cfg.mapping_lr
  for fc in params["mapping"]["fc"]:
    gain = lr / math.sqrt(fc["w"].shape[0])
    x = ops.bias_act(jnp.matmul(x, fc["w"] * gain, precision=HIGHEST), fc["b"] * lr, "lrelu")
  return x


def truncate(cfg, ws, w_avg, psi, cutoff=None):
  """w_avg + psi (w - w_avg) on rows [:cutoff] of ws (N, num_ws, w_dim).

  NVIDIA evaluates it with torch.lerp (two formulas split at |psi| = 0.5),
  rosinality with the plain formula; both are reproduced for float32 parity.
  """
  psi = jnp.asarray(psi, jnp.float32)
  if cfg.flavour == "nvidia":
    t = jnp.where(jnp.abs(psi) < 0.5, w_avg + psi * (ws - w_avg), ws - (ws - w_avg) * (1 - psi))
  else:
    t = w_avg + psi * (ws - w_avg)
  if cutoff is None:
    return t
  rows = jnp.arange(ws.shape[1])[None, :, None] < cutoff
  return jnp.where(rows, t, ws)


def styles(cfg, params, ws):
  """ws (N, num_ws, w_dim) -> tuple of S blocks (N, C_l), generator order (affine outputs)."""
  ws = jnp.asarray(ws, jnp.float32)
  if ws.ndim != 3 or ws.shape[1:] != (cfg.num_ws, cfg.w_dim):
    raise ValueError(f"ws must have shape (N, {cfg.num_ws}, {cfg.w_dim}), got {ws.shape}")
  gain = 1.0 / math.sqrt(cfg.w_dim)
  out = []
  for L, p in zip(style_layout(cfg), params["synthesis"]["layers"]):
    out.append(jnp.matmul(ws[:, L.w_index], p["affine_w"] * gain, precision=HIGHEST) + p["affine_b"])
  return tuple(out)


def check_style_blocks(layout, s):
  """Validates a sequence of S blocks (each (N, C_l)) against a style layout; returns N."""
  if len(s) != len(layout):
    raise ValueError(f"expected {len(layout)} style blocks, got {len(s)}")
  n = None
  for L, x in zip(layout, s):
    if x.ndim != 2 or x.shape[1] != L.channels or (n is not None and x.shape[0] != n):
      raise ValueError(f"style block {L.index} ({L.name}) must have shape (N, {L.channels}), got {x.shape}")
    n = x.shape[0]
  return n


def synthesis(cfg, params, buffers, s, noise_mode="const", key=None, precision=HIGHEST):
  """S blocks -> image (N, H, W, img_channels) float32, NHWC, raw output (about [-1, 1]).

  Runs the per-layer steps of ss_jax.stylegan2.layers (the same steps the gradient maps use).

  Args:
    s: sequence of (N, C_l) style blocks in generator order (see style_layout).
    noise_mode: "const" (the checkpoint's stored noise), "random" (needs key), "none".
    precision: lax precision for convs/matmuls (HIGHEST for parity on GPU/TPU).
  """
  if noise_mode not in NOISE_MODES:
    raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
  if noise_mode == "random" and key is None:
    raise ValueError("noise_mode='random' needs a PRNG key")
  s = [jnp.asarray(x, jnp.float32) for x in s]
  n = check_style_blocks(style_layout(cfg), s)
  syn = params["synthesis"]
  state = synthesis_layers._const_state(syn, n, jnp.float32)
  conv_i = 0
  for L, p, sl in zip(style_layout(cfg), syn["layers"], s):
    noise = None
    if L.kind == "conv":
      if noise_mode == "const":
        noise = buffers["noise"][conv_i]
      elif noise_mode == "random":
        noise = jax.random.normal(jax.random.fold_in(key, conv_i), (n, L.resolution, L.resolution, 1))
      conv_i += 1
    state = synthesis_layers._step(cfg, L, p, syn, state, sl, noise, precision)
  return state[1]


@flax.struct.dataclass
class Generator:
  """A StyleGAN2 generator as a pytree: leaves are params and buffers, config is static.

  ws = g.mapping(z, c=None, psi=1.0)   # (N, z_dim) -> (N, num_ws, w_dim)
  s = g.styles(ws)                     # tuple of (N, C_l), generator order
  x = g.synthesis(s)                   # (N, H, W, img_channels), NHWC
  """

  params: dict
  buffers: dict
  config: GeneratorConfig = flax.struct.field(pytree_node=False)

  @classmethod
  def random(cls, cfg: GeneratorConfig, key=None):
    """A generator with freshly initialised random weights."""
    # One compiled program instead of hundreds of eagerly dispatched random ops.
    init = jax.jit(init_params, static_argnums=0)
    params, buffers = init(cfg, jax.random.PRNGKey(0) if key is None else key)
    return cls(params, buffers, cfg)

  @property
  def layout(self):
    return style_layout(self.config)

  @property
  def w_avg(self):
    return self.buffers["w_avg"]

  @property
  def num_style_channels(self):
    last = self.layout[-1]
    return last.offset + last.channels

  def mapping(self, z, c=None, psi=1.0, cutoff=None):
    """z (N, z_dim), c (N, c_dim) or None -> ws (N, num_ws, w_dim); psi truncates toward w_avg."""
    z = jnp.asarray(z, jnp.float32)
    if z.ndim != 2 or z.shape[1] != self.config.z_dim:
      raise ValueError(f"z must have shape (N, {self.config.z_dim}), got {z.shape}")
    w = mapping(self.config, self.params, z, c)
    ws = jnp.broadcast_to(w[:, None], (w.shape[0], self.config.num_ws, w.shape[1]))
    if isinstance(psi, (int, float)) and psi == 1.0:
      return ws
    return truncate(self.config, ws, self.buffers["w_avg"], psi, cutoff)

  def styles(self, ws):
    return styles(self.config, self.params, ws)

  def synthesis(self, s, noise_mode="const", key=None, precision=HIGHEST):
    return synthesis(self.config, self.params, self.buffers, s, noise_mode, key, precision)

  def __call__(self, z, c=None, psi=1.0, noise_mode="const", key=None):
    """z -> image, through mapping, styles and synthesis."""
    return self.synthesis(self.styles(self.mapping(z, c, psi)), noise_mode, key)


def flatten_styles(s):
  """Tuple of (N, C_l) -> (N, sum C_l) flat S."""
  return jnp.concatenate(list(s), axis=1)


def unflatten_styles(layout, flat):
  """(N, sum C_l) flat S -> tuple of (N, C_l) blocks following layout."""
  return tuple(flat[:, L.offset : L.offset + L.channels] for L in layout)


def config_f(resolution=1024, z_dim=512, w_dim=512, **kw):
  """Config of NVIDIA's config-f model at a given resolution (channel_base 32768, max 512)."""
  from ss_jax.stylegan2.config import nvidia_channels

  return GeneratorConfig(
    z_dim=z_dim, w_dim=w_dim, img_resolution=resolution, channels=nvidia_channels(resolution, 32768, 512), **kw
  )


__all__ = [
  "Generator",
  "GeneratorConfig",
  "init_params",
  "mapping",
  "styles",
  "synthesis",
  "truncate",
  "flatten_styles",
  "unflatten_styles",
  "config_f",
]
