"""Edit directions in W / W+ (the baselines StyleSpace is compared with) and their image in S.

* `interfacegan(w, labels)`: InterFaceGAN (Shen et al. 2020): the unit normal of a linear
  boundary in W separating samples a classifier calls positive from negative. Fitted here
  by L2-regularised logistic regression (Newton / IRLS, float64 numpy) instead of the
  original linear SVM: both give a separating hyperplane; no scikit-learn needed.
* `ganspace(w, k)`: GANSpace (Härkönen et al. 2020): principal axes of W samples; an edit
  moves w along one axis on a subset of the w rows (layers), i.e. a W+ edit.
* `sefa(g, layers, k)`: SeFa (Shen & Zhou 2021), closed form: the top eigenvectors of
  A^T A, A = the style affine weights of the chosen layers stacked as rows (C, w_dim),
  each row scaled to unit norm as in the official code (`normalize=True`).

Every direction lives in W (w_dim,); `rows` picks the w rows (num_ws) it is applied to.
The style affine maps are affine in w, so a W/W+ edit ws + alpha * u (on rows) changes
S by exactly alpha * `w_to_s(g, u, rows)`: every edit, whatever its space, is a flat S
direction, and one evaluator (`ss_jax.dci.attribute_dependency`) scores all of them.

Sign convention of the axes (PCA, SeFa): the entry of largest magnitude is positive, so
results do not depend on the eigensolver.
"""

import numpy as np

from ss_jax.stylespace import channels as stylespace


def _fix_signs(vectors):
  """(k, D) -> rows flipped so that each row's largest-|.| entry is positive."""
  v = np.asarray(vectors, np.float64)
  idx = np.argmax(np.abs(v), axis=1)
  s = np.sign(v[np.arange(len(v)), idx])
  return v * np.where(s == 0, 1.0, s)[:, None]


def _sorted_eigh(m, k):
  """Symmetric (D, D) -> (eigenvalues (k,) descending, eigenvectors (k, D) as rows)."""
  m = np.asarray(m, np.float64)
  vals, vecs = np.linalg.eigh(0.5 * (m + m.T))
  order = np.argsort(-vals, kind="stable")[:k]
  return vals[order], _fix_signs(vecs[:, order].T)


# ----------------------------------------------------------------------------- InterFaceGAN


def _logistic_fit(xs, y, l2, max_iter, tol):
  """Newton / IRLS for L2-regularised logistic regression; xs (N, D + 1) with a ones column last."""
  n, d = xs.shape
  reg = np.full(d, l2 * n)
  reg[-1] = 0.0  # the intercept is not penalised
  beta = np.zeros(d)
  it = 0
  for it in range(1, max_iter + 1):
    p = 1.0 / (1.0 + np.exp(-np.clip(xs @ beta, -60, 60)))
    grad = xs.T @ (p - y) + reg * beta
    hess = (xs * (p * (1 - p))[:, None]).T @ xs + np.diag(reg) + 1e-12 * np.eye(d)
    step = np.linalg.solve(hess, grad)
    beta -= step
    if np.max(np.abs(step)) < tol:
      break
  return beta, it


L2_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)


def interfacegan(w, labels, l2=None, max_iter=50, tol=1e-10, holdout=0.3, seed=0):
  """Unit normal of a logistic-regression boundary in W, pointing to the positive class.

  Args:
    w: (N, D) codes (e.g. w of generator samples).
    labels: (N,) bool / {0, 1}: the attribute as read by a classifier (logit > 0).
    l2: ridge penalty on the weights (w centred, scaled by its overall RMS), times N; the
      intercept is free. Isotropic, like the linear SVM of the original. None: the value of
      L2_GRID with the best held-out accuracy on a random `holdout` share (ties: the
      larger penalty), then refitted on all samples.
    max_iter, tol: Newton iterations and the step-size stopping rule.

  Returns:
    dict(direction (D,) float64 unit vector in W, offset float: boundary w . n = offset,
    train_accuracy, holdout_accuracy (nan when l2 is given), l2, iterations).
  """
  x = np.asarray(w, np.float64)
  y = np.asarray(labels).astype(np.float64).ravel()
  if x.ndim != 2 or len(x) != len(y):
    raise ValueError(f"need w (N, D) and labels (N,), got {x.shape} and {y.shape}")
  if y.min() == y.max():
    raise ValueError("labels hold one class only: InterFaceGAN needs positive and negative samples")
  # One scale for every dimension (not per-dimension standardisation): the penalty stays
  # isotropic in W, so near-constant dimensions of w cannot get huge raw weights.
  mu = x.mean(0)
  sd = np.sqrt(np.mean((x - mu) ** 2)) or 1.0
  xs = np.concatenate([(x - mu) / sd, np.ones((len(x), 1))], axis=1)
  holdout_acc = float("nan")
  if l2 is None:
    test = np.random.default_rng(seed).random(len(x)) < holdout
    scores = []
    for lam in L2_GRID:
      beta, _ = _logistic_fit(xs[~test], y[~test], lam, max_iter, tol)
      scores.append(float((((xs[test] @ beta) > 0) == (y[test] > 0.5)).mean()) if test.any() else 0.0)
    best = max(range(len(L2_GRID)), key=lambda i: (scores[i], i))
    l2, holdout_acc = L2_GRID[best], scores[best]
  beta, it = _logistic_fit(xs, y, l2, max_iter, tol)
  coef = beta[:-1] / sd  # back to raw w: logit = coef . w + const
  norm = np.linalg.norm(coef)
  if norm == 0:
    raise ValueError("InterFaceGAN boundary is degenerate (zero normal)")
  const = beta[-1] - np.sum(beta[:-1] * mu / sd)
  acc = float((((x @ coef + const) > 0) == (y > 0.5)).mean())
  return {
    "direction": coef / norm,
    "offset": float(-const / norm),
    "train_accuracy": acc,
    "holdout_accuracy": holdout_acc,
    "l2": float(l2),
    "iterations": it,
  }


# ----------------------------------------------------------------------------- GANSpace


def ganspace(w, k=10):
  """PCA of W samples.

  Args:
    w: (N, D) codes.
    k: number of components.

  Returns:
    dict(components (k, D) float64 unit rows, largest variance first; std (k,) population
    std along each; mean (D,)).
  """
  x = np.asarray(w, np.float64)
  if x.ndim != 2 or len(x) < 2:
    raise ValueError(f"need w of shape (N >= 2, D), got {x.shape}")
  k = min(int(k), x.shape[1])
  mean = x.mean(0)
  vals, comps = _sorted_eigh(np.cov(x - mean, rowvar=False, bias=True), k)
  return {"components": comps, "std": np.sqrt(np.clip(vals, 0, None)), "mean": mean}


# ----------------------------------------------------------------------------- SeFa


def _affines(g):
  """Affine parameters of every style layer in layout order (StyleGAN3: the input layer's first)."""
  syn = g.params["synthesis"]
  return ([syn["input"]] if g.layout[0].kind == "input" else []) + list(syn["layers"])


def affine_weights(g, layers):
  """Style affine weights of style layers `layers` stacked as A (sum C_l, w_dim) float64.

  A row is one style channel: s_c = A[c] . w + b_c (the runtime gain 1/sqrt(w_dim) included).
  """
  gain = 1.0 / np.sqrt(g.config.w_dim)
  blocks, affines = [], _affines(g)
  for li in layers:
    if not 0 <= int(li) < len(g.layout):
      raise ValueError(f"style layer {li} out of range 0..{len(g.layout) - 1}")
    blocks.append(np.asarray(affines[int(li)]["affine_w"], np.float64).T * gain)
  if not blocks:
    raise ValueError("no style layers given for SeFa")
  return np.concatenate(blocks)


def sefa(g, layers, k=10, normalize=True):
  """SeFa directions: top-k eigenvectors of A^T A for the style layers `layers`.

  Returns:
    dict(components (k, w_dim) float64 unit rows, eigenvalues (k,) descending, layers).
  """
  a = affine_weights(g, layers)
  if normalize:
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
  vals, comps = _sorted_eigh(a.T @ a, min(int(k), a.shape[1]))
  return {"components": comps, "eigenvalues": vals, "layers": [int(v) for v in layers]}


# ----------------------------------------------------------------------------- rows, layers, S image


def parse_rows(spec, num_ws):
  """'all', '0-3' or '0,2,5' -> sorted tuple of w row indices in [0, num_ws)."""
  spec = str(spec).strip()
  if spec == "all":
    return tuple(range(num_ws))
  rows = set()
  for part in spec.split(","):
    part = part.strip()
    lo, _, hi = part.partition("-")
    try:
      a, b = int(lo), int(hi or lo)
    except ValueError:
      raise ValueError(f"bad w rows {spec!r}: expected 'all', 'A-B' or 'A,B,C'") from None
    if not 0 <= a <= b < num_ws:
      raise ValueError(f"w rows {part!r} out of range 0..{num_ws - 1}")
    rows.update(range(a, b + 1))
  return tuple(sorted(rows))


def default_row_ranges(num_ws):
  """['all', first third, middle third, last third] of the w rows as 'A-B' specs."""
  cuts = np.linspace(0, num_ws, 4).round().astype(int)
  out = ["all"]
  for a, b in zip(cuts[:-1], cuts[1:]):
    if b > a:
      out.append(f"{a}-{b - 1}")
  return out


def layers_of_rows(layout, rows, kinds=("conv",)):
  """Style layers (of the given kinds) whose w row is in rows."""
  rows = set(int(r) for r in rows)
  return [L.index for L in layout if L.w_index in rows and L.kind in kinds]


def w_to_s(g, u, rows=None):
  """Change of flat S (C,) float32 when w moves by u on `rows` (None: all rows).

  u: (w_dim,) W direction, or (num_ws, w_dim) W+ direction (then rows must be None).
  Exact for any edit strength: styles are affine in w, so S(ws + a u) = S(ws) + a w_to_s(u).
  """
  cfg = g.config
  u = np.asarray(u, np.float32)
  if u.shape == (cfg.w_dim,):
    mask = np.zeros(cfg.num_ws, np.float32)
    mask[list(range(cfg.num_ws)) if rows is None else list(rows)] = 1.0
    dws = mask[:, None] * u[None]
  elif u.shape == (cfg.num_ws, cfg.w_dim) and rows is None:
    dws = u
  else:
    raise ValueError(
      f"direction must be (w_dim={cfg.w_dim},) or (num_ws={cfg.num_ws}, w_dim) without rows, got {u.shape}"
    )
  # The bias cancels in the difference; computed as A u directly (no bias, no round-off from it).
  out = np.zeros(stylespace.num_channels(g.layout), np.float64)
  gain = 1.0 / np.sqrt(cfg.w_dim)
  for L, p in zip(g.layout, _affines(g)):
    out[L.offset : L.offset + L.channels] = dws[L.w_index].astype(np.float64) @ (
      np.asarray(p["affine_w"], np.float64) * gain
    )
  return out.astype(np.float32)
