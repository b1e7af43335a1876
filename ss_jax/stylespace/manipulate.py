"""Channel edits in S: s_c <- s_c + alpha * sigma_c, rendered with the stored (const) noise.

As in the official Manipulator (EditOneC / MSCode): one or several channels are
moved by alpha population standard deviations, every other channel of every
layer is untouched, and the image is re-rendered from the edited S. A whole
alpha sweep is one jitted call (the alphas are folded into the batch).

Batch edits of many seeds are a resumable ShardedJob (`make_job`, `run_job`):
shards of `images_per_shard` seeds hold the uint8 edits of every channel group and
alpha; each process renders its own shards over the global device mesh
(ss_jax.runtime.distributed) and process 0 assembles the grid (`job_grid`).
"""

import hashlib
import json
import math
import re

import jax
import jax.numpy as jnp
import numpy as np

from ss_jax.runtime import fingerprints
from ss_jax.runtime import distributed, jobs
from ss_jax.stylegan2 import sampling
from ss_jax.stylespace import channels as stylespace
from ss_jax.runtime import images as images_lib
from ss_jax.stylegan2.generator import flatten_styles, unflatten_styles

DEFAULT_ALPHAS = (-10.0, -5.0, 0.0, 5.0, 10.0)
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def parse_alphas(spec):
  """'-10,-5,0,5,10' -> tuple of floats."""
  parts = [p.strip() for p in str(spec).split(",") if p.strip()]
  if not parts or not all(_NUMBER.match(p) for p in parts):
    raise ValueError(f"bad alphas {spec!r}: expected comma-separated numbers, e.g. '-10,-5,0,5,10'")
  return tuple(float(p) for p in parts)


def resolve_channels(layout, channels):
  """'6_202,9_11', a list of names or flat indices -> (K,) int64 flat indices, no repeats."""
  if isinstance(channels, str) or (len(channels) and isinstance(list(channels)[0], str)):
    idx = stylespace.parse_names(layout, channels)
  else:
    idx = np.asarray(channels, np.int64).ravel()
    if idx.size == 0:
      raise ValueError("no channels given")
    stylespace.to_layer_channel(layout, idx)  # range check
  uniq, counts = np.unique(idx, return_counts=True)
  if (counts > 1).any():
    raise ValueError(f"channel {stylespace.name_of(layout, uniq[counts > 1][0])} given more than once")
  return idx


def as_flat(layout, styles):
  """Flat S (C,) / (N, C) or a tuple of (N, C_l) blocks (as g.styles returns) -> (N, C) float32."""
  if isinstance(styles, tuple):
    styles = flatten_styles([jnp.asarray(s, jnp.float32) for s in styles])
  s = jnp.asarray(styles, jnp.float32)
  s = s[None] if s.ndim == 1 else s
  c = stylespace.num_channels(layout)
  if s.ndim != 2 or s.shape[1] != c:
    raise ValueError(f"styles must be flat S of shape (N, {c}) or a tuple of style blocks, got {s.shape}")
  return s


def direction(layout, channels, std):
  """(C,) float32 edit direction: sigma_c on the chosen channels, 0 elsewhere."""
  std = np.asarray(std, np.float64)
  c = stylespace.num_channels(layout)
  if std.shape != (c,):
    raise ValueError(f"std has shape {std.shape} but this model has {c} style channels")
  d = np.zeros(c, np.float32)
  idx = resolve_channels(layout, channels)
  d[idx] = std[idx]
  return d


def apply_edit(flat, d, alphas):
  """(N, C) styles, (C,) direction, (A,) alphas -> (A, N, C) edited styles s + alpha * d."""
  alphas = jnp.asarray(alphas, jnp.float32)
  return flat[None] + alphas[:, None, None] * jnp.asarray(d, jnp.float32)[None, None]


def _synth(g, flat):
  return g.synthesis(unflatten_styles(g.layout, flat), noise_mode="const")


@jax.jit
def _render(g, flat):
  return _synth(g, flat)


@jax.jit
def _render_edits(g, flat, d, alphas):
  """(N, C), (C,), (A,) -> (A, N, H, W, img_channels): the alpha sweep as one batch of A*N."""
  s = apply_edit(flat, d, alphas)
  a, n = s.shape[:2]
  img = _synth(g, s.reshape(a * n, -1))
  return img.reshape((a, n) + img.shape[1:])


def _chunks(flat, batch_size):
  """Yield (chunk, real_rows); chunks padded to batch_size when there is more than one (one compile)."""
  n = flat.shape[0]
  bs = max(int(batch_size), 1)
  for i in range(0, n, bs):
    x = flat[i : i + bs]
    k = x.shape[0]
    if n > bs and k < bs:
      x = jnp.concatenate([x, jnp.zeros((bs - k, x.shape[1]), x.dtype)])
    yield x, k


def render(g, styles, batch_size=8, as_numpy=True):
  """Unedited images from S: (N, H, W, img_channels) float32, raw output (about [-1, 1])."""
  flat = as_flat(g.layout, styles)
  out = [_render(g, x)[:k] for x, k in _chunks(flat, batch_size)]
  out = jnp.concatenate(out) if len(out) > 1 else out[0]
  return np.asarray(out) if as_numpy else out


def edited_images(g, styles, channels, alphas, std, batch_size=8):
  """Raw images with all `channels` moved together by each alpha (in units of sigma).

  Args:
    styles: flat S (N, C) / (C,) or a tuple of blocks, the images to edit.
    channels: 'L_C' names (comma string or list) or flat indices.
    alphas: (A,) edit strengths; std: (C,) population std.
    batch_size: images per call (each call renders A x batch_size images).

  Returns:
    (A, N, H, W, img_channels) float32 numpy, about [-1, 1].
  """
  flat = as_flat(g.layout, styles)
  d = jnp.asarray(direction(g.layout, channels, std))
  alphas = jnp.asarray(np.asarray(alphas, np.float32).ravel())
  if alphas.size == 0:
    raise ValueError("no alphas given")
  out = [np.asarray(_render_edits(g, x, d, alphas))[:, :k] for x, k in _chunks(flat, batch_size)]
  return np.concatenate(out, axis=1)


def _rgb(cells):
  c = cells.shape[-1]
  return np.repeat(cells, 3, axis=-1) if c == 1 else cells[..., :3] if c > 3 else cells


def labeled_grid(cells, row_labels, col_labels, pad=2, min_cell=0):
  """(R, K, H, W, C) uint8 cells -> (H', W', 3) uint8 grid with row labels left and column labels on top.

  min_cell: nearest-neighbour upscale so each cell is at least this wide (readable tiny models).
  """
  from PIL import Image, ImageDraw, ImageFont

  cells = _rgb(np.asarray(cells, np.uint8))
  r, k, h, w, _ = cells.shape
  f = max(1, -(-int(min_cell) // w)) if min_cell else 1
  if f > 1:
    cells = cells.repeat(f, axis=2).repeat(f, axis=3)
    h, w = h * f, w * f
  font = ImageFont.load_default()
  draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
  size = lambda t: draw.textbbox((0, 0), t, font=font)[2:]
  text_h = max(size(t)[1] for t in list(row_labels) + list(col_labels) + ["0"])
  left = max(size(t)[0] for t in row_labels) + 3 * pad + 4
  top = text_h + 3 * pad + 2
  canvas = np.full((top + r * (h + pad) + pad, left + k * (w + pad) + pad, 3), 255, np.uint8)
  for i in range(r):
    for j in range(k):
      y, x = top + pad + i * (h + pad), left + pad + j * (w + pad)
      canvas[y : y + h, x : x + w] = cells[i, j]
  img = Image.fromarray(canvas)
  draw = ImageDraw.Draw(img)
  for i, t in enumerate(row_labels):
    tw, th = size(t)
    draw.text((left - tw - 2 * pad, top + pad + i * (h + pad) + (h - th) // 2), t, fill="black", font=font)
  for j, t in enumerate(col_labels):
    tw, _ = size(t)
    draw.text((left + pad + j * (w + pad) + (w - tw) // 2, pad), t, fill="black", font=font)
  return np.asarray(img)


def alpha_label(a):
  return "0" if a == 0 else f"{a:+g}"


def manipulation_grid(g, styles, channels, alphas, std, joint=False, batch_size=8, pad=2, min_cell=0, progress=None):
  """Edit grid as (H', W', 3) uint8: columns = alphas, rows = channel x image.

  Each channel is edited on its own (one row per channel and image, labelled
  'L_C'); with joint=True all channels move together (rows labelled
  'L_C+L_C...'). Loops only over channels; each row set is one batched render.
  progress: optional object with update(n), called once per channel (row set).
  """
  idx = resolve_channels(g.layout, channels)
  names = stylespace.names_of(g.layout, idx)
  groups = [(list(idx), "+".join(names))] if joint else [([i], n) for i, n in zip(idx, names)]
  rows, labels = [], []
  for grp, label in groups:
    x = images_lib.to_uint8(edited_images(g, styles, grp, alphas, std, batch_size))  # (A, N, H, W, C)
    rows.extend(np.swapaxes(x, 0, 1))
    labels.extend([label] * x.shape[1])
    if progress is not None:
      progress.update(1)
  return labeled_grid(np.stack(rows), labels, [alpha_label(a) for a in np.ravel(alphas)], pad, min_cell)


# ----------------------------------------------------------------------------- batch edits as a job

DEFAULT_IMAGES_PER_SHARD = 16


def edit_groups(layout, channels, joint=False):
  """[(flat indices, row label), ...]: one group per channel, or one joint group 'L_C+L_C'."""
  idx = resolve_channels(layout, channels)
  names = stylespace.names_of(layout, idx)
  if joint:
    return [([int(i) for i in idx], "+".join(names))]
  return [([int(i)], n) for i, n in zip(idx, names)]


def _edit_rows(g, flat, d, alphas):
  """(B, C) styles, (C,) direction, (A,) alphas -> (B, A, H, W, img_channels) (a map_batches step).

  Rows stay the major axis (B, A), so the batch sharding carries through the reshapes.
  """
  s = flat[:, None] + alphas[None, :, None] * d[None, None]
  b, a = s.shape[:2]
  img = _synth(g, s.reshape(b * a, -1))
  return img.reshape((b, a) + img.shape[1:])


def make_job(
  workdir,
  g,
  seeds,
  channels,
  alphas,
  std,
  *,
  psi=0.7,
  class_idx=None,
  joint=False,
  images_per_shard=DEFAULT_IMAGES_PER_SHARD,
  extra_spec=None,
):
  """The ShardedJob of a batch edit under workdir/edits_<settings hash>/.

  Settings (seeds, channel groups, alphas, the sigma of every edited channel, psi,
  class rule, model fingerprint, images per shard) name the folder, so a rerun with
  the same settings resumes and other settings start a job of their own.
  """
  seeds = [int(v) for v in seeds]
  if not seeds:
    raise ValueError("no seeds given")
  alphas = [float(a) for a in np.ravel(alphas)]
  if not alphas:
    raise ValueError("no alphas given")
  if int(images_per_shard) < 1:
    raise ValueError(f"images_per_shard must be positive, got {images_per_shard}")
  d = direction(g.layout, channels, std)
  groups = edit_groups(g.layout, channels, joint)
  spec = {
    "kind": "manipulate",
    "model": fingerprints.model_fingerprint(g),
    "seeds": seeds,
    "alphas": alphas,
    "groups": [[list(i), label] for i, label in groups],
    "joint": bool(joint),
    "sigma": {str(i): float(d[i]) for grp, _ in groups for i in grp},
    "psi": float(psi),
    "class_idx": class_idx,
    "images_per_shard": int(images_per_shard),
    **(extra_spec or {}),
  }
  key = hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:10]
  return jobs.ShardedJob(workdir, f"edits_{key}", spec, math.ceil(len(seeds) / int(images_per_shard)))


def run_job(job, g, batch_size=8, mesh=None, progress=None):
  """Renders this process's missing shards: seeds (n,), images (n, G, A, H, W, C) uint8.

  Every process must call this (lock-step rounds on the global mesh, see
  ss_jax.runtime.distributed); call `distributed.wait_for_shards(job)` before `job_grid`.
  batch_size: images per step per process (each renders A of them).
  progress: optional object with update(n), called once per channel group and shard.
  Returns the number of images this process edited.
  """
  spec = job.spec
  seeds, per = spec["seeds"], spec["images_per_shard"]
  alphas = np.asarray(spec["alphas"], np.float32)
  mesh = distributed.auto_axes(mesh or distributed.default_mesh())
  g = distributed.replicate(g, mesh)
  c = stylespace.num_channels(g.layout)
  dirs = []
  for grp, _ in spec["groups"]:
    d = np.zeros(c, np.float32)
    d[grp] = [spec["sigma"][str(i)] for i in grp]
    dirs.append(d)
  done = 0
  for i in distributed.schedule(job.pending(), mesh):
    batch = seeds[i * per : (i + 1) * per] if i is not None else []
    flat = np.concatenate(
      [np.zeros((0, c), np.float32)]
      + list(sampling.iter_styles_from_seeds(g, batch, spec["psi"], batch_size, spec["class_idx"], mesh))
    )
    edits = []
    for d in dirs:
      x = [
        images_lib.to_uint8(o) for o in distributed.map_batches(_edit_rows, g, (flat,), (d, alphas), batch_size, mesh)
      ]
      edits.append(np.concatenate(x))
      if progress is not None and i is not None:
        progress.update(1)
    if i is None:
      continue
    job.write(i, seeds=np.asarray(batch, np.int64), images=np.stack(edits, axis=1))
    done += len(batch)
  return done


def job_grid(job, pad=2, min_cell=0):
  """(H', W', 3) uint8 grid of a finished job: rows = channel group x image, columns = alphas."""
  spec = job.spec
  parts = [job.read(i)["images"] for i in range(job.num_shards)]
  x = np.concatenate(parts)  # (N, G, A, H, W, C)
  n, ngroups = x.shape[:2]
  cells = np.swapaxes(x, 0, 1).reshape((ngroups * n,) + x.shape[2:])
  labels = [label for _, label in spec["groups"] for _ in range(n)]
  return labeled_grid(cells, labels, [alpha_label(a) for a in spec["alphas"]], pad, min_cell)
