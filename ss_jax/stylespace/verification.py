"""Verification of style channels by editing: does an edit change pixels mostly inside a region?

For a channel c (flat S index), held-out images i (seeds disjoint from the gradient maps'),
and strengths a in alphas (default +-10): s' = s + a * sigma_c * e_c, rendered with the
stored constant noise (`manipulate`). The unedited and the edited image are both quantised
to uint8 and labelled by the *same* segmenter, then merged into the analysis categories.
The region of category k for one edit is the union of the pixels labelled k before and
after (an edit that grows the hair stays inside "hair"). Per edit and category:

  l1_in[k]   = sum over region-k pixels of sum_RGB |after - before|   (in [-1, 1] units)
  vis_in[k]  = region-k pixels that change *visibly*: max_RGB |after - before| > visible
  l1_total, vis_total: the same over the whole image.

With the labels of the unedited image on both sides, l1_in / l1_total is exactly the ToyFaces edit
scorer's `toyfaces.evaluate.locality_shares` (tested); this module generalises it to any segmenter
and category table, regions before or after the edit, visible-pixel counts, and jitted batches.

Per channel and category (`summarize`), over the images that contain k before the edit,
both signs pooled per image:

  l1_share   = l1_in / l1_total            (share of the absolute change inside k)
  vis_share  = vis_in / vis_total          (share of the visibly changed pixels inside k;
                                            images without visible change count as 0)
  changed    = vis_total / (H * W)          (size of the change, fraction of the image)

each as mean, std and a normal 95% confidence half-width (1.96 std / sqrt(n)).

Rule (`verified_mask`, defaults documented in the README): c is *verified* for k when
vis_share - ci >= min_share (0.5: with 95% confidence most of the visible change lies inside k,
the ground truth's own threshold; `confident=False` compares the mean) and changed >=
min_changed (0.001 of the image, 4 px at 64 px: enough pixels to be seen).
The L1 share is reported next to it (a faint change spread over the whole image lowers it
without being seen). Sampling noise is handled by measuring more images, not by a margin
(`run_stages`): a channel whose 95% CI of vis_share still contains min_share after the first
seeds (`undecided`) is measured on the next held-out seeds too, and judged on all of them.
The measures cover every category at once, so a channel detected for one category can be verified
for another (`verified_detection.verify`, any_category): the detector nominates channels worth
editing, the edit decides where they act.

Store: a `jobs.ShardedJob` with ONE SHARD PER CONSIDERED CHANNEL (shard j = map position j,
i.e. flat index `considered[j]`), so any subset can be measured, a later run reuses what
exists (other detection thresholds need no new edits), and the oracle is the same job run
over every channel. Shard j holds l1_in (N, A, K) f32, vis_in (N, A, K) i32, l1_total (N, A)
f32, vis_total (N, A) i32, present (N, K) bool (category in the unedited image). Channels
are edited in groups, each group one batch of (channel x image) rows over the device mesh
(`distributed.map_batches`); processes take the requested shards round-robin.
"""

import concurrent.futures
import math

import jax
import jax.numpy as jnp
import numpy as np

from ss_jax.runtime import distributed, jobs
from ss_jax.stylespace import segmentation, channels as stylespace

VERIFY = "verify"
DEFAULT_ALPHAS = (-10.0, 10.0)
DEFAULT_VISIBLE = 0.1
DEFAULT_MIN_SHARE = 0.5  # the oracle's own rule (ground_truth): nothing tuned against it
DEFAULT_MIN_CHANGED = 0.001
DEFAULT_CONFIDENT = True  # verified when the lower end of the 95% CI reaches min_share (False: the mean)
DEFAULT_ANY_CATEGORY = True  # a detected channel is verified for every category its edits land in, not only its own
DEFAULT_SEEDS = "1000000-1000015"  # 16 held-out images (gradient maps use 0-999 by default)
DEFAULT_MORE_SEEDS = "1000016-1000063"  # 48 more, only for channels whose verdict is open after the 16
MEASURES = ("l1_share", "vis_share", "changed")

# ----------------------------------------------------------------------------- measures (jitted)


def _to_uint8(x):
  return jnp.clip(jnp.rint((x + 1.0) * 127.5), 0, 255).astype(jnp.uint8)


def _edit_rows(g, flat, chan, sigma, alphas):
  """(B, S) styles, (B,) channel, (B,) sigma, (A,) alphas -> (B, A, H, W, C) uint8 edited images."""
  from ss_jax.stylespace.manipulate import _synth

  onehot = jax.nn.one_hot(chan, flat.shape[1], dtype=flat.dtype) * sigma[:, None]
  s = flat[:, None] + alphas[None, :, None] * onehot[:, None]
  b, a = s.shape[:2]
  img = _synth(g, s.reshape(b * a, -1))
  return _to_uint8(img.reshape((b, a) + img.shape[1:]))


def _render_rows(g, flat):
  from ss_jax.stylespace.manipulate import _synth

  return _to_uint8(_synth(g, flat))


def edit_measures(before, cat_before, after, cat_after, num_categories, visible=DEFAULT_VISIBLE):
  """Where an edit changed the picture, per category.

  Args:
    before: (B, H, W, C) uint8 unedited images; cat_before: (B, H, W) int category ids.
    after: (B, A, H, W, C) uint8 edits; cat_after: (B, A, H, W) int category ids.
    num_categories: K. visible: max_RGB |delta| threshold in [-1, 1] units.
  Returns:
    dict of numpy arrays: l1_in (B, A, K) float32, vis_in (B, A, K) int32, l1_total (B, A)
    float32, vis_total (B, A) int32.
  """
  out = _measures(
    jnp.asarray(before),
    jnp.asarray(cat_before, jnp.int32),
    jnp.asarray(after),
    jnp.asarray(cat_after, jnp.int32),
    int(num_categories),
    float(visible),
  )
  return {k: np.asarray(v) for k, v in out.items()}


@jax.jit
def _measures_core(before, cat_before, after, cat_after, ks, visible):
  d = jnp.abs(after.astype(jnp.float32) - before[:, None].astype(jnp.float32)) / 127.5  # (B, A, H, W, C)
  l1 = d.sum(-1)
  vis = (d.max(-1) > visible).astype(jnp.float32)
  region = (cat_before[:, None, :, :, None] == ks) | (cat_after[..., None] == ks)  # (B, A, H, W, K)
  region = region.astype(jnp.float32)
  l1_in = jnp.einsum("bahw,bahwk->bak", l1, region)
  vis_in = jnp.einsum("bahw,bahwk->bak", vis, region)
  return {
    "l1_in": l1_in,
    "vis_in": jnp.rint(vis_in).astype(jnp.int32),
    "l1_total": l1.sum((2, 3)),
    "vis_total": jnp.rint(vis.sum((2, 3))).astype(jnp.int32),
  }


def _measures(before, cat_before, after, cat_after, k, visible):
  return _measures_core(before, cat_before, after, cat_after, jnp.arange(k), jnp.float32(visible))


def summarize(d, num_pixels):
  """Per-channel measures over images -> dict of (M, K) float64 arrays.

  Args:
    d: arrays of M channels stacked on axis 0: l1_in (M, N, A, K), vis_in (M, N, A, K),
      l1_total (M, N, A), vis_total (M, N, A), present (M, N, K) bool.
    num_pixels: H * W.
  Returns:
    {measure}_mean / _std / _ci (95% half-width) for measure in MEASURES, and n_images,
    each (M, K); images where the category is absent are left out.
  """
  l1_in, vis_in = np.asarray(d["l1_in"], np.float64), np.asarray(d["vis_in"], np.float64)
  l1_tot, vis_tot = np.asarray(d["l1_total"], np.float64), np.asarray(d["vis_total"], np.float64)
  present = np.asarray(d["present"], bool)  # (M, N, K)
  l1_tot_i, vis_tot_i = l1_tot.sum(2)[..., None], vis_tot.sum(2)[..., None]  # (M, N, 1)
  per = {
    "l1_share": np.divide(l1_in.sum(2), l1_tot_i, out=np.zeros(present.shape), where=l1_tot_i > 0),
    "vis_share": np.divide(vis_in.sum(2), vis_tot_i, out=np.zeros(present.shape), where=vis_tot_i > 0),
    "changed": np.broadcast_to(vis_tot.mean(2)[..., None] / num_pixels, present.shape),
  }
  n = present.sum(1).astype(np.float64)  # (M, K)
  out = {"n_images": n}
  for name, v in per.items():
    mean = np.divide((v * present).sum(1), n, out=np.zeros(n.shape), where=n > 0)
    var = np.divide(((v - mean[:, None]) ** 2 * present).sum(1), n, out=np.zeros(n.shape), where=n > 0)
    out[f"{name}_mean"], out[f"{name}_std"] = mean, np.sqrt(var)
    out[f"{name}_ci"] = 1.96 * np.sqrt(var) / np.sqrt(np.maximum(n, 1))
  return out


def verified_mask(summary, min_share=DEFAULT_MIN_SHARE, min_changed=DEFAULT_MIN_CHANGED, confident=False):
  """(M, K) bool: most of the visible change inside k, and enough pixels changed visibly.

  confident: the lower end of the 95% CI (mean - ci) must reach min_share, not only the mean.
  """
  share = summary["vis_share_mean"] - (summary["vis_share_ci"] if confident else 0.0)
  return (share >= min_share) & (summary["changed_mean"] >= min_changed) & (summary["n_images"] > 0)


def undecided(summary, min_share=DEFAULT_MIN_SHARE, min_changed=DEFAULT_MIN_CHANGED):
  """(M, K) bool: the verdict on k is open, i.e. the 95% CI of the mean visible share contains min_share
  (|mean - min_share| <= ci) for a channel that changes enough pixels (a smaller one is rejected anyway)."""
  open_ = np.abs(summary["vis_share_mean"] - min_share) <= summary["vis_share_ci"]
  return open_ & (summary["changed_mean"] >= min_changed) & (summary["n_images"] > 0)


def load_stages(stage_jobs, positions):
  """The shard arrays of `positions` over several jobs (same channels, disjoint seeds), concatenated along
  the image axis: dict of (M, N1 + N2 + ..., ...) arrays (`summarize`'s input)."""
  parts = [load(j, positions) for j in stage_jobs]
  return {key: np.concatenate([p[key] for p in parts], axis=1) for key in parts[0]}


def run_stages(
  stage_jobs,
  g,
  labels_fn,
  positions,
  wanted=None,
  min_share=DEFAULT_MIN_SHARE,
  min_changed=DEFAULT_MIN_CHANGED,
  rows_per_step=64,
  progress_fn=None,
):
  """Sequential measurement: every position on the first job's images; after each stage, the positions whose
  verdict is still open (`undecided` for a wanted category) also on the next job's images.

  Args:
    stage_jobs: verification jobs of the same channels on disjoint held-out seeds, in order.
    positions: (M,) map positions; wanted: (M, K) bool categories whose verdict matters (default all).
    progress_fn: stage index, number of positions -> Progress or None.
  Returns:
    (summary: `summarize` dict of (M, K) arrays, each position over all the images it was measured on;
     depth: (M,) int number of stages measured per position).
  """
  positions = np.asarray(positions, np.int64)
  depth = np.zeros(len(positions), np.int64)
  active = np.ones(len(positions), bool)
  summary, num_pixels = None, g.config.img_resolution**2
  for j, job in enumerate(stage_jobs):
    idx = np.flatnonzero(active)
    if not len(idx):
      break
    prog = progress_fn(j, len(idx)) if progress_fn else None
    run_job(job, g, labels_fn, positions[idx], rows_per_step, progress=prog)
    s = summarize(load_stages(stage_jobs[: j + 1], positions[idx]), num_pixels)
    if summary is None:
      summary = {key: np.zeros((len(positions),) + v.shape[1:], v.dtype) for key, v in s.items()}
    for key, v in s.items():
      summary[key][idx] = v
    depth[idx] = j + 1
    open_ = undecided(s, min_share, min_changed)
    active[:] = False
    active[idx] = (open_ if wanted is None else open_ & np.asarray(wanted, bool)[idx]).any(1)
  return summary, depth


# ----------------------------------------------------------------------------- the job


def make_job(
  workdir,
  g,
  considered,
  sigma,
  seeds,
  source,
  table,
  *,
  psi=0.7,
  class_idx=0,
  alphas=DEFAULT_ALPHAS,
  visible=DEFAULT_VISIBLE,
  forbidden_seeds=(),
  name=VERIFY,
):
  """The per-channel edit-measure job under workdir/name (one shard per considered channel).

  considered: (C,) flat S indices (shard j edits considered[j]); sigma: (S,) population std.
  forbidden_seeds: seeds the held-out images must not use (the gradient maps'); ValueError if shared.
  """
  from ss_jax.runtime import fingerprints

  seeds = [int(s) for s in seeds]
  if not seeds:
    raise ValueError("no held-out seeds given")
  shared = sorted(set(seeds) & set(int(s) for s in forbidden_seeds))
  if shared:
    raise ValueError(
      f"held-out seeds overlap the gradient-map seeds ({len(shared)} shared, first {shared[0]}); choose disjoint seeds"
    )
  alphas = [float(a) for a in np.ravel(alphas)]
  if not alphas or any(a == 0 for a in alphas):
    raise ValueError(f"alphas must be non-zero edit strengths, got {alphas}")
  if not 0 < float(visible) < 2:
    raise ValueError(f"visible threshold must be in (0, 2) ([-1, 1] units), got {visible}")
  considered = np.asarray(considered, np.int64)
  sigma = np.asarray(sigma, np.float64)
  if sigma.shape != (stylespace.num_channels(g.layout),):
    raise ValueError(f"sigma has shape {sigma.shape}, expected ({stylespace.num_channels(g.layout)},)")
  spec = {
    "kind": "verification",
    "model": fingerprints.model_fingerprint(g),
    "considered": considered.tolist(),
    "sigma": [round(float(sigma[c]), 8) for c in considered],
    "seeds": seeds,
    "psi": float(psi),
    "class_idx": int(class_idx),
    "alphas": alphas,
    "visible": float(visible),
    "labels": source,
    "table": table.to_dict(),
  }
  return jobs.ShardedJob(workdir, name, spec, len(considered))


def run_job(job, g, labels_fn, positions, rows_per_step=64, mesh=None, progress=None):
  """Measures the requested map positions that are not stored yet; returns how many this process did.

  labels_fn: (seeds, index, uint8 images (N, H, W, 3)) -> (N, H, W) parser labels (the same
    callable for unedited and edited images). positions: map positions (shards) wanted.
  Every process must call this with the same positions (lock-step rounds on the global mesh).
  """
  from ss_jax.stylegan2 import sampling as sampling_lib

  spec = job.spec
  table = segmentation.CategoryTable.from_json(spec["table"])
  k = table.num_categories
  mesh = distributed.auto_axes(mesh or distributed.default_mesh())
  mine = set(job.mine())
  todo = [int(p) for p in sorted(set(int(p) for p in positions)) if int(p) in mine and not job.done(int(p))]
  seeds = np.asarray(spec["seeds"], np.int64)
  n = len(seeds)
  flat = sampling_lib.styles_from_seeds(g, seeds, spec["psi"], 64, spec["class_idx"], mesh)
  before = np.concatenate(list(distributed.map_batches(_render_rows, g, (flat,), (), 64, mesh)))
  size = before.shape[1:3]

  def labels(u8, row_seeds):  # index -1: these images are not the analysed ones
    return segmentation.check_labels(labels_fn(row_seeds, np.full(len(u8), -1, np.int64), u8), table, size)

  cat_before = labels(before, seeds)
  present = np.stack([(cat_before == c).any((1, 2)) for c in range(k)], axis=1)
  alphas = np.asarray(spec["alphas"], np.float32)
  per_round = max(1, int(rows_per_step) // n)  # whole channels per step: no padded rows (48 images: 48, not 64)
  rounds = [todo[i : i + per_round] for i in range(0, len(todo), per_round)]
  rounds += [[]] * (distributed.agree_max(len(rounds), mesh) - len(rounds))
  considered = np.asarray(spec["considered"], np.int64)

  def finish(grp, after):  # the host side of one round: label the edits, measure, write its shards
    m = len(grp)
    after = np.concatenate(after)  # (m*n, A, H, W, C)
    a = after.shape[1]
    cat_after = labels(after.reshape((-1,) + after.shape[2:]), np.tile(np.repeat(seeds, a), m))
    cat_after = cat_after.reshape(after.shape[:4])
    meas = edit_measures(
      np.tile(before, (m, 1, 1, 1)), np.tile(cat_before, (m, 1, 1)), after, cat_after, k, spec["visible"]
    )
    for j, pos in enumerate(grp):
      sl = slice(j * n, (j + 1) * n)
      job.write(pos, present=present, **{key: v[sl].reshape((n, a) + v.shape[2:]) for key, v in meas.items()})
    return m

  # Pipelined: a round is labelled, measured and written on a helper thread while the next one renders, so
  # the two overlap (each alone leaves cores idle). The renders stay on this thread, in lock-step order.
  done, pending = 0, None
  with concurrent.futures.ThreadPoolExecutor(1) as pool:
    for grp in rounds:
      m = len(grp)
      chan = np.repeat(considered[grp], n).astype(np.int32)
      sig = np.repeat(np.asarray(spec["sigma"], np.float32)[grp], n)
      rows = np.tile(flat, (m, 1)) if m else np.zeros((0, flat.shape[1]), np.float32)
      after = list(distributed.map_batches(_edit_rows, g, (rows, chan, sig), (alphas,), per_round * n, mesh))
      done += _collect(pending, progress)
      pending = pool.submit(finish, grp, after) if m else None
    done += _collect(pending, progress)
  return done


def _collect(future, progress):
  """Waits for a round's host work (re-raising its error); -> channels written."""
  if future is None:
    return 0
  m = future.result()
  if progress is not None:
    progress.update(m)
  return m


def load(job, positions):
  """Stacked shard arrays of the given map positions (all must be done) -> dict of (M, ...) arrays."""
  missing = [int(p) for p in positions if not job.done(int(p))]
  if missing:
    raise jobs.ShardsMissing(f"{job.dir}: {len(missing)} channel(s) not measured yet (first position {missing[0]})")
  parts = [job.read(int(p)) for p in positions]
  keys = ("l1_in", "vis_in", "l1_total", "vis_total", "present")
  if not parts:
    return None
  return {key: np.stack([p[key] for p in parts]) for key in keys}


def sigma_from_gradient_maps(gm):
  """(S,) float64 std (ddof 0) of the styles stored with a gradient-map job (its own psi)."""
  s = np.concatenate([gm.read(i)["styles"] for i in range(gm.num_shards)]).astype(np.float64)
  return s.std(0)


def sigma_from_seeds(g, spec):
  """(S,) float64 std (ddof 0) of the styles of a gradient-map spec's seeds (psi, class), recomputed:
  the same styles as the stored ones (`sigma_from_gradient_maps`) for a streamed job, which keeps none."""
  from ss_jax.stylegan2 import sampling

  s = sampling.styles_from_seeds(g, spec["seeds"], spec["psi"], class_idx=int(spec["class_idx"]))
  return s.astype(np.float64).std(0)


def baseline_positions(layout, considered, positions, per_layer=4, seed=0):
  """Layer-matched random channels: per style layer holding any of `positions`, `per_layer` random
  map positions of that layer (without replacement, fixed seed) -> sorted (B,) int64."""
  layer = stylespace.layer_of_flat(layout)[np.asarray(considered, np.int64)]
  rng = np.random.RandomState(seed)
  out = []
  for L in sorted(set(layer[np.asarray(positions, np.int64)].tolist())):
    cand = np.flatnonzero(layer == L)
    out.extend(rng.choice(cand, min(per_layer, len(cand)), replace=False).tolist())
  return np.array(sorted(out), np.int64)


def num_rounds(num_positions, num_seeds, rows_per_step):
  return math.ceil(num_positions / max(1, rows_per_step // num_seeds))
