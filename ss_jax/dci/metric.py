"""DCI disentanglement metric (Eastwood & Williams 2018) as used by StyleSpace.

Scores follow google-research/disentanglement_lib `evaluation/metrics/dci.py`
(which the StyleSpace `DCI.py` copies verbatim), including its numerics:

* R [num_codes, num_factors] >= 0 is an importance matrix.
* Disentanglement: P_ij = R_ij / sum_j R_ij, D_i = 1 - H_K(P_i.), K = num_factors;
  D = sum_i rho_i D_i with rho_i = sum_j R_ij / sum R.
* Completeness: P_ij = R_ij / sum_i R_ij, C_j = 1 - H_{num_codes}(P_.j);
  C = sum_j rho_j C_j with rho_j = sum_i R_ij / sum R. Note: disentanglement_lib
  weights factors by their importance; it does NOT average uniformly.
  With column-normalised R (GBT `feature_importances_`, or our lasso with
  `normalize=True`) all rho_j are equal and the two coincide except for all-zero
  columns (C_j = 0, weight 0 vs 1/A). `factor_weighting='uniform'` gives the mean.
* Entropies are `scipy.stats.entropy(R + 1e-11, base)`: 1e-11 is added to every
  entry before normalising, so zero rows/columns give a uniform P (score 0) and
  never NaN. An all-zero R gives uniform code/factor weights (D = C = 0).
* Departure: a base of 1 (one factor, or one code) is 0/0 = NaN in
  disentanglement_lib; here the entropy of a one-outcome distribution is 0, so the
  score is 1.

Data preparation follows StyleSpace `DCI.py` (with its bugs removed: all
attributes, seeded split): keep attributes with > 5% positive and > 5% negative
logits, take samples beyond the 2nd / 98th logit percentile, label = logit > 0,
split 50/50 into train/test. Informativeness I = mean test accuracy.
"""

from typing import Mapping, Sequence

import numpy as np

from ss_jax.dci import regressors as dci_regressors
from ss_jax.dci.regressors import Split

__all__ = [
  "Split",
  "completeness",
  "completeness_per_factor",
  "dci",
  "dci_from_importance",
  "disentanglement",
  "disentanglement_per_code",
  "extreme_split",
  "extreme_split_indices",
  "format_table",
  "select_attributes",
]

_EPS = 1e-11  # disentanglement_lib's additive constant inside the entropy
_SPACE_ORDER = ("Z", "W", "W+", "S")


# --------------------------------------------------------------------------- scores


def _check_importance(importance) -> np.ndarray:
  r = np.asarray(importance, np.float64)
  if r.ndim != 2 or 0 in r.shape:
    raise ValueError(f"importance must be a non-empty 2-D array, got shape {r.shape}")
  if not np.all(np.isfinite(r)) or np.any(r < 0):
    raise ValueError("importance must be finite and non-negative")
  return r


def _entropy(r: np.ndarray, axis: int) -> np.ndarray:
  """`scipy.stats.entropy(r + 1e-11, base=r.shape[axis], axis=axis)`, base 1 -> 0."""
  base = r.shape[axis]
  p = r + _EPS
  p = p / p.sum(axis=axis, keepdims=True)
  h = -np.sum(p * np.log(p), axis=axis)  # p > 0 everywhere thanks to _EPS
  return h / np.log(base) if base > 1 else np.zeros_like(h)


def disentanglement_per_code(importance) -> np.ndarray:
  """D_i = 1 - H_K(P_i.) for R [num_codes, num_factors] -> [num_codes] float64."""
  return 1.0 - _entropy(_check_importance(importance), axis=1)


def completeness_per_factor(importance) -> np.ndarray:
  """C_j = 1 - H_{num_codes}(P_.j) for R [num_codes, num_factors] -> [num_factors]."""
  return 1.0 - _entropy(_check_importance(importance), axis=0)


def _weights(r: np.ndarray, axis: int) -> np.ndarray:
  if r.sum() == 0.0:  # disentanglement_lib: fall back to uniform weights
    r = np.ones_like(r)
  return r.sum(axis=axis) / r.sum()


def disentanglement(importance) -> float:
  """D = sum_i rho_i D_i, rho_i = share of total importance held by code i."""
  r = _check_importance(importance)
  return float(np.sum(disentanglement_per_code(r) * _weights(r, axis=1)))


def completeness(importance, factor_weighting: str = "importance") -> float:
  """C = sum_j w_j C_j; w_j = importance share (disentanglement_lib) or 1/A ('uniform')."""
  r = _check_importance(importance)
  per_factor = completeness_per_factor(r)
  if factor_weighting == "importance":
    return float(np.sum(per_factor * _weights(r, axis=0)))
  if factor_weighting == "uniform":
    return float(np.mean(per_factor))
  raise ValueError(f"factor_weighting must be 'importance' or 'uniform', got {factor_weighting!r}")


def dci_from_importance(importance, factor_weighting: str = "importance") -> tuple[float, float]:
  """(D, C) from an importance matrix R [num_codes, num_factors] (non-negative)."""
  return disentanglement(importance), completeness(importance, factor_weighting)


# ----------------------------------------------------------------------- data prep


def select_attributes(logits, min_frac: float = 0.05) -> np.ndarray:
  """Indices of attributes with > min_frac positive AND > min_frac negative logits.

  As in StyleSpace `DCI.preprocessing`: counts of `logit > 0` and of `logit < 0`
  (exact zeros count for neither) must exceed `int(N * min_frac)`.

  Args:
    logits: [N, A] classifier logits.
    min_frac: minimum fraction on each side.

  Returns:
    [A_kept] int64 column indices, ascending.
  """
  logits = np.asarray(logits)
  thresh = int(logits.shape[0] * min_frac)
  keep = ((logits > 0).sum(0) > thresh) & ((logits < 0).sum(0) > thresh)
  return np.flatnonzero(keep)


def extreme_split_indices(logits_j, low_pct: float = 2.0, high_pct: float = 98.0, seed=0) -> Split:
  """Train/test row indices of one attribute's extreme samples.

  Rows with logit strictly above the `high_pct` or below the `low_pct`
  percentile (np.percentile, linear interpolation) are kept, labelled
  `logit > 0`, permuted with `np.random.default_rng(seed)` and split so that the
  first floor(n/2) go to train (as the official `int(1/2*len(y))`). Indices in
  each split are sorted (row order is irrelevant to the fits; sorted reads are
  faster on memmaps).

  Args:
    logits_j: [N] logits of one attribute.
    low_pct: lower percentile (official `p_threshold` = 2).
    high_pct: upper percentile (100 - p_threshold).
    seed: anything `np.random.default_rng` accepts.

  Returns:
    `Split` with int64 indices into the N rows and int32 labels.
  """
  logits_j = np.asarray(logits_j)
  if logits_j.ndim != 1:
    raise ValueError(f"logits_j must be 1-D, got shape {logits_j.shape}")
  lo, hi = np.percentile(logits_j, [low_pct, high_pct])
  idx = np.flatnonzero((logits_j > hi) | (logits_j < lo))
  perm = np.random.default_rng(seed).permutation(len(idx))
  half = len(idx) // 2
  train_idx, test_idx = np.sort(idx[perm[:half]]), np.sort(idx[perm[half:]])
  return Split(
    train_idx, test_idx, (logits_j[train_idx] > 0).astype(np.int32), (logits_j[test_idx] > 0).astype(np.int32)
  )


def extreme_split(codes, logits_j, low_pct: float = 2.0, high_pct: float = 98.0, seed=0):
  """`extreme_split_indices` applied to codes [N, D].

  Returns:
    (x_train [n_tr, D], y_train [n_tr] int32, x_test [n_te, D], y_test [n_te] int32).
  """
  s = extreme_split_indices(logits_j, low_pct, high_pct, seed)
  codes = np.asarray(codes)  # no copy for ndarray / memmap
  return codes[s.train_idx], s.y_train, codes[s.test_idx], s.y_test


# ---------------------------------------------------------------------------- entry


def dci(
  codes,
  logits,
  method: str = "lasso",
  seed: int = 0,
  *,
  min_frac: float = 0.05,
  low_pct: float = 2.0,
  high_pct: float = 98.0,
  factor_weighting: str = "importance",
  attribute_names: Sequence[str] | None = None,
  **regressor_kwargs,
) -> dict:
  """Full StyleSpace DCI evaluation of one latent space.

  Args:
    codes: [N, D] latent codes (numpy array or memmap; not copied whole).
    logits: [N, A] attribute-classifier logits for the same samples.
    method: 'lasso' (JAX L1 logistic regression) or 'gbt' (sklearn, as official).
    seed: attribute k's split uses `default_rng([seed, k])` (k = column in
      `logits`), so splits do not depend on which other attributes are kept;
      also the GBT random_state.
    min_frac, low_pct, high_pct: data preparation, see `select_attributes` and
      `extreme_split_indices`.
    factor_weighting: completeness weighting, see `completeness`.
    attribute_names: optional [A] names; `kept_attributes` then holds names.
    **regressor_kwargs: forwarded to `dci_regressors.lasso_importance` or
      `dci_regressors.gbt_importance`.

  Returns:
    dict with D, C, I (floats), importance [D, A_kept] float64,
    kept_attributes (indices or names), per_attribute_accuracy [A_kept] (test),
    per_attribute_train_accuracy [A_kept], per_code_disentanglement [D],
    per_factor_completeness [A_kept].
  """
  codes, logits = np.asarray(codes), np.asarray(logits)  # no copy for ndarray / memmap
  if logits.ndim != 2 or codes.ndim != 2 or logits.shape[0] != codes.shape[0]:
    raise ValueError(f"need codes [N, D] and logits [N, A]; got {codes.shape}, {logits.shape}")
  kept = select_attributes(logits, min_frac)
  if len(kept) == 0:
    raise ValueError("no attribute has enough positive and negative samples")
  splits = [extreme_split_indices(logits[:, k], low_pct, high_pct, [seed, int(k)]) for k in kept]
  if method == "lasso":
    importance, test_acc, train_acc = dci_regressors.lasso_importance(codes, splits, **regressor_kwargs)
  elif method == "gbt":
    importance, test_acc, train_acc = dci_regressors.gbt_importance(codes, splits, seed=seed, **regressor_kwargs)
  else:
    raise ValueError(f"method must be 'lasso' or 'gbt', got {method!r}")
  d, c = dci_from_importance(importance, factor_weighting)
  names = [attribute_names[k] for k in kept] if attribute_names is not None else kept
  return dict(
    D=d,
    C=c,
    I=float(np.mean(test_acc)),
    importance=importance,
    kept_attributes=names,
    per_attribute_accuracy=test_acc,
    per_attribute_train_accuracy=train_acc,
    per_code_disentanglement=disentanglement_per_code(importance),
    per_factor_completeness=completeness_per_factor(importance),
  )


def format_table(results: Mapping[str, Mapping], digits: int = 3) -> str:
  """Markdown table of DCI results, one row per latent space.

  Args:
    results: space name -> `dci` result (needs D, C, I, kept_attributes). Spaces
      Z, W, W+, S come first in that order, others follow in insertion order.
    digits: decimals for D, C, I.

  Returns:
    The table as a string (no trailing newline).
  """
  names = [s for s in _SPACE_ORDER if s in results]
  names += [s for s in results if s not in _SPACE_ORDER]
  lines = ["| Space | D | C | I | kept attributes |", "|---|---|---|---|---|"]
  for name in names:
    r = results[name]
    vals = " | ".join(f"{float(r[k]):.{digits}f}" for k in ("D", "C", "I"))
    lines.append(f"| {name} | {vals} | {len(r['kept_attributes'])} |")
  return "\n".join(lines)
