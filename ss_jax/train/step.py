"""Training state and the jitted StyleGAN2 train step (D update, G update, EMA, lazy R1).

Losses and phases follow stylegan2-ada-pytorch's StyleGAN2Loss without
path-length regularisation, one Adam update per phase:

  Dmain: softplus(D(G(z))) + softplus(-D(x))
  Gmain: softplus(-D(G(z))), with style mixing and random noise (against the new D)
  Dreg:  every r1_interval steps, r1_interval * gamma/2 * |dD(x)/dx|^2 on the reals

Two jitted functions: the main step (Dmain, Gmain, G EMA) and the R1 step
(Dreg), which the host adds on due steps from its copy of the step counter (no
device->host sync, no lax.cond; the main step compiles once). The batch is
sharded over a 1-D ('data',) mesh and everything else is replicated; GSPMD
inserts the gradient all-reduces, so the same code runs on 1..N devices.
"""

import functools

import flax.struct
import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ss_jax.stylegan2 import generator as gen
from ss_jax.train import discriminator as disc
from ss_jax.train.configs import TrainConfig

DATA_AXIS = "data"
# XLA's RngBitGenerator: compiles ~10x faster than threefry on CPU (each threefry
# normal() costs seconds of XLA compile time there) and gives the same numbers
# under any sharding.
PRNG_IMPL = "rbg"
# XLA CPU options for tests and quick CPU runs: unoptimised LLVM code and the
# legacy elemental emitters compile the step ~7x faster (CPU only).
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False}


@flax.struct.dataclass
class TrainState:
  """Everything a resumed run needs (all leaves are arrays).

  step: int32 () steps completed; rng: uint32 (4,) raw PRNG_IMPL key data, split
  every step (raw so orbax stores it as a plain array);
  g_params / g_buffers: generator (see ss_jax.stylegan2.generator); g_ema: EMA of
  g_params; d_params: discriminator; g_opt / d_opt: optax Adam states of the
  flattened (ravel_pytree) params.
  """

  step: jax.Array
  rng: jax.Array
  g_params: dict
  g_buffers: dict
  g_ema: dict
  d_params: dict
  g_opt: optax.OptState
  d_opt: optax.OptState


def make_mesh(batch_size, devices=None):
  """1-D ('data',) mesh over the most devices (<= available) that divide batch_size."""
  devices = list(jax.devices() if devices is None else devices)
  n = max(k for k in range(1, len(devices) + 1) if batch_size % k == 0)
  return jax.make_mesh((n,), (DATA_AXIS,), axis_types=(jax.sharding.AxisType.Auto,), devices=devices[:n])


def optimizers(cfg: TrainConfig):
  """(G, D) optax Adam transforms; D's lr/betas get StyleGAN2's lazy-reg adjustment."""
  b1, b2 = cfg.betas
  g_tx = optax.adam(cfg.g_lr, b1=b1, b2=b2, eps=cfg.eps)
  mb = cfg.r1_interval / (cfg.r1_interval + 1) if cfg.lazy_reg_adjust else 1.0
  d_tx = optax.adam(cfg.d_lr * mb, b1=b1**mb, b2=b2**mb, eps=cfg.eps)
  return g_tx, d_tx


def init_state(cfg: TrainConfig) -> TrainState:
  """Fresh state from cfg.seed (official-style G init, N(0,1) raw D weights).

  Keys are PRNG_IMPL keys. Jit it (TrainStep.init does): one compile of a few
  dozen rbg draws instead of a slow threefry compile per parameter shape.
  """
  kg, kd, krng = jax.random.split(jax.random.key(cfg.seed, impl=PRNG_IMPL), 3)
  g_params, g_buffers = gen.init_params(cfg.generator, kg)
  d_params = disc.init_params(cfg.discriminator, kd)
  g_tx, d_tx = optimizers(cfg)
  return TrainState(
    step=jnp.zeros((), jnp.int32),
    rng=jax.random.key_data(krng),
    g_params=g_params,
    g_buffers=g_buffers,
    g_ema=jax.tree.map(jnp.copy, g_params),
    d_params=d_params,
    g_opt=g_tx.init(ravel_pytree(g_params)[0]),
    d_opt=d_tx.init(ravel_pytree(d_params)[0]),
  )


def _apply_flat(tx, grads, opt_state, params, ema=None, beta=None):
  """Adam step (and EMA) on the concatenated parameter vector.

  XLA on CPU emits one kernel per leaf and op for per-leaf updates (hundreds
  of kernels, each compiled separately); on one flat vector it is a few.
  Returns (params, opt_state, ema).
  """
  flat, unravel = ravel_pytree(params)
  updates, opt_state = tx.update(ravel_pytree(grads)[0], opt_state, flat)
  flat = flat + updates
  if ema is not None:
    ema_flat = ravel_pytree(ema)[0]
    ema = unravel(flat + (ema_flat - flat) * beta)
  return unravel(flat), opt_state, ema


def r1_due(cfg: TrainConfig, step: int) -> bool:
  """Lazy R1 runs after the main step of steps 0, r1_interval, 2 * r1_interval, ..."""
  return int(step) % cfg.r1_interval == 0


def ema_beta(cfg: TrainConfig, step):
  """stylegan2-ada's G EMA decay for the update after `step` steps: 0.5 ** (batch / ema_nimg)."""
  ema_nimg = cfg.ema_kimg * 1000.0
  if cfg.ema_rampup:
    ema_nimg = jnp.minimum(ema_nimg, jnp.asarray(step, jnp.float32) * cfg.batch_size * cfg.ema_rampup)
  return 0.5 ** (cfg.batch_size / jnp.maximum(ema_nimg, 1e-8))


def _noise_shapes(gcfg):
  return [(L.resolution, L.resolution) for L in gen.style_layout(gcfg) if L.kind == "conv"]


def generate_fakes(cfg: TrainConfig, g_params, g_buffers, key, n, sharding=None):
  """Training-time G(z): style mixing, per-sample random noise, default precision.

  Returns (n, R, R, img_channels) float32. With probability style_mixing_prob the
  whole batch switches from w(z1) to w(z2) at one crossover row drawn uniformly
  from [1, num_ws), as stylegan2-ada.

  All randomness comes from three draws (z pair, two uniforms, every noise map
  at once): on CPU each random draw costs seconds of XLA compile time. The
  noise is fed as per-sample "const" noise buffers through a vmap over the
  batch, which XLA runs as one batched computation, the same as
  noise_mode="random" in distribution.
  """
  gcfg = cfg.generator
  kz, ku, knoise = jax.random.split(key, 3)
  constrain = (lambda x: x) if sharding is None else (lambda x: jax.lax.with_sharding_constraint(x, sharding))
  z = jax.random.normal(kz, (2, n, gcfg.z_dim))
  ws = jnp.broadcast_to(gen.mapping(gcfg, g_params, constrain(z[0]))[:, None], (n, gcfg.num_ws, gcfg.w_dim))
  if cfg.style_mixing_prob > 0:
    w2 = gen.mapping(gcfg, g_params, constrain(z[1]))
    u = jax.random.uniform(ku, (2,))
    cutoff = 1 + jnp.floor(u[0] * (gcfg.num_ws - 1)).astype(jnp.int32)
    cutoff = jnp.where(u[1] < cfg.style_mixing_prob, cutoff, gcfg.num_ws)
    rows = jnp.arange(gcfg.num_ws)[None, :, None]
    ws = jnp.where(rows < cutoff, ws, w2[:, None])
  s = gen.styles(gcfg, g_params, ws)
  shapes = _noise_shapes(gcfg)
  flat = constrain(jax.random.normal(knoise, (n, sum(h * w for h, w in shapes))))
  noise, i = [], 0
  for h, w in shapes:
    noise.append(flat[:, i : i + h * w].reshape(n, h, w))
    i += h * w

  def one(s_i, noise_i):
    buffers = dict(g_buffers, noise=noise_i)
    return gen.synthesis(gcfg, g_params, buffers, [x[None] for x in s_i], noise_mode="const", precision=None)[0]

  return constrain(jax.vmap(one)(tuple(s), noise))


def _real_images(real_u8):
  """uint8 [0, 255] -> float32 [-1, 1]."""
  return real_u8.astype(jnp.float32) * (2.0 / 255.0) - 1.0


def _main_step(cfg: TrainConfig, sharding, state: TrainState, real_u8):
  """Dmain update, then Gmain update against the new D, then the G EMA."""
  g_tx, d_tx = optimizers(cfg)
  d_fn = functools.partial(disc.discriminator, cfg.discriminator)
  real = _real_images(real_u8)
  n = real.shape[0]
  rng, k_d, k_g = jax.random.split(jax.random.wrap_key_data(state.rng, impl=PRNG_IMPL), 3)

  # Fakes from the current G, no gradient into G.
  fake = jax.lax.stop_gradient(generate_fakes(cfg, state.g_params, state.g_buffers, k_d, n, sharding))

  def d_loss_fn(d_params):
    logits_fake = d_fn(d_params, fake)
    logits_real = d_fn(d_params, real)
    loss = jnp.mean(jax.nn.softplus(logits_fake)) + jnp.mean(jax.nn.softplus(-logits_real))
    return loss, dict(d_loss=loss, d_real=jnp.mean(logits_real), d_fake=jnp.mean(logits_fake))

  (_, metrics), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(state.d_params)
  d_params, d_opt, _ = _apply_flat(d_tx, d_grads, state.d_opt, state.d_params)

  def g_loss_fn(g_params):
    fake = generate_fakes(cfg, g_params, state.g_buffers, k_g, n, sharding)
    return jnp.mean(jax.nn.softplus(-d_fn(d_params, fake)))

  g_loss, g_grads = jax.value_and_grad(g_loss_fn)(state.g_params)
  g_params, g_opt, g_ema = _apply_flat(
    g_tx, g_grads, state.g_opt, state.g_params, state.g_ema, ema_beta(cfg, state.step)
  )
  new_state = state.replace(
    step=state.step + 1,
    rng=jax.random.key_data(rng),
    g_params=g_params,
    g_ema=g_ema,
    d_params=d_params,
    g_opt=g_opt,
    d_opt=d_opt,
  )
  return new_state, dict(metrics, g_loss=g_loss)


def r1_penalty(dcfg, d_params, real):
  """Mean over the batch of |d sum D(x) / dx|^2 summed over pixels, float32 ()."""
  grad_x = jax.grad(lambda x: jnp.sum(disc.discriminator(dcfg, d_params, x)))(real)
  return jnp.mean(jnp.sum(jnp.square(grad_x), axis=(1, 2, 3)))


def _r1_step(cfg: TrainConfig, state: TrainState, real_u8):
  """Dreg: one D update on r1_interval * gamma / 2 * R1 (lazy regularisation)."""
  _, d_tx = optimizers(cfg)
  real = _real_images(real_u8)

  def loss_fn(d_params):
    r1 = r1_penalty(cfg.discriminator, d_params, real)
    return r1 * (cfg.r1_gamma / 2 * cfg.r1_interval), r1

  (_, r1), d_grads = jax.value_and_grad(loss_fn, has_aux=True)(state.d_params)
  d_params, d_opt, _ = _apply_flat(d_tx, d_grads, state.d_opt, state.d_params)
  return state.replace(d_params=d_params, d_opt=d_opt), {"r1": r1}


class TrainStep:
  """Jitted training step on a mesh: `state, metrics = step(state, real_u8, host_step)`.

  real_u8: uint8 (batch, R, R, 3) host or device array (sharded over 'data' on
  entry). Runs the main step and, when r1_due(host_step), the R1 step on the
  same reals. metrics: dict of float32 scalars g_loss, d_loss, d_real, d_fake
  and, on R1 steps, r1 (mean per-image penalty). host_step is the caller's copy
  of state.step; without it state.step is read from the device (a sync).
  compiler_options go to XLA (FAST_COMPILE compiles ~7x faster on CPU and runs
  slower: for tests).
  """

  def __init__(self, cfg: TrainConfig, mesh, compiler_options=None):
    self.cfg = cfg
    self.mesh = mesh
    self.replicated = NamedSharding(mesh, P())
    self.data_sharding = NamedSharding(mesh, P(DATA_AXIS))
    shardings = dict(
      in_shardings=(self.replicated, self.data_sharding),
      out_shardings=(self.replicated, self.replicated),
      compiler_options=compiler_options,
    )
    self.main = jax.jit(functools.partial(_main_step, cfg, self.data_sharding), **shardings)
    self.r1 = jax.jit(functools.partial(_r1_step, cfg), **shardings)
    self._init = jax.jit(
      functools.partial(init_state, cfg), out_shardings=self.replicated, compiler_options=compiler_options
    )

  def init(self):
    """init_state(cfg), computed replicated on the mesh."""
    return self._init()

  def put_batch(self, real_u8):
    return jax.device_put(real_u8, self.data_sharding)

  def put_state(self, state):
    return jax.device_put(state, self.replicated)

  def __call__(self, state, real_u8, host_step=None):
    step = int(state.step) if host_step is None else host_step
    real = self.put_batch(real_u8)
    state, metrics = self.main(state, real)
    if r1_due(self.cfg, step):
      state, reg = self.r1(state, real)
      metrics = dict(metrics, **reg)
    return state, metrics


@functools.lru_cache(maxsize=16)
def _cached_train_step(cfg, mesh, compiler_options):
  return TrainStep(cfg, mesh, dict(compiler_options) if compiler_options else None)


def make_train_step(cfg: TrainConfig, mesh, compiler_options=None) -> TrainStep:
  """Cached per (config, mesh, options), so repeated runs in one process reuse compilations."""
  opts = tuple(sorted(compiler_options.items())) if compiler_options else None
  return _cached_train_step(cfg, mesh, opts)
