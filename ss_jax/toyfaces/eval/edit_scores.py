"""How well an edit of a reconstruction does what it should, on ToyFaces (ss_jax.toyfaces.eval.inversion).

Scores per edited image (all differences are edited minus unedited, where the
unedited image is the method's reconstruction, or the original render for the
ground truth):
  target   change of the attribute's logit in population-std units (the std of
           the logit over generator samples, evaluate.population_std), signed so
           that positive means "towards the intended state" (StyleSpace's AD).
  flipped  whether the classifier's decision (logit > 0) is the intended state
           after the edit.
  others   mean |AD| over the other attributes the classifier reads reliably.
  outside  share of the total |Δimage| (summed over colour) outside the
           attribute's region: pixels that the segmenter labels as one of the
           attribute's parts (attributes.ATTRIBUTES[...].parts) in the unedited or
           in the edited image, dilated by `DILATE` px (anti-aliased edges; a hat
           that appears is outside the unedited image's hat mask). Pooled over
           images: sum of outside change / sum of all change.
Realism: Fréchet distance in the classifier's feature space (evaluate.frechet_distance)
of all edited images of a method (pooled over attributes) to REFERENCE renders,
printed next to the floor (fresh renders of the same count) and the ground-truth
edits. With N of about a hundred in 128 dimensions the FD is strongly biased upwards:
compare rows of one table only, against the spread of the floor over disjoint sets.

Everything here is pure except for running the models passed in (no file I/O).
"""

from typing import Sequence

import numpy as np

from ss_jax.runtime import images as images_lib
from ss_jax.stylespace import manipulate
from ss_jax.toyfaces import evaluate
from ss_jax.toyfaces import parts as parts_lib
from ss_jax.toyfaces import render as render_lib
from ss_jax.toyfaces.eval.inversion import Edit, edit_styles, toggle_directions, toggled_attributes

DILATE = 1


def dilate(mask, pixels=DILATE):
  """bool (N, H, W) -> the mask grown by `pixels` in the 8-neighbourhood (edges do not wrap)."""
  m = np.asarray(mask, bool)
  for _ in range(int(pixels)):
    p = np.pad(m, ((0, 0), (1, 1), (1, 1)))
    h, w = m.shape[1:]
    m = np.zeros_like(m)
    for dy in range(3):
      for dx in range(3):
        m |= p[:, dy : dy + h, dx : dx + w]
  return m


def attribute_region(labels_before, labels_after, part_names, pixels=DILATE):
  """bool (N, H, W): pixels labelled as one of part_names before or after the edit, dilated."""
  idx = [parts_lib.PART_INDEX[p] for p in part_names]
  m = np.isin(np.asarray(labels_before), idx) | np.isin(np.asarray(labels_after), idx)
  return dilate(m, pixels)


def outside_change(before, after, region):
  """Change outside a region via evaluate.locality_shares.

  Args:
    before, after: (N, H, W, C) images (same scale); region: bool (N, H, W).

  Returns:
    (outside share (N,) float64: 0 for unchanged images, total |Δ| (N,) float64
    summed over pixels and colour).
  """
  labels = np.asarray(region, np.uint8)  # 0 outside, 1 inside
  names, shares, total = evaluate.locality_shares(
    before, after, labels, {"outside": "outside", "inside": "inside"}, ("outside", "inside")
  )
  return shares[:, names.index("outside")], total


def pooled_share(shares, totals):
  """Share of all change (sum of totals) that lies outside: sum(share * total) / sum(total); nan if none."""
  t = float(np.sum(totals))
  return float(np.sum(np.asarray(shares) * np.asarray(totals)) / t) if t > 0 else float("nan")


def logit_effects(logits_before, logits_after, logit_std, attribute, directions, reliable=None):
  """Classifier-read effect of an edit meant to move `attribute` in `directions`.

  Args:
    logits_before, logits_after: (N, A); logit_std: (A,) population std of each logit.
    directions: (N,) +1 / -1 intended direction per image.
    reliable: optional bool (A,): attributes counted in "others" (default all).

  Returns:
    dict(target (N,) signed AD towards the intended state, flipped (N,) bool
    (classifier decision equals the intended state after the edit), others (N,)
    mean |AD| over the reliable attributes other than `attribute`).
  """
  ad = evaluate.attribute_dependency(logits_before, logits_after, logit_std)
  directions = np.asarray(directions, np.float64).reshape(-1)
  keep = np.ones(ad.shape[1], bool) if reliable is None else np.array(reliable, bool)
  keep[attribute] = False
  after = np.asarray(logits_after)[:, attribute]
  return {
    "target": ad[:, attribute] * directions,
    "flipped": (after > 0) == (directions > 0),
    "others": np.abs(ad[:, keep]).mean(axis=1) if keep.any() else np.zeros(len(ad)),
  }


def score_edit(
  before,
  after,
  logits_before,
  logits_after,
  labels_before,
  labels_after,
  edit: Edit,
  directions,
  logit_std,
  reliable=None,
):
  """All per-image scores of one attribute edit.

  Args:
    before, after: images (N, H, W, 3) in [-1, 1]; logits_*: (N, A); labels_*: (N, H, W)
    segmenter labels; edit: Edit; directions: (N,); logit_std: (A,).

  Returns:
    dict of (N,) arrays: target, flipped, others, outside, change (total |Δ|).
  """
  out = logit_effects(logits_before, logits_after, logit_std, edit.attribute, directions, reliable)
  region = attribute_region(labels_before, labels_after, edit.parts)
  out["outside"], out["change"] = outside_change(before, after, region)
  return out


def plan_directions(attrs, plan: Sequence[Edit]):
  """(len(plan), N) float32 toggle directions of every edit from the true attributes (N, A)."""
  return np.stack([toggle_directions(attrs, e.attribute) for e in plan])


def decision_directions(logits, plan: Sequence[Edit]):
  """(len(plan), N) float32 toggle directions from classifier logits (N, A) (images without ground truth)."""
  logits = np.asarray(logits)
  return np.stack([np.where(logits[:, e.attribute] > 0, -1.0, 1.0).astype(np.float32) for e in plan])


def _outputs(classifier, x):
  logits, feats = classifier.outputs(x)
  return np.asarray(logits, np.float64), np.asarray(feats, np.float64)


def _score_all(before, edited, directions, plan, classifier, segmenter, logit_std, reliable):
  """Scores of precomputed edits: edited (len(plan), N, H, W, 3) of `before` (N, H, W, 3)."""
  logits0, feats0 = _outputs(classifier, before)
  labels0 = np.asarray(segmenter(before))
  per, feats = {}, []
  for e, x, d in zip(plan, edited, directions):
    logits1, f1 = _outputs(classifier, x)
    per[e.name] = score_edit(before, x, logits0, logits1, labels0, np.asarray(segmenter(x)), e, d, logit_std, reliable)
    feats.append(f1)
  return {
    "per_attribute": per,
    "edited": np.asarray(edited, np.float32),
    "features": np.concatenate(feats),
    "recon_features": feats0,
  }


def evaluate_edits(
  g,
  styles,
  recon,
  directions,
  plan: Sequence[Edit],
  std,
  alpha,
  classifier,
  segmenter,
  logit_std,
  reliable=None,
  batch_size=64,
):
  """Edit every image by every attribute of the plan and score it.

  Args:
    g: Generator; styles: (N, C) flat S of the method; recon: (N, H, W, 3) their
      renders in [-1, 1] (the unedited images).
    directions: (len(plan), N) +1 / -1 (plan_directions or decision_directions).
    plan: Edits; std: (C,) population std of S; alpha: edit strength in stds.
    classifier: object with outputs(images) -> (logits (N, A), features (N, F)).
    segmenter: callable images -> uint8 part labels (N, H, W).
    logit_std: (A,) population std of the logits; reliable: optional bool (A,).

  Returns:
    dict(per_attribute {name: score_edit dict of (N,)}, edited (len(plan), N, H, W, 3)
    float32, features (len(plan) * N, F) classifier features of the edited images,
    recon_features (N, F) of the unedited ones).
  """
  directions = np.asarray(directions, np.float32)
  if directions.shape != (len(plan), len(styles)):
    raise ValueError(f"directions must have shape ({len(plan)}, {len(styles)}), got {directions.shape}")
  edited = np.stack(
    [
      manipulate.render(g, edit_styles(styles, e, std, alpha, d), batch_size=batch_size)
      for e, d in zip(plan, directions)
    ]
  )
  return _score_all(np.asarray(recon, np.float32), edited, directions, plan, classifier, segmenter, logit_std, reliable)


def evaluate_ground_truth(images, attrs, plan: Sequence[Edit], classifier, segmenter, logit_std, reliable=None):
  """The same scores for the true edits: the attribute toggled in the attribute vector, re-rendered.

  Args:
    images: (N, R, R, 3) the original renders in [-1, 1]; attrs: (N, A) their attributes.

  Returns:
    dict like evaluate_edits (recon_features are the originals' features).
  """
  images = np.asarray(images, np.float32)
  edited = np.stack(
    [
      images_lib.from_uint8(render_lib.render_attributes(toggled_attributes(attrs, e.attribute), images.shape[1])[0])
      for e in plan
    ]
  )
  return _score_all(images, edited, plan_directions(attrs, plan), plan, classifier, segmenter, logit_std, reliable)
