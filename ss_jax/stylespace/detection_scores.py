"""Detection rules for locally-active channels: the paper's win fraction and the gradient-mass score.

* `official` (StyleSpace Sec. 4.1, `locally_active.select`): channel c wins category k in an
  image when its top-area overlap n / area**2 is the largest; c is detected for k when it wins
  k in more than `threshold` (0.5) of the images containing k, with a `margin` (0.25) over
  every other category. The discount rewards small, high-contrast regions: on ToyFaces an
  average channel wins "eye" in about a third of the images (see docs/verification.md).
* `mass`: the share of c's gradient-map mass that falls inside k,
      mass[c, k] = mean over images containing k of  sum_{cells in k} map_c / sum_cells map_c,
  an estimate of the share of the (linearised) pixel change inside k, compared with what an
  area-proportional (non-local) channel would put there, the mean area share a_k of k:
      excess[c, k] = (mass[c, k] - a_k) / (1 - a_k)       (0: no better than area, 1: all inside)
  c is detected for k when excess[c, k] >= `mass_threshold` (0.1). The normalisation makes one
  threshold usable for the background (a_k ~ 0.5) and the eyes (a_k ~ 0.01); a channel may pass
  for several categories.
* `union`: official or mass. The two find different channels (the official rule the small
  parts, the mass rule the large ones); verification by editing supplies the precision.

The default (union, 0.1, with confidence-bound verification) was chosen against the edit-based ground
truth of the shipped ToyFaces model on the even map positions and scored on the odd ones
(`benchmarks.bench_verification`, docs/verification/README.md); there is no second model to check it on.

Both rules read the sums of `detection_stats.DetectionStats` (defined there once, for stored and
streamed maps; `detection_stats.load` reads a stored job's, re-summing score shards written before
the mass sums existed): mass[c, k] is its `mean_mass_share()`, a_k its `mean_area_share()`.
"""

import numpy as np

SCORES = ("official", "mass", "union")
DEFAULT_SCORE = "union"
DEFAULT_MASS_THRESHOLD = 0.1  # chosen on half of the channels, see docs/verification/README.md


def mass_excess(mass, area):
  """(C, K) mean mass shares, (K,) mean area shares -> (C, K) (mass - area) / (1 - area)."""
  area = np.asarray(area, np.float64)[None]
  return (np.asarray(mass, np.float64) - area) / np.maximum(1 - area, 1e-9)


def select_mass(mass, area, target, mass_threshold=DEFAULT_MASS_THRESHOLD):
  """Channels detected for `target` by the mass rule.

  Args:
    mass: (C, K) mean mass shares; area: (K,) mean area shares.
  Returns:
    (positions (M,) sorted by excess descending, excess[:, target] (C,)).
  """
  ex = mass_excess(mass, area)[:, target]
  pos = np.flatnonzero(ex >= mass_threshold)
  return pos[np.argsort(-ex[pos], kind="stable")], ex


def detect(score, frac=None, mass=None, area=None, threshold=0.5, margin=0.25, mass_threshold=DEFAULT_MASS_THRESHOLD):
  """{category id: ranked (M,) positions} under rule `score` (official: frac; mass: mass + area; union: all).

  union ranks the official detections first, then the mass rule's other channels.
  """
  from ss_jax.stylespace import locally_active

  if score not in SCORES:
    raise ValueError(f"unknown score {score!r}; known: {', '.join(SCORES)}")
  out = {}
  k_all = (frac if frac is not None else mass).shape[1]
  for k in range(k_all):
    off = locally_active.select(frac, k, threshold, margin)[0] if score != "mass" else np.zeros(0, np.int64)
    ms = select_mass(mass, area, k, mass_threshold)[0] if score != "official" else np.zeros(0, np.int64)
    out[k] = np.concatenate([off, ms[~np.isin(ms, off)]]).astype(np.int64)
  return out


def precision_recall(claimed, truth):
  """(C,) bool claimed, (C,) bool truth -> (precision, recall, F1, #claimed, #true); NaN where undefined."""
  claimed, truth = np.asarray(claimed, bool), np.asarray(truth, bool)
  tp = int((claimed & truth).sum())
  p = tp / claimed.sum() if claimed.sum() else float("nan")
  r = tp / truth.sum() if truth.sum() else float("nan")
  f1 = (
    2 * p * r / (p + r)
    if claimed.sum() and truth.sum() and (p + r) > 0
    else (0.0 if claimed.sum() and truth.sum() else float("nan"))
  )
  return p, r, f1, int(claimed.sum()), int(truth.sum())
