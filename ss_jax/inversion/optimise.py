"""Real-image inversion by optimisation into W, W+ or S (NVIDIA projector's recipe).

    res = inversion.invert(g, images, space="s", steps=1000)    # images (N, H, W, C) in [-1, 1]
    res.code      # w (N, w_dim) | ws (N, num_ws, w_dim) | flat S (N, C), by space
    res.styles    # flat S (N, C) for every space, ready for ss_jax.stylespace.manipulate
    res.images    # (N, H, W, C) reconstructions; res.losses["total"] (N,) final losses

The recipe follows the projector of stylegan2-ada-pytorch (formulas only):
  * Adam (betas 0.9, 0.999, eps 1e-8); with t = step / steps the learning rate is
      lr * min(1, t / 0.05) * (0.5 - 0.5 cos(pi * min(1, (1 - t) / 0.25)))
    (linear ramp-up over the first 5% of steps, cosine ramp-down over the last 25%).
  * During the first 75% of steps Gaussian noise of strength
      0.05 * sigma * max(0, 1 - t / 0.75)^2
    is added to the code before each forward pass (the gradient is applied to the
    clean code). sigma is the spread of the generator's codes (codes.latent_spread):
    for W / W+ the scalar sqrt(E |w - w_avg|^2), for S the per-channel population std.
  * Optionally the per-layer noise maps are optimised too, with the multi-scale
    regulariser `noise_regularizer` and renormalised to zero mean, unit variance
    after every step.

Conventions of this implementation:
  * Start: w_avg (W; W+ broadcast to every row), styles(w_avg) (S), or `init`.
  * S is optimised in units of its per-channel std: s = s_start + s_std * u with
    u starting at 0, so `lr` means "std per step" for every channel (channels of
    very different scales move alike); W / W+ are optimised directly as in NVIDIA's
    code. Channels with zero population std stay fixed.
  * Noise maps (when optimised) start from the checkpoint's stored const noise,
    per image, so zero steps reproduce g.synthesis(..., noise_mode="const").
  * Every image is optimised independently: the losses are summed over the batch
    and Adam is elementwise, and the latent noise of image i is drawn from
    fold_in(fold_in(key(seed), image_ids[i]), step). The result for an image
    depends only on (image, image_id, seed, settings), not on the other images,
    the batch size, the chunking or the number of devices (up to float rounding).
  * The batch is sharded over a 1-D device mesh (axis "data"; default: this
    process's devices), padded to a multiple of the device count; each device
    runs its slice under shard_map with no communication.
  * One jitted step function. On accelerators each chunk of steps is a
    lax.fori_loop; on CPU the step is called once per step from Python instead,
    because XLA:CPU runs the backward convolutions ~3x slower inside a device
    loop (measured: 0.33 vs 0.9 s per step, ToyFaces 64px, batch 8). `loop=`
    overrides the choice; the step index, schedule and results do not depend on
    it or on the chunking.
"""

import dataclasses
import functools
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ss_jax.inversion.codes import check_space, code_shape, code_to_styles, latent_spread, start_code
from ss_jax.inversion.noise import noise_regularizer, normalize_noise, start_noise
from ss_jax.runtime import distributed
from ss_jax.stylegan2.generator import unflatten_styles

# NVIDIA projector defaults.
DEFAULT_STEPS = 1000
DEFAULT_LR = 0.1
LR_RAMPUP = 0.05
LR_RAMPDOWN = 0.25
NOISE_INITIAL = 0.05
NOISE_RAMP = 0.75
ADAM_B1, ADAM_B2, ADAM_EPS = 0.9, 0.999, 1e-8


@dataclasses.dataclass(frozen=True)
class Losses:
  """Weights of the per-image loss terms (plain data).

  total_i = mse * mean((x_i - y_i)^2) + perceptual * perceptual(x_i, y_i)
            + noise_reg * noise_regularizer(noise maps of image i)
  mse is over pixels and channels in [-1, 1] units; noise_reg only counts when
  the noise maps are optimised (NVIDIA: 1e5).
  """

  mse: float = 1.0
  perceptual: float = 0.0
  noise_reg: float = 1e5

  def to_dict(self):
    return dataclasses.asdict(self)


@dataclasses.dataclass
class InversionResult:
  """Output of `invert` (numpy arrays, N = number of images).

  space: "w" | "wplus" | "s".
  code: w (N, w_dim) | ws (N, num_ws, w_dim) | flat S (N, C), float32.
  styles: flat S (N, C) float32 (code_to_styles of code).
  images: (N, H, W, img_channels) float32 reconstructions, about [-1, 1].
  losses: per-image final losses on the clean code, {"total", "mse", "perceptual",
    "noise_reg"} -> (N,) float32 (unweighted terms; total is the weighted sum).
  history: (N, K) float32 total loss at steps history_steps (before that step's
    update, on the noisy code, as the optimiser saw it).
  history_steps: (K,) int steps of history.
  noise: list of (N, R, R) float32 per conv layer when noise maps were optimised,
    else None (the images then use the checkpoint's const noise).
  image_ids: (N,) int ids that seeded each image's latent noise.
  """

  space: str
  code: np.ndarray
  styles: np.ndarray
  images: np.ndarray
  losses: dict
  history: np.ndarray
  history_steps: np.ndarray
  noise: Optional[list]
  image_ids: np.ndarray


def learning_rate(step, steps, lr=DEFAULT_LR, rampup=LR_RAMPUP, rampdown=LR_RAMPDOWN):
  """Learning rate at `step` of `steps` (0-based): linear ramp-up, cosine ramp-down. jnp scalar."""
  t = jnp.asarray(step, jnp.float32) / steps
  ramp = jnp.minimum(1.0, (1.0 - t) / rampdown)
  ramp = 0.5 - 0.5 * jnp.cos(ramp * jnp.pi)
  return lr * ramp * jnp.minimum(1.0, t / rampup)


def latent_noise_strength(step, steps, initial=NOISE_INITIAL, ramp=NOISE_RAMP):
  """Latent noise std at `step` in units of the code spread: initial * max(0, 1 - t / ramp)^2."""
  t = jnp.asarray(step, jnp.float32) / steps
  return initial * jnp.square(jnp.maximum(0.0, 1.0 - t / ramp))


def render(g, styles, noise=None):
  """Flat S (N, C) [, per-image noise maps list of (N, R, R)] -> (N, H, W, C) images (jittable).

  Without noise the checkpoint's const noise is used (as ss_jax.stylespace.manipulate does).
  """
  blocks = unflatten_styles(g.layout, jnp.asarray(styles, jnp.float32))
  if not noise:
    return g.synthesis(blocks, noise_mode="const")

  def one(s, maps):
    gi = g.replace(buffers=dict(g.buffers, noise=list(maps)))
    return gi.synthesis(tuple(b[None] for b in s), noise_mode="const")[0]

  return jax.vmap(one)(blocks, list(noise))


def _split_static(obj):
  """A pytree -> (array leaves, hashable description of everything else)."""
  if obj is None:
    return (), None
  leaves, treedef = jax.tree.flatten(obj)
  is_array = [isinstance(x, (jax.Array, np.ndarray)) for x in leaves]
  dynamic = tuple(x for x, a in zip(leaves, is_array) if a)
  static = (treedef, tuple(None if a else x for x, a in zip(leaves, is_array)))
  try:
    hash(static)
  except TypeError as e:
    raise TypeError(f"perceptual: non-array parts of the callable must be hashable ({e})") from e
  return dynamic, static


def _join_static(dynamic, static):
  if static is None:
    return None
  treedef, leaves = static
  it = iter(dynamic)
  return jax.tree.unflatten(treedef, [next(it) if x is None else x for x in leaves])


@dataclasses.dataclass(frozen=True)
class _Settings:
  space: str
  steps: int
  lr: float
  losses: Losses
  optimize_noise: bool
  history_every: int
  perceptual: Any  # _split_static description or None


def _per_image_losses(settings, g, perceptual, flat, noise, target):
  """-> (total (N,), parts dict of (N,), images)."""
  w = settings.losses
  x = render(g, flat, noise)
  n = x.shape[0]
  parts = {"mse": jnp.mean(jnp.square(x - target), axis=(1, 2, 3))}
  if perceptual is not None and w.perceptual:
    d = jnp.asarray(perceptual(x, target), jnp.float32)
    if d.shape != (n,):
      raise ValueError(f"perceptual(x, y) must return (N,) = ({n},) distances, got shape {d.shape}")
    parts["perceptual"] = d
  else:
    parts["perceptual"] = jnp.zeros((n,), jnp.float32)
  parts["noise_reg"] = noise_regularizer(noise) if noise else jnp.zeros((n,), jnp.float32)
  total = w.mse * parts["mse"] + w.perceptual * parts["perceptual"]
  if noise:
    total = total + w.noise_reg * parts["noise_reg"]
  return total, parts, x


def _optimizer():
  return optax.scale_by_adam(b1=ADAM_B1, b2=ADAM_B2, eps=ADAM_EPS)


def _specs(tree):
  """Batch-leading leaves split over 'data', scalars replicated."""
  return jax.tree.map(lambda x: P("data") if jnp.ndim(x) else P(), tree)


def _put(tree, mesh):
  return jax.tree.map(lambda x, p: jax.device_put(x, NamedSharding(mesh, p)), tree, _specs(tree))


@functools.lru_cache(maxsize=32)
def _compiled_steps(settings: _Settings, mesh):
  """Jitted (run_steps, run_step) for one setting and mesh.

  run_steps(g, ..., state, start, stop) runs steps [start, stop) as a fori_loop;
  run_step(g, ..., state, i) runs step i alone (same arithmetic, no device loop).
  Both run under shard_map: each device optimises its own slice of the batch with
  no communication at all (images are independent).
  """
  tx = _optimizer()

  def body(i, state, g, perceptual, target, ids, base, scale, sigma, key):
    """One Adam step of every image; state = dict(params=dict(u, noise), opt, hist)."""
    steps, every = settings.steps, settings.history_every
    params = state["params"]
    keys = jax.vmap(lambda k: jax.random.fold_in(jax.random.fold_in(key, k), i))(ids)
    eps = jax.vmap(lambda k: jax.random.normal(k, params["u"].shape[1:], jnp.float32))(keys)
    delta = latent_noise_strength(i, steps) * sigma * eps

    def loss_fn(params):
      flat = code_to_styles(g, settings.space, base + scale * (params["u"] + delta))
      total, _, _ = _per_image_losses(settings, g, perceptual, flat, params["noise"], target)
      return jnp.sum(total), total

    (_, per_image), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt = tx.update(grads, state["opt"], params)
    lr = learning_rate(i, steps, settings.lr)
    params = jax.tree.map(lambda p, u: p - lr * u, params, updates)
    params["noise"] = [normalize_noise(v) for v in params["noise"]]
    hist = state["hist"]
    col = jnp.minimum(i // every, hist.shape[1] - 1)
    hist = jnp.where(i % every == 0, hist.at[:, col].set(per_image), hist)
    return {"params": params, "opt": opt, "hist": hist}

  def local_steps(g, perc_leaves, target, ids, base, scale, sigma, key, state, start, stop):
    args = (g, _join_static(perc_leaves, settings.perceptual), target, ids, base, scale, sigma, key)
    return jax.lax.fori_loop(start, stop, lambda i, st: body(i, st, *args), state)

  def local_step(g, perc_leaves, target, ids, base, scale, sigma, key, state, i):
    return body(i, state, g, _join_static(perc_leaves, settings.perceptual), target, ids, base, scale, sigma, key)

  def sharded(local, num_scalars):
    def fn(g, perc_leaves, target, ids, base, scale, sigma, key, state, *scalars):
      batch, specs = P("data"), _specs(state)
      f = jax.shard_map(
        local,
        mesh=mesh,
        out_specs=specs,
        check_vma=False,
        in_specs=(P(), P(), batch, batch, batch, P(), P(), P(), specs) + (P(),) * num_scalars,
      )
      return f(g, perc_leaves, target, ids, base, scale, sigma, key, state, *scalars)

    return jax.jit(fn)

  return sharded(local_steps, 2), sharded(local_step, 1)


@functools.lru_cache(maxsize=32)
def _compiled_finish(settings: _Settings, mesh):
  """Jitted finish(g, ..., params): code, flat S, images and per-image losses of the clean code."""

  def local_finish(g, perc_leaves, target, base, scale, params):
    perceptual = _join_static(perc_leaves, settings.perceptual)
    code = base + scale * params["u"]
    flat = code_to_styles(g, settings.space, code)
    total, parts, x = _per_image_losses(settings, g, perceptual, flat, params["noise"], target)
    return {"code": code, "styles": flat, "images": x, "losses": dict(parts, total=total)}

  def finish(g, perc_leaves, target, base, scale, params):
    batch = P("data")
    fn = jax.shard_map(
      local_finish, mesh=mesh, out_specs=batch, check_vma=False, in_specs=(P(), P(), batch, batch, P(), _specs(params))
    )
    return fn(g, perc_leaves, target, base, scale, params)

  return jax.jit(finish)


def _as_images(g, images):
  x = np.asarray(images, np.float32)
  r, c = g.config.img_resolution, g.config.img_channels
  if x.ndim != 4 or x.shape[1:] != (r, r, c):
    raise ValueError(f"images must have shape (N, {r}, {r}, {c}) (NHWC, in [-1, 1]), got {np.shape(images)}")
  if len(x) == 0:
    raise ValueError("no images given")
  if not np.isfinite(x).all():
    raise ValueError("images contain NaN or inf")
  return x


def invert(
  g,
  images,
  space="s",
  steps=DEFAULT_STEPS,
  lr=DEFAULT_LR,
  losses=None,
  init=None,
  perceptual: Optional[Callable] = None,
  optimize_noise=False,
  seed=0,
  image_ids=None,
  spread=None,
  history_every=10,
  chunk_size=None,
  progress=None,
  mesh=None,
  loop="auto",
) -> InversionResult:
  """Optimises one code per image so that the generator reproduces it.

  Args:
    g: Generator.
    images: (N, H, W, img_channels) float32 targets in [-1, 1], NHWC (H = W = resolution).
    space: "w", "wplus" or "s".
    steps: optimisation steps (0: just render `init` or the start and report losses).
    lr: peak Adam learning rate (for S in units of each channel's std, see module doc).
    losses: Losses weights; default Losses(perceptual=1.0 if perceptual else 0.0).
      With losses.perceptual == 0 a given `perceptual` is never evaluated.
    init: optional start code of `space` (N, *code_shape(g, space)); flat S or a
      tuple of style blocks for "s" (e.g. an encoder's output: "hybrid" inversion).
    perceptual: optional callable (x, y) -> (N,) distances for images in [-1, 1],
      e.g. ss_jax.inversion.lpips.load_lpips("alex"). Its array leaves (if it is a pytree)
      are traced arguments; its other parts must be hashable (static).
    optimize_noise: also optimise per-image noise maps (regularised, renormalised).
    seed, image_ids: latent noise of image i comes from (seed, image_ids[i]);
      image_ids default to arange(N). Give global ids when inverting a data set in
      batches, so results do not depend on the batching.
    spread: `codes.latent_spread(g)` to reuse (computed when None and steps > 0).
    history_every: record the per-image loss every this many steps.
    chunk_size: steps per jitted call (None: all at once); progress is reported
      between chunks. Results do not depend on it.
    progress: optional callable(done_steps, steps, latest_losses (N,) numpy).
    mesh: 1-D mesh with axis "data" (default: `distributed.local_mesh()`, this process's devices).
    loop: "fori" (each chunk is one lax.fori_loop on the devices), "host" (the
      same jitted step called once per step from Python), or "auto": "host" on
      CPU devices, where XLA runs the backward convolutions several times slower
      inside a device loop, "fori" elsewhere. Both give the same results up to
      float rounding.

  Returns:
    InversionResult.
  """
  check_space(space)
  steps, history_every = int(steps), int(history_every)
  if steps < 0:
    raise ValueError(f"steps must be >= 0, got {steps}")
  if history_every < 1:
    raise ValueError(f"history_every must be >= 1, got {history_every}")
  if loop not in ("auto", "fori", "host"):
    raise ValueError(f"loop must be 'auto', 'fori' or 'host', got {loop!r}")
  if losses is None:
    losses = Losses(perceptual=1.0 if perceptual is not None else 0.0)
  if losses.perceptual and perceptual is None:
    raise ValueError(f"losses.perceptual={losses.perceptual} needs a perceptual callable")
  target = _as_images(g, images)
  n = len(target)
  ids = np.arange(n, dtype=np.int64) if image_ids is None else np.asarray(image_ids, np.int64).ravel()
  if ids.shape != (n,):
    raise ValueError(f"image_ids must have {n} entries, got {ids.shape}")
  if (ids < 0).any() or (ids >= 2**31).any():
    raise ValueError("image_ids must be in [0, 2^31)")
  if init is None:
    base = start_code(g, space, n)
  else:
    base = np.asarray(code_to_styles(g, space, init) if space == "s" else init, np.float32)
    if base.shape != (n,) + code_shape(g, space):
      want = ", ".join(map(str, (n,) + code_shape(g, space)))
      raise ValueError(f"init must be a {space} code of shape ({want}), got {base.shape}")
  mesh = mesh or distributed.local_mesh()
  if steps > 0 and spread is None:
    spread = latent_spread(g, mesh=mesh)
  if space == "s":
    s_std = np.ones(g.num_style_channels) if spread is None else np.asarray(spread["s_std"])
    if s_std.shape != (g.num_style_channels,):
      raise ValueError(f"spread['s_std'] has shape {s_std.shape}, this model has {g.num_style_channels} channels")
    scale, sigma = s_std.astype(np.float32), np.float32(1.0)
  else:
    scale, sigma = np.float32(1.0), np.float32(1.0 if spread is None else spread["w_std"])

  npad = -(-n // mesh.devices.size) * mesh.devices.size
  perc_leaves, perc_static = _split_static(perceptual if losses.perceptual else None)
  settings = _Settings(space, steps, float(lr), losses, bool(optimize_noise), history_every, perc_static)
  run_steps, run_step = _compiled_steps(settings, mesh)
  if loop == "auto":
    loop = "host" if mesh.devices.flat[0].platform == "cpu" else "fori"
  finish = _compiled_finish(dataclasses.replace(settings, steps=0, lr=0.0, history_every=1), mesh)

  num_hist = -(-steps // history_every)
  params = {
    "u": np.zeros((npad,) + code_shape(g, space), np.float32),
    "noise": start_noise(g, npad) if optimize_noise else [],
  }
  state = {"params": params, "opt": _optimizer().init(params), "hist": np.zeros((npad, max(num_hist, 1)), np.float32)}
  state = _put(jax.tree.map(np.asarray, state), mesh)
  gr = jax.device_put(g, NamedSharding(mesh, P()))
  perc_leaves = jax.device_put(perc_leaves, NamedSharding(mesh, P()))
  target_d, ids_d, base_d = _put(
    tuple(distributed.pad_rows(a, npad) for a in (target, ids.astype(np.int32), base)), mesh
  )
  scale_d, sigma_d = jax.device_put((scale, sigma), NamedSharding(mesh, P()))
  key = jax.device_put(jax.random.PRNGKey(seed), NamedSharding(mesh, P()))

  chunk = steps if not chunk_size else max(1, int(chunk_size))
  done = 0
  while done < steps:
    stop = min(done + chunk, steps)
    args = (gr, perc_leaves, target_d, ids_d, base_d, scale_d, sigma_d, key)
    if loop == "fori":
      state = run_steps(*args, state, np.int32(done), np.int32(stop))
    else:
      for i in range(done, stop):
        state = run_step(*args, state, np.int32(i))
    if progress is not None:
      col = (stop - 1) // history_every
      progress(stop, steps, np.asarray(state["hist"][:n, col]))
    done = stop

  out = jax.tree.map(lambda x: np.asarray(x)[:n], finish(gr, perc_leaves, target_d, base_d, scale_d, state["params"]))
  noise = [np.asarray(v)[:n] for v in state["params"]["noise"]] if optimize_noise else None
  return InversionResult(
    space=space,
    code=out["code"],
    styles=out["styles"],
    images=out["images"],
    losses={k: np.asarray(v, np.float32) for k, v in out["losses"].items()},
    history=np.asarray(state["hist"])[:n, :num_hist],
    history_steps=np.arange(0, steps, history_every),
    noise=noise,
    image_ids=ids,
  )
