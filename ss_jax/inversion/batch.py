"""Inverting image sets in resumable batches (one job shard per batch) and edit/comparison grids.

`make_job` + `run_job` drive `optimise.invert` over a folder of images (experiments/invert.py);
`edit_grid` renders channel edits of inverted styles, `comparison_grid` originals next to
reconstructions.
"""

import functools
import sys

import numpy as np

from ss_jax.runtime import fingerprints
from ss_jax.inversion.noise import with_noise
from ss_jax.inversion.codes import latent_spread
from ss_jax.inversion.optimise import DEFAULT_STEPS, invert
from ss_jax.runtime import jobs

JOB_NAME = "invert"


def batch_ranges(num_images, batch_size):
  """[(start, stop), ...] image index ranges, one per batch (= one job shard)."""
  bs = max(int(batch_size), 1)
  return [(a, min(a + bs, num_images)) for a in range(0, num_images, bs)]


def files_digest(paths):
  """sha1 hex of the names and bytes of files (guards a resumed job against changed images)."""
  import hashlib
  import pathlib

  h = hashlib.sha1()
  for p in paths:
    p = pathlib.Path(p)
    h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
  return h.hexdigest()


def make_job(workdir, g, names, digest, batch_size, settings):
  """ShardedJob workdir/invert/ with one shard per batch of `batch_size` images.

  names: (N,) image names; digest: e.g. files_digest of the files; settings: plain
  data fixing the results (space, steps, lr, losses, seed, ...). A rerun with other
  settings, images or generator is refused (jobs.SettingsMismatch).
  """
  spec = dict(
    settings,
    images=[str(x) for x in names],
    images_sha1=str(digest),
    model=fingerprints.model_fingerprint(g),
    batch_size=int(batch_size),
  )
  return jobs.ShardedJob(workdir, JOB_NAME, spec, len(batch_ranges(len(names), batch_size)))


def run_job(job, g, load, space, steps=DEFAULT_STEPS, encode=None, progress=None, finished=None, **invert_kwargs):
  """Inverts this process's missing batches of the job's images, one shard per batch.

  Args:
    job: from make_job.
    load: (start, stop) -> (stop - start, H, W, C) float32 targets in [-1, 1].
    encode: optional targets -> start code of `space` (encoder / hybrid modes).
    progress: optional callable(batch_index, num_batches, done_steps, steps, latest (b,)).
    finished: optional callable(batch_index, num_batches, losses {term: (b,)}) after each
      batch is written (its final losses, as stored and summarised at the end).
    **invert_kwargs: passed to `invert` (lr, losses, perceptual, optimize_noise,
      seed, spread, history_every, chunk_size, ...). image_ids are the global
      image indices, so the results do not depend on the batch size.

  Each shard holds code, s (flat S), reconstruction (uint8), history,
  loss_<term> and, with optimize_noise, noise_<k>. Returns the batches inverted.
  """
  from ss_jax.runtime import images as images_lib

  ranges = batch_ranges(len(job.spec["images"]), job.spec["batch_size"])
  pending = job.pending()
  if pending and steps > 0 and invert_kwargs.get("spread") is None:
    invert_kwargs["spread"] = latent_spread(g, mesh=invert_kwargs.get("mesh"))
  for i in pending:
    a, b = ranges[i]
    target = np.asarray(load(a, b), np.float32)
    init = None if encode is None else encode(target)
    report = None if progress is None else functools.partial(progress, i, len(ranges))
    res = invert(g, target, space, steps, init=init, image_ids=np.arange(a, b), progress=report, **invert_kwargs)
    arrays = {
      "code": res.code,
      "s": res.styles,
      "reconstruction": images_lib.to_uint8(res.images),
      "history": res.history,
      **{f"loss_{k}": v for k, v in res.losses.items()},
    }
    arrays.update({f"noise_{k}": v for k, v in enumerate(res.noise or [])})
    job.write(i, **arrays)
    if finished is not None:
      finished(i, len(ranges), res.losses)
  return len(pending)


def progress_lines(job, steps, stream=None):
  """(progress, finished) callbacks for run_job that print rate, ETA and losses.

  progress lines: steps done of this run's pending batches, rate and ETA measured after
  the first chunk (which includes compilation), and the optimisation loss of the latest
  recorded step (on the code with latent noise, so it differs from the final one);
  finished lines: each batch's final mean total loss, the value invert.json averages.
  """
  stream = stream or sys.stderr
  prog = jobs.Progress(max(len(job.pending()) * steps, 1), "inverting", "steps", interval=0, stream=stream)
  seen = {}

  def progress(i, num_batches, done, total, latest):
    prog.update(
      done - seen.get(i, 0), note=f"batch {i + 1}/{num_batches}, optimisation loss {float(np.mean(latest)):.5g}"
    )
    seen[i] = done

  def finished(i, num_batches, losses):
    print(
      f"batch {i + 1}/{num_batches} done: mean total loss {float(np.mean(losses['total'])):.5g} (final)",
      file=stream,
      flush=True,
    )

  return progress, finished


def edit_grid(g, styles, channels, alphas, std, noise=None, row_names=None, batch_size=8, pad=2, min_cell=0):
  """Edit grid of inverted images as (H', W', 3) uint8: columns = alphas, rows = channel x image.

  Like ss_jax.stylespace.manipulate.manipulation_grid, but renders each image with its own
  optimised noise maps when `noise` (list of (N, R, R)) is given. Rows are
  labelled 'L_C' or 'L_C name' with row_names (N,).
  """
  from ss_jax.runtime import images as images_lib
  from ss_jax.stylespace import channels as stylespace
  from ss_jax.stylespace import manipulate

  flat = np.asarray(manipulate.as_flat(g.layout, styles))
  idx = manipulate.resolve_channels(g.layout, channels)
  names = stylespace.names_of(g.layout, idx)
  rows, labels = [], []
  for i_c, name in zip(idx, names):
    if noise is None:
      x = manipulate.edited_images(g, flat, [i_c], alphas, std, batch_size)  # (A, N, H, W, C)
    else:
      x = np.concatenate(
        [
          manipulate.edited_images(with_noise(g, noise, i), flat[i : i + 1], [i_c], alphas, std, batch_size)
          for i in range(len(flat))
        ],
        axis=1,
      )
    rows.extend(np.swapaxes(images_lib.to_uint8(x), 0, 1))
    labels.extend([name] * len(flat) if row_names is None else [f"{name} {r}" for r in row_names])
  return manipulate.labeled_grid(
    np.stack(rows), labels, [manipulate.alpha_label(a) for a in np.ravel(alphas)], pad, min_cell
  )


def comparison_grid(originals, reconstructions, row_names=None, pad=2, min_cell=0):
  """(N, H, W, C) uint8 originals and reconstructions -> labelled (H', W', 3) uint8 grid, 2 columns."""
  from ss_jax.stylespace import manipulate

  cells = np.stack([np.asarray(originals, np.uint8), np.asarray(reconstructions, np.uint8)], axis=1)
  names = [str(r) for r in row_names] if row_names is not None else [str(i) for i in range(len(cells))]
  return manipulate.labeled_grid(cells, names, ["original", "reconstruction"], pad, min_cell)
