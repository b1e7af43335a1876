"""Per-attribute classifiers that turn (codes, labels) into a DCI importance matrix.

Two back ends, both returning `(importance [D, A] float64, test_acc [A], train_acc [A])`:

* `lasso_importance`: L1-regularised logistic regression in JAX, solved with FISTA
  (accelerated proximal gradient, adaptive restart) so that irrelevant codes get
  *exactly* zero weight -- with thousands of codes, small non-zero noise weights
  would otherwise inflate every entropy in D and C. Features are standardised on
  each attribute's train split, importance = |coefficient| on standardised
  features. Attributes are vmapped in chunks; each attribute has its own sample
  set, padded to a common size with a mask.
* `gbt_importance`: scikit-learn `GradientBoostingClassifier` (the official
  StyleSpace / disentanglement_lib regressor), importance = `feature_importances_`.
  scikit-learn is imported lazily; it is not a runtime dependency.
"""

import concurrent.futures
import functools
import multiprocessing
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax


class Split(NamedTuple):
  """One attribute's train/test split (row indices into `codes`, labels in {0, 1})."""

  train_idx: np.ndarray  # [n_train] int64
  test_idx: np.ndarray  # [n_test] int64
  y_train: np.ndarray  # [n_train] int32
  y_test: np.ndarray  # [n_test] int32


# ----------------------------------------------------------------------------- lasso


def _soft_threshold(x, t):
  return jnp.sign(x) * jnp.maximum(jnp.abs(x) - t, 0.0)


def _fit_one(xtr, ytr, mtr, xte, yte, mte, *, l1_frac, num_steps, power_steps):
  """FISTA for one attribute. x*: [n, D] f32 (padded rows arbitrary), y*/m*: [n] f32."""
  n_tr = jnp.maximum(mtr.sum(), 1.0)
  mu = (xtr * mtr[:, None]).sum(0) / n_tr
  xc = (xtr - mu) * mtr[:, None]  # padded rows -> 0, so they never enter X^T r
  var = (xc * xc).sum(0) / n_tr
  # Constant columns (var at float32 round-off level) get scale 0: coefficient stays 0.
  scale = jnp.where(var > 1e-10 * (1.0 + mu * mu), jax.lax.rsqrt(var), 0.0)
  xs = xc * scale
  xte_s = (xte - mu) * scale * mte[:, None]

  ybar = jnp.clip((ytr * mtr).sum() / n_tr, 1e-6, 1 - 1e-6)
  # lambda_max: the smallest penalty whose solution is w = 0 (with the optimal b).
  lam = l1_frac * jnp.max(jnp.abs(xs.T @ ((ytr - ybar) * mtr))) / n_tr

  # Lipschitz constant of the mean logistic loss: sigma_max(X)^2 / (4 n). The
  # intercept's column of ones is orthogonal to the centred X, contributing 1/4.
  v0 = jnp.ones(xs.shape[1], xs.dtype) / jnp.sqrt(xs.shape[1])

  def power(_, v):
    u = xs.T @ (xs @ v)
    return u / jnp.maximum(jnp.linalg.norm(u), 1e-30)

  v = jax.lax.fori_loop(0, power_steps, power, v0)
  sig2 = jnp.sum(jnp.square(xs @ v))
  lip = 1.1 * jnp.maximum(sig2 / n_tr, 1.0) / 4.0  # 1.1: power iteration under-estimates
  step = 1.0 / lip

  def loss(w, b):
    logits = xs @ w + b
    return (optax.losses.sigmoid_binary_cross_entropy(logits, ytr) * mtr).sum() / n_tr

  grad = jax.grad(loss, argnums=(0, 1))

  def body(_, state):
    w, b, yw, yb, t = state
    gw, gb = grad(yw, yb)
    w_new = _soft_threshold(yw - step * gw, step * lam)
    b_new = yb - step * gb
    # Gradient-based adaptive restart (O'Donoghue & Candes 2015).
    restart = (jnp.dot(yw - w_new, w_new - w) + (yb - b_new) * (b_new - b)) > 0
    t = jnp.where(restart, 1.0, t)
    t_new = 0.5 * (1.0 + jnp.sqrt(1.0 + 4.0 * t * t))
    mom = (t - 1.0) / t_new
    return (w_new, b_new, w_new + mom * (w_new - w), b_new + mom * (b_new - b), t_new)

  w0 = jnp.zeros(xs.shape[1], xs.dtype)
  b0 = jnp.log(ybar) - jnp.log1p(-ybar)
  w, b, *_ = jax.lax.fori_loop(0, num_steps, body, (w0, b0, w0, b0, jnp.float32(1.0)))

  def acc(x, y, m):
    pred = ((x @ w + b) > 0).astype(jnp.float32)
    return ((pred == y) * m).sum() / jnp.maximum(m.sum(), 1.0)

  return w * (scale > 0), acc(xte_s, yte, mte), acc(xs, ytr, mtr)


@functools.partial(jax.jit, static_argnames=("l1_frac", "num_steps", "power_steps"))
def _fit_chunk(xtr, ytr, mtr, xte, yte, mte, *, l1_frac, num_steps, power_steps):
  """Vmapped `_fit_one` over a chunk of attributes: x* [c, n, D], y*/m* [c, n]."""
  fit = functools.partial(_fit_one, l1_frac=l1_frac, num_steps=num_steps, power_steps=power_steps)
  return jax.vmap(fit)(xtr, ytr, mtr, xte, yte, mte)


def _pad_len(n: int, multiple: int = 64) -> int:
  return max(multiple, -(-n // multiple) * multiple)


def _gather(codes, idx_list, n_pad):
  """Rows of `codes` per attribute into a zero-padded [c, n_pad, D] f32 block + mask."""
  x = np.zeros((len(idx_list), n_pad, codes.shape[1]), np.float32)
  m = np.zeros((len(idx_list), n_pad), np.float32)
  for k, idx in enumerate(idx_list):
    x[k, : len(idx)] = codes[idx]
    m[k, : len(idx)] = 1.0
  return x, m


def _pad_labels(ys, n_pad):
  out = np.zeros((len(ys), n_pad), np.float32)
  for k, y in enumerate(ys):
    out[k, : len(y)] = y
  return out


def lasso_importance(
  codes: np.ndarray,
  splits: Sequence[Split],
  *,
  l1_frac: float = 0.05,
  num_steps: int = 500,
  power_steps: int = 30,
  max_chunk_bytes: int = 2 << 30,
  normalize: bool = True,
):
  """Importance matrix from per-attribute L1 logistic regressions.

  Args:
    codes: [N, D] latent codes (numpy array or memmap; only the rows named in
      `splits` are read, chunk by chunk).
    splits: one `Split` per attribute.
    l1_frac: penalty as a fraction of each attribute's lambda_max (the smallest
      penalty that zeroes all weights, on the mean-loss scale), which makes the
      sparsity level comparable across attributes and latent spaces.
    num_steps: FISTA iterations (fixed, so the result is deterministic).
    power_steps: power iterations for the step size.
    max_chunk_bytes: budget for one chunk's float32 train+test blocks; the
      working set is about 3x this (raw block, standardised copy, XLA temps).
    normalize: scale each importance column to sum to 1, matching
      `feature_importances_` of GBT, so every attribute carries equal weight in
      the code weights of D (all-zero columns stay zero).

  Returns:
    importance [D, A] float64 (>= 0), test accuracy [A], train accuracy [A].
  """
  num_attr, dim = len(splits), codes.shape[1]
  n_tr = _pad_len(max(len(s.train_idx) for s in splits))
  n_te = _pad_len(max(len(s.test_idx) for s in splits))
  chunk = int(max(1, min(num_attr, max_chunk_bytes // (4 * dim * (n_tr + n_te)))))
  chunk = -(-num_attr // -(-num_attr // chunk))  # balance chunks: little padding waste
  coefs, test_acc, train_acc = [], [], []
  for start in range(0, num_attr, chunk):
    part = list(splits[start : start + chunk])
    # Pad the attribute axis with copies of the last split: one compiled shape per call.
    padded = part + [part[-1]] * (chunk - len(part))
    xtr, mtr = _gather(codes, [s.train_idx for s in padded], n_tr)
    xte, mte = _gather(codes, [s.test_idx for s in padded], n_te)
    ytr = _pad_labels([s.y_train for s in padded], n_tr)
    yte = _pad_labels([s.y_test for s in padded], n_te)
    w, a_te, a_tr = _fit_chunk(
      xtr, ytr, mtr, xte, yte, mte, l1_frac=float(l1_frac), num_steps=int(num_steps), power_steps=int(power_steps)
    )
    del xtr, xte
    coefs.append(np.asarray(w, np.float64)[: len(part)])
    test_acc.append(np.asarray(a_te, np.float64)[: len(part)])
    train_acc.append(np.asarray(a_tr, np.float64)[: len(part)])
  importance = np.abs(np.concatenate(coefs, 0)).T  # [D, A]
  if normalize:
    col = importance.sum(0, keepdims=True)
    importance = np.divide(importance, col, out=np.zeros_like(importance), where=col > 0)
  return importance, np.concatenate(test_acc), np.concatenate(train_acc)


# ------------------------------------------------------------------------------- gbt


def _fit_gbt(x_train, y_train, x_test, y_test, seed, kwargs):
  """One GradientBoostingClassifier; module level so process pools can pickle it."""
  try:
    from sklearn.ensemble import GradientBoostingClassifier  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError("method='gbt' needs scikit-learn (pip install scikit-learn); method='lasso' does not.") from e
  model = GradientBoostingClassifier(random_state=seed, **kwargs)
  model.fit(x_train, y_train)
  return (
    np.abs(model.feature_importances_),
    np.mean(model.predict(x_test) == y_test),
    np.mean(model.predict(x_train) == y_train),
  )


def gbt_importance(
  codes: np.ndarray,
  splits: Sequence[Split],
  *,
  seed: int = 0,
  max_workers: int | None = None,
  executor: str = "thread",
  **gbt_kwargs,
):
  """Importance matrix from sklearn gradient-boosted trees, one per attribute.

  Defaults are sklearn's (100 trees, depth 3, lr 0.1), as in the official code;
  `random_state=seed` makes the fits deterministic (the official run is unseeded).

  Args:
    codes: [N, D] latent codes.
    splits: one `Split` per attribute.
    seed: sklearn random_state for every attribute.
    max_workers: parallel fits (default: executor's default).
    executor: 'thread' (sklearn's tree builder releases the GIL, and no fork of a
      JAX-initialised process happens) or 'process' (spawned workers; each
      attribute's rows are pickled to the worker).
    **gbt_kwargs: forwarded to `GradientBoostingClassifier`.

  Returns:
    importance [D, A] float64, test accuracy [A], train accuracy [A].
  """
  try:
    import sklearn  # noqa: F401  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError as e:
    raise ImportError("method='gbt' needs scikit-learn (pip install scikit-learn).") from e
  if executor == "thread":
    pool = concurrent.futures.ThreadPoolExecutor(max_workers)
  elif executor == "process":
    pool = concurrent.futures.ProcessPoolExecutor(max_workers, mp_context=multiprocessing.get_context("spawn"))
  else:
    raise ValueError(f"executor must be 'thread' or 'process', got {executor!r}")
  with pool:
    futures = [
      pool.submit(_fit_gbt, codes[s.train_idx], s.y_train, codes[s.test_idx], s.y_test, seed, gbt_kwargs)
      for s in splits
    ]
    results = [f.result() for f in futures]
  importance = np.stack([r[0] for r in results], 1).astype(np.float64)
  return (importance, np.array([r[1] for r in results], np.float64), np.array([r[2] for r in results], np.float64))
