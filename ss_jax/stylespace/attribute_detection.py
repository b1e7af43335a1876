"""Checking attribute channels: detection accuracy against an independent bank, edit effects.

`attribute_channels` ranks channels by theta on a set of exemplars. This module checks
such a ranking the way the paper does (Wu et al. 2021, Sec. 5.2 / Fig. 8), with pure
functions on arrays:

* The bank of N samples (flat S (N, C), attribute logits (N, A)) is split once with a
  seed into three disjoint parts (`split_bank`): a small *eval* set of held-out images
  to edit, an exemplar *pool* and an independent *reference* bank.
* Reference channel: the top channel (by theta) of the `num_reference` strongest
  exemplars of the reference bank. Detection accuracy with k exemplars (`accuracy_curve`):
  the fraction of random k-subsets of the pool's `num_reference` strongest exemplars whose
  top channel equals the reference. The two exemplar sets share no sample, so the curve
  does not reach 1.0 by construction (the older `attribute_channels.resampling_curve`
  compares subsets with their own superset and does).
* Candidates: conv channels, optionally only the locally-active channels of the
  attribute's region (`verified_channels` reads a detect_local `verified.json`); the
  reference is then computed under the same restriction.
* Edits (`edit_metrics`): held-out images edited as s_c += alpha * dir * sigma_c,
  scored by the classifier: target logit change in units of the target's population
  std (signed towards the exemplars), decision flips (share of the images on the other
  side of the target's decision boundary that cross it), and, as a simple leak measure
  (not the paper's AD), the mean over images of the largest |change| of any other
  reliable attribute in its own std units ("max leak"), and of the mean over them.
* `single_channel_verdict`: our criterion (documented in the README) for "a single
  channel controls this attribute".

Nothing here knows the ToyFaces world: attribute names, regions and the reliable mask
come from the caller (a registered classifier, see ss_jax.dci.attribute_bank).
"""

import json
import pathlib
from typing import Mapping, Sequence

import numpy as np

from ss_jax.stylespace import attribute_channels as ac

DEFAULT_SIZES = (2, 3, 5, 10, 20, 30, 50, 100)
# Verdict thresholds: target change >= 1 population std, >= half of the images on the other
# side flip, and no other attribute moves by more than half the target's change on average.
MIN_TARGET_STD = 1.0
MIN_FLIP_RATE = 0.5
MAX_LEAK_RATIO = 0.5


def split_bank(num_samples: int, num_eval: int, seed: int = 0):
  """Disjoint (eval (num_eval,), pool, reference) row indices, each sorted, int64.

  A permutation from default_rng([seed, 17]); eval takes the first num_eval rows of it,
  the rest is halved (pool gets the extra row when odd).
  """
  if not 0 <= num_eval < num_samples - 3:
    raise ValueError(f"bank of {num_samples} samples too small for {num_eval} eval images plus two halves")
  perm = np.random.default_rng([int(seed), 17]).permutation(num_samples)
  rest = perm[num_eval:]
  half = (len(rest) + 1) // 2
  return np.sort(perm[:num_eval]), np.sort(rest[:half]), np.sort(rest[half:])


def strongest(logits_col, rows, k: int, largest: bool = True) -> np.ndarray:
  """The k rows (of `rows`) with the largest (smallest) logit, strongest first."""
  rows = np.asarray(rows, np.int64)
  if not 1 <= k <= len(rows):
    raise ValueError(f"need 1 <= k <= {len(rows)} exemplars, got {k}")
  col = np.asarray(logits_col)[rows]
  return rows[np.argsort(-col if largest else col, kind="stable")[:k]]


def accuracy_curve(pool_styles, reference_styles, mean, std, mask, sizes=DEFAULT_SIZES, num_draws=100, seed=0) -> dict:
  """Detection accuracy vs number of exemplars, against an independent reference set.

  Args:
    pool_styles: (P, C) flat S of the exemplar pool.
    reference_styles: (R, C) flat S of independent exemplars (no row shared with the pool).
    mean, std: (C,) population statistics.
    mask: (C,) bool candidate channels (attribute_channels.candidate_mask).
    sizes: subset sizes k, each in 2..P (larger ones are dropped).
    num_draws: random k-subsets per size, drawn with default_rng(seed).

  Returns:
    dict(sizes (K,), accuracy (K,) share of draws whose top channel == reference,
    reference int flat index, top (K, num_draws) int, pool_top int: top of the whole pool).
  """
  zp = ac.normalized_differences(pool_styles, mean, std)
  zr = ac.normalized_differences(reference_styles, mean, std)
  p = len(zp)
  sizes = [int(k) for k in sizes if 2 <= int(k) <= p]
  if not sizes or len(zr) < 2:
    raise ValueError(f"need >= 2 reference exemplars and sizes in 2..{p}")
  reference = int(ac.subset_top(zr, np.arange(len(zr))[None], mask)[0])
  rng = np.random.default_rng(seed)
  draw = lambda k: np.sort(np.argsort(rng.random((num_draws, p)), axis=1)[:, :k], axis=1)
  tops = np.stack([ac.subset_top(zp, draw(k), mask) for k in sizes])
  pool_top = int(ac.subset_top(zp, np.arange(p)[None], mask)[0])
  return {
    "sizes": np.array(sizes, np.int64),
    "accuracy": (tops == reference).mean(axis=1),
    "reference": reference,
    "top": tops,
    "pool_top": pool_top,
  }


def verified_channels(path, categories: Sequence[str]) -> tuple[list[str], str]:
  """Names of the locally-active channels of any of `categories` (sorted, unique), and their list key.

  path: a detect_local `verified.json`: {"categories": [{"category": "hair",
  "verified": [{"name": "6_113", ...}, ...]}, ...]}; a file without any "verified" list
  (detect_local's detections.json) is read from its "detected" lists instead, and the
  key returned says so. Categories absent from the file contribute nothing.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"verified channels file not found: {path}")
  d = json.loads(path.read_text())
  if not isinstance(d, dict) or not isinstance(d.get("categories"), list):
    raise ValueError(f"{path}: expected {{'categories': [{{'category': ..., 'verified': [...]}}]}}")
  key = "verified" if any("verified" in e for e in d["categories"]) else "detected"
  want, names = set(categories), set()
  for entry in d["categories"]:
    if entry.get("category") in want:
      names |= {str(v["name"]) for v in entry.get(key, [])}
  return sorted(names, key=lambda n: tuple(int(x) for x in n.split("_"))), key


# ----------------------------------------------------------------------------- edits


def edited_styles(s, channels, directions, alphas, std) -> np.ndarray:
  """s (n, C) -> (len(channels), len(alphas), n, C) float32: s_c += alpha * dir * std_c."""
  s = np.asarray(s, np.float32)
  out = np.broadcast_to(s, (len(channels), len(alphas)) + s.shape).copy()
  for i, (c, d) in enumerate(zip(channels, directions)):  # one column per (channel, alpha): no image loop
    out[i, :, :, c] += (np.asarray(alphas, np.float32) * np.float32(d * std[c]))[:, None]
  return out


def edit_metrics(base, edited, target: int, direction: float, logit_std, others) -> dict:
  """Scores of edits from classifier logits.

  Args:
    base: (n, A) logits of the unedited images.
    edited: (..., n, A) logits of the edited images (leading axes: channels, alphas, ...).
    target: the attribute's column.
    direction: +1 if the exemplars have high target logits, -1 if low.
    logit_std: (A,) population std of each logit (> 0).
    others: (A,) bool, attributes counted as leaks (reliable ones except the target).

  Returns:
    dict of (...) float64 arrays: target (mean signed change / std), flips (share of the
    images with direction * logit < 0 that end > 0; NaN if none), leak_max (mean over
    images of max over others |change| / std), leak_mean (the same with the mean over
    others), leak_attr (...) int: the other attribute with the largest mean |change|,
    leak_attr_std: that mean |change| / std.
  """
  base, edited = np.asarray(base, np.float64), np.asarray(edited, np.float64)
  sd = np.asarray(logit_std, np.float64)
  delta = (edited - base) / sd  # (..., n, A)
  others = np.asarray(others, bool).copy()
  others[target] = False
  side = direction * base[:, target] < 0
  crossed = direction * edited[..., target] > 0
  flips = (crossed & side).sum(-1) / side.sum() if side.any() else np.full(crossed.shape[:-1], np.nan)
  leak = np.abs(delta[..., others])
  per_attr = np.abs(delta).mean(-2)  # (..., A)
  per_attr[..., ~others] = -1.0
  worst = per_attr.argmax(-1)
  return {
    "target": direction * delta[..., target].mean(-1),
    "flips": flips,
    "leak_max": leak.max(-1).mean(-1) if others.any() else np.zeros(delta.shape[:-2]),
    "leak_mean": leak.mean(-1).mean(-1) if others.any() else np.zeros(delta.shape[:-2]),
    "leak_attr": worst,
    "leak_attr_std": np.take_along_axis(per_attr, worst[..., None], -1)[..., 0],
  }


def single_channel_verdict(
  metrics: Mapping[str, np.ndarray], min_target=MIN_TARGET_STD, min_flips=MIN_FLIP_RATE, max_leak_ratio=MAX_LEAK_RATIO
):
  """Best (channel index, alpha index) meeting the criterion, or None; from edit_metrics of (K, S).

  A (channel, strength) controls the attribute if target >= min_target, flips >= min_flips
  and leak_max <= max_leak_ratio * target; among those, the smallest leak_max / target wins.
  """
  t, f, lk = (np.asarray(metrics[k], np.float64) for k in ("target", "flips", "leak_max"))
  ok = (t >= min_target) & (np.nan_to_num(f, nan=0.0) >= min_flips) & (lk <= max_leak_ratio * t)
  if not ok.any():
    return None
  ratio = np.where(ok, lk / np.maximum(t, 1e-12), np.inf)
  i, j = np.unravel_index(int(np.argmin(ratio)), ratio.shape)
  return int(i), int(j)
