"""Scoring channel edits and generated-image quality on ToyFaces.

Pure numpy (float64 internally). The inputs come from the helper models in
`models`: part labels from the segmenter (on the *unedited* images) and
attribute logits / features from the classifier.

* `locality`: where in the picture an edit changed pixels, as shares of the
  total absolute change per FFHQ category (parts merged by
  `parts.CATEGORY_OF_PART`).
* `attribute_dependency`: change of every attribute logit in units of its
  population std (the StyleSpace paper's attribute dependency, AD).
* `frechet_distance`: Fréchet distance between two feature sets (FID-style,
  on the classifier's features).
* Distribution summaries (part areas, attribute positive rates) comparing
  two image sets, e.g. renders vs generator samples.
"""

from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from ss_jax.toyfaces import attributes as attr_lib
from ss_jax.toyfaces import parts as parts_lib

# ----------------------------------------------------------------------------- categories


def _category_lut(categories: Mapping[str, str] | None, part_names: Sequence[str]):
  """-> (category names [K], int64 lut [num_parts]: part -> category)."""
  categories = dict(parts_lib.CATEGORY_OF_PART if categories is None else categories)
  missing = [p for p in part_names if p not in categories]
  if missing:
    raise ValueError(f"no category given for parts {missing}")
  used = set(categories[p] for p in part_names)
  # Known FFHQ categories in their canonical order, then any others.
  names = [c for c in parts_lib.CATEGORIES if c in used]
  names += sorted(used - set(names))
  index = {c: i for i, c in enumerate(names)}
  lut = np.array([index[categories[p]] for p in part_names], np.int64)
  return tuple(names), lut


# ----------------------------------------------------------------------------- locality


def locality_shares(
  before: np.ndarray,
  after: np.ndarray,
  labels: np.ndarray,
  categories: Mapping[str, str] | None = None,
  part_names: Sequence[str] = parts_lib.PART_NAMES,
):
  """Per-image share of the absolute pixel change inside each category.

  Args:
    before: images [N, H, W, C] (float in [-1, 1] or uint8) before the edit.
    after: the edited images, same shape and scale.
    labels: int [N, H, W] part labels of the *unedited* images.
    categories: part name -> category name (default `CATEGORY_OF_PART`).
    part_names: names of the label values (default `PART_NAMES`).

  Returns:
    (category names [K], float64 shares [N, K], float64 total change [N]).
    Each row sums to 1, or is all 0 for an image the edit did not change.
  """
  before = np.asarray(before, np.float64)
  after = np.asarray(after, np.float64)
  labels = np.asarray(labels)
  if before.shape != after.shape or before.ndim != 4:
    raise ValueError(f"before/after must be equal [N, H, W, C], got {before.shape} and {after.shape}")
  if labels.shape != before.shape[:3]:
    raise ValueError(f"labels {labels.shape} do not match images {before.shape[:3]}")
  names, lut = _category_lut(categories, part_names)
  delta = np.abs(after - before).sum(-1)  # [N, H, W], summed over colour.
  cat = lut[labels.astype(np.int64)]
  n, k = len(delta), len(names)
  sums = np.zeros((n, k))
  np.add.at(sums, (np.repeat(np.arange(n), cat[0].size), cat.ravel()), delta.ravel())
  total = sums.sum(1)
  shares = np.divide(sums, total[:, None], out=np.zeros_like(sums), where=total[:, None] > 0)
  return names, shares, total


def locality(
  before: np.ndarray,
  after: np.ndarray,
  labels: np.ndarray,
  categories: Mapping[str, str] | None = None,
  part_names: Sequence[str] = parts_lib.PART_NAMES,
) -> dict[str, float]:
  """Share of the total |after - before| (over the batch) in each category.

  Pooled over the batch: sum of the change inside category c over all
  images / sum of all change. See `locality_shares` for the arguments and a
  per-image version.

  Returns:
    {category: share} in `parts.CATEGORIES` order; the shares sum to 1 (all
    0 when nothing changed).
  """
  names, shares, total = locality_shares(before, after, labels, categories, part_names)
  pooled = (shares * total[:, None]).sum(0)
  s = pooled.sum()
  pooled = pooled / s if s > 0 else pooled
  return {c: float(v) for c, v in zip(names, pooled)}


# ----------------------------------------------------------------------------- attribute dependency


def population_std(logits: np.ndarray, eps: float = 1e-6) -> np.ndarray:
  """float64 [A] std of the logits [N, A] over a population (floored at eps)."""
  return np.maximum(np.asarray(logits, np.float64).std(0), eps)


def population_logit_std(
  classify: Callable[[np.ndarray], np.ndarray], image_batches: Iterable[np.ndarray]
) -> np.ndarray:
  """Logit std over a generator's samples.

  Args:
    classify: images [B, H, W, 3] in [-1, 1] -> logits [B, A] (e.g.
      `models.load_classifier()`).
    image_batches: iterable of image batches, e.g. generator outputs for
      seeds 0..N-1 in chunks.

  Returns:
    float64 [A].
  """
  logits = np.concatenate([np.asarray(classify(x)) for x in image_batches])
  return population_std(logits)


def attribute_dependency(
  logits_before: np.ndarray, logits_after: np.ndarray, population_std_: np.ndarray
) -> np.ndarray:
  """Signed change of each attribute logit in population-std units.

  Args:
    logits_before: float [N, A] classifier logits of the unedited images.
    logits_after: float [N, A] logits of the edited images.
    population_std_: float [A] (`population_std` / `population_logit_std`).

  Returns:
    float64 [N, A] (logits_after - logits_before) / population_std_.
  """
  d = np.asarray(logits_after, np.float64) - np.asarray(logits_before, np.float64)
  return d / np.asarray(population_std_, np.float64)


def mean_attribute_dependency(dependency: np.ndarray, target: int | None = None) -> np.ndarray:
  """Mean |AD| over images per attribute, float64 [A]; with `target` the
  mean over the other attributes (a scalar), i.e. entanglement of an edit
  meant to change attribute `target`."""
  m = np.abs(np.asarray(dependency, np.float64)).mean(0)
  if target is None:
    return m
  return np.delete(m, target).mean()


# ----------------------------------------------------------------------------- Fréchet distance


def sqrtm_psd(a: np.ndarray) -> np.ndarray:
  """Symmetric square root of a symmetric PSD matrix [D, D] (float64).

  Eigenvalues below 0 (round-off) are clipped.
  """
  a = np.asarray(a, np.float64)
  w, v = np.linalg.eigh(0.5 * (a + a.T))
  return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance_from_stats(mu1, cov1, mu2, cov2) -> float:
  """||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)).

  tr((S1 S2)^(1/2)) = tr((S1^(1/2) S2 S1^(1/2))^(1/2)): S1 S2 is similar to
  the symmetric PSD S1^(1/2) S2 S1^(1/2), so the trace is the sum of square
  roots of that matrix's eigenvalues (no general sqrtm, no complex parts).
  """
  mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
  cov1, cov2 = np.asarray(cov1, np.float64), np.asarray(cov2, np.float64)
  s1 = sqrtm_psd(cov1)
  m = s1 @ cov2 @ s1
  eig = np.linalg.eigvalsh(0.5 * (m + m.T))
  tr_cross = np.sqrt(np.clip(eig, 0.0, None)).sum()
  d = np.sum((mu1 - mu2) ** 2) + np.trace(cov1) + np.trace(cov2) - 2 * tr_cross
  return float(max(d, 0.0))  # Round-off can leave a tiny negative.


def feature_stats(feats: np.ndarray):
  """float [N, F] -> (mean float64 [F], covariance float64 [F, F], ddof=1)."""
  f = np.asarray(feats, np.float64)
  if f.ndim != 2 or f.shape[0] < 2:
    raise ValueError(f"need features [N >= 2, F], got {f.shape}")
  return f.mean(0), np.cov(f, rowvar=False)


def frechet_distance(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
  """Fréchet distance between Gaussians fitted to two feature sets.

  Args:
    feats_a: float [Na, F], e.g. `classifier.features(renders)`.
    feats_b: float [Nb, F], e.g. `classifier.features(generated)`.
  """
  return frechet_distance_from_stats(*feature_stats(feats_a), *feature_stats(feats_b))


# ----------------------------------------------------------------------------- distribution summaries


def part_area_fractions(
  labels: np.ndarray, categories: Mapping[str, str] | None = None, part_names: Sequence[str] = parts_lib.PART_NAMES
):
  """-> (category names [K], float64 [N, K] fraction of each image's pixels)."""
  labels = np.asarray(labels)
  names, lut = _category_lut(categories, part_names)
  cat = lut[labels.astype(np.int64)].reshape(len(labels), -1)
  k = len(names)
  counts = np.stack([np.bincount(row, minlength=k) for row in cat])
  return names, counts / cat.shape[1]


def part_area_stats(labels: np.ndarray, categories: Mapping[str, str] | None = None) -> dict[str, dict[str, float]]:
  """{category: {"mean", "std", "present"}} of per-image area fractions
  ("present": share of images where the category has any pixel)."""
  names, frac = part_area_fractions(labels, categories)
  return {
    c: {"mean": float(frac[:, i].mean()), "std": float(frac[:, i].std()), "present": float((frac[:, i] > 0).mean())}
    for i, c in enumerate(names)
  }


def compare_part_areas(
  labels_a: np.ndarray, labels_b: np.ndarray, categories: Mapping[str, str] | None = None
) -> dict[str, dict[str, float]]:
  """{category: {"a_mean", "a_std", "b_mean", "b_std", "diff"}} for two sets
  of label maps (e.g. segmenter output on renders vs generated images)."""
  a = part_area_stats(labels_a, categories)
  b = part_area_stats(labels_b, categories)
  return {
    c: {
      "a_mean": a[c]["mean"],
      "a_std": a[c]["std"],
      "b_mean": b[c]["mean"],
      "b_std": b[c]["std"],
      "diff": b[c]["mean"] - a[c]["mean"],
    }
    for c in a
  }


def attribute_rates(logits: np.ndarray) -> np.ndarray:
  """float64 [A] share of images with logit > 0 (present / above median)."""
  return (np.asarray(logits) > 0).mean(0).astype(np.float64)


def compare_attribute_rates(
  logits_a: np.ndarray, logits_b: np.ndarray, names: Sequence[str] = attr_lib.ATTRIBUTE_NAMES
) -> dict[str, dict[str, float]]:
  """{attribute: {"a", "b", "diff"}} positive rates of two image sets."""
  ra, rb = attribute_rates(logits_a), attribute_rates(logits_b)
  return {n: {"a": float(x), "b": float(y), "diff": float(y - x)} for n, x, y in zip(names, ra, rb)}


def format_comparison(
  comparison: Mapping[str, Mapping[str, float]], names: tuple[str, str] = ("renders", "generated"), digits: int = 3
) -> str:
  """Markdown table of `compare_part_areas` or `compare_attribute_rates`."""
  first = next(iter(comparison.values()), {})
  if "a_mean" in first:
    head = f"| category | {names[0]} (mean ± std) | {names[1]} (mean ± std) | diff |"
    row = lambda k, v: (
      f"| {k} | {v['a_mean']:.{digits}f} ± {v['a_std']:.{digits}f} | "
      f"{v['b_mean']:.{digits}f} ± {v['b_std']:.{digits}f} | "
      f"{v['diff']:+.{digits}f} |"
    )
  else:
    head = f"| attribute | {names[0]} | {names[1]} | diff |"
    row = lambda k, v: f"| {k} | {v['a']:.{digits}f} | {v['b']:.{digits}f} | {v['diff']:+.{digits}f} |"
  lines = [head, "|---|---|---|---|"]
  lines += [row(k, v) for k, v in comparison.items()]
  return "\n".join(lines)
