"""Summaries, Markdown tables and the figure of the ToyFaces inversion/editing comparison
(per method: reconstruction errors, edit success, leakage; see inversion.py for the measurements)."""

import math
from typing import Mapping, Optional, Sequence

import numpy as np

from ss_jax.runtime import images as images_lib
from ss_jax.stylespace import manipulate
from ss_jax.toyfaces import evaluate
from ss_jax.toyfaces.eval.edit_scores import pooled_share
from ss_jax.toyfaces.eval.inversion import Edit


def _edit_means(scores):
  return {
    "target": float(np.mean(scores["target"])),
    "flipped": float(np.mean(scores["flipped"])),
    "others": float(np.mean(scores["others"])),
    "outside": pooled_share(scores["outside"], scores["change"]),
  }


def summarize_edits(edits):
  """Means of evaluate_edits' scores: dict(target, flipped, others, outside, num_edits,
  per_attribute {name: {target, flipped, others, outside}}); outside is pooled (`pooled_share`)."""
  per = edits["per_attribute"]
  pooled = {
    k: np.concatenate([sc[k] for sc in per.values()]) for k in ("target", "flipped", "others", "outside", "change")
  }
  return dict(
    _edit_means(pooled),
    num_edits=int(len(pooled["target"])),
    per_attribute={name: _edit_means(sc) for name, sc in per.items()},
  )


def summarize(recon_errors, edits, reference_features, rms_z=None):
  """One table row from reconstruction_errors(...) and evaluate_edits(...) (or the ground truth).

  Args:
    recon_errors: dict(mse (N,), perceptual (N,) or None).
    edits: evaluate_edits / evaluate_ground_truth output.
    reference_features: (M, F) classifier features of the reference renders.
    rms_z: optional (N,) code_rms_z of the method's codes.

  Returns:
    summarize_edits(edits) plus mse, perceptual (or None), rms_z (or None), fd_edits
    (FD of all edited images), fd_recon (FD of the unedited images: few images,
    strongly biased), num_images.
  """
  p = recon_errors.get("perceptual")
  return dict(
    summarize_edits(edits),
    mse=float(np.mean(recon_errors["mse"])),
    rms_z=None if rms_z is None else float(np.mean(rms_z)),
    perceptual=None if p is None else float(np.mean(p)),
    fd_recon=evaluate.frechet_distance(edits["recon_features"], reference_features),
    fd_edits=evaluate.frechet_distance(edits["features"], reference_features),
    num_images=int(len(recon_errors["mse"])),
  )


def _fmt(v, digits):
  if v is None or (isinstance(v, float) and math.isnan(v)):
    return "–"
  return f"{v:.{digits}f}"


def format_table(
  rows: Mapping[str, dict],
  fd_floor: Optional[float] = None,
  perceptual_name="LPIPS",
  fd_floor_std: Optional[float] = None,
):
  """Markdown table of summarize() rows, keyed by label in display order.

  fd_floor: optional renders-vs-renders FD at the size of the edited sets, printed as a
  first row, with ± fd_floor_std (its spread over disjoint render sets) when given.
  (fd_recon is left out: at a few dozen images in 128 dimensions the FD is
  dominated by its small-sample bias.)
  """
  head = (
    "| method | MSE ↓ | " + perceptual_name + " ↓ | code RMS z | target Δ (σ) ↑ | flipped ↑ | "
    "other attrs abs Δ (σ) ↓ | change outside region ↓ | FD edits ↓ |"
  )
  lines = [head, "|---|---|---|---|---|---|---|---|---|"]
  if fd_floor is not None:
    spread = f" ± {_fmt(fd_floor_std, 1)}" if fd_floor_std is not None else ""
    lines.append(f"| fresh renders (FD floor) | – | – | – | – | – | – | – | {_fmt(fd_floor, 1)}{spread} |")
  for label, r in rows.items():
    lines.append(
      f"| {label} | {_fmt(r['mse'], 4)} | {_fmt(r['perceptual'], 3)} | {_fmt(r.get('rms_z'), 2)} | "
      f"{_fmt(r['target'], 2)} | {_fmt(r['flipped'], 2)} | {_fmt(r['others'], 3)} | "
      f"{_fmt(r['outside'], 3)} | {_fmt(r['fd_edits'], 1)} |"
    )
  return "\n".join(lines)


def format_attribute_table(rows: Mapping[str, dict], plan: Sequence[Edit]):
  """Markdown: per attribute (columns, with their signed channels) and method (rows),
  'target Δ / flipped / outside'."""
  chans = lambda e: ", ".join(f"{'+' if s > 0 else '-'}{n}" for n, s in zip(e.names, e.signs))
  head = "| method | " + " | ".join(f"{e.name} ({chans(e)})" for e in plan) + " |"
  lines = [head, "|---|" + "---|" * len(plan)]
  for label, r in rows.items():
    cells = []
    for e in plan:
      a = r["per_attribute"][e.name]
      cells.append(f"{_fmt(a['target'], 2)} / {_fmt(a['flipped'], 2)} / {_fmt(a['outside'], 2)}")
    lines.append(f"| {label} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def format_pilot_table(summary: Mapping[str, dict], plan: Sequence[Edit]):
  """Markdown: one row per candidate attribute (summarize_edits(...)["per_attribute"]) with its channels."""
  lines = [
    "| attribute | channels (theta) | target Δ (σ) | flipped | other attrs abs Δ (σ) | change outside region |",
    "|---|---|---|---|---|---|",
  ]
  for e in plan:
    r = summary[e.name]
    ch = ", ".join(f"{n} ({t:.1f})" for n, t in zip(e.names, e.theta))
    lines.append(
      f"| {e.name} | {ch} | {_fmt(r['target'], 2)} | {_fmt(r['flipped'], 2)} | "
      f"{_fmt(r['others'], 3)} | {_fmt(r['outside'], 3)} |"
    )
  return "\n".join(lines)


def figure(
  originals, recons: Mapping[str, np.ndarray], edits: Mapping[str, np.ndarray], plan: Sequence[Edit], rows=4, min_cell=0
):
  """Labelled (H', W', 3) uint8 grid: original | each method's reconstruction | each method's edit.

  Args:
    originals: (N, H, W, 3) in [-1, 1]; recons: {label: (N, H, W, 3)}; edits:
      {label: (len(plan), N, H, W, 3)} (evaluate_edits' "edited"), any labels.
    rows: images shown; image i shows the edit of attribute plan[i % len(plan)].
  """
  rows = min(rows, len(originals))
  cells, names = [], []
  for i in range(rows):
    k = i % len(plan)
    row = [originals[i]] + [r[i] for r in recons.values()] + [e[k, i] for e in edits.values()]
    cells.append(images_lib.to_uint8(np.stack(row)))
    names.append(f"{i}: {plan[k].name}")
  cols = ["original"] + [f"rec {m}" for m in recons] + [f"edit {m}" for m in edits]
  return manipulate.labeled_grid(np.stack(cells), names, cols, min_cell=min_cell)
