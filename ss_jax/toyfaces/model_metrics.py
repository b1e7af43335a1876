"""Held-out metrics of the ToyFaces helper models (segmenter and classifier).

Segmenter: confusion matrix, per-part IoU and pixel accuracy; classifier: per-attribute
accuracy and ROC AUC. ss_jax.toyfaces.train_helpers reports them on held-out renders when it
exports a model (also on degraded renders, its `degrade`).
"""

import numpy as np

from ss_jax.toyfaces import models
from ss_jax.toyfaces import parts as parts_lib


def confusion_matrix(pred: np.ndarray, true: np.ndarray, num_classes: int) -> np.ndarray:
  """int64 [K, K] counts; rows are true classes, columns predictions."""
  idx = np.asarray(true, np.int64).ravel() * num_classes + np.asarray(pred, np.int64).ravel()
  return np.bincount(idx, minlength=num_classes**2).reshape(num_classes, num_classes)


def iou_per_class(conf: np.ndarray) -> np.ndarray:
  """float64 [K] intersection over union; NaN for classes never seen nor
  predicted."""
  inter = np.diag(conf).astype(np.float64)
  union = conf.sum(0) + conf.sum(1) - inter
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(union > 0, inter / union, np.nan)


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """Area under the ROC curve per column (Mann-Whitney U with mid-ranks).

  Args:
    scores: float [N, A] (or [N]).
    labels: {0, 1} [N, A] (or [N]).

  Returns:
    float64 [A] (or scalar); NaN where a column has a single class.
  """
  scores, labels = np.asarray(scores, np.float64), np.asarray(labels) > 0.5
  squeeze = scores.ndim == 1
  scores, labels = scores.reshape(len(scores), -1), labels.reshape(len(labels), -1)
  out = np.full(scores.shape[1], np.nan)
  for j in range(scores.shape[1]):
    s, y = scores[:, j], labels[:, j]
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
      continue
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    sorted_s = s[order]
    # Mid-ranks for ties: every member of a tie group gets the group's mean.
    _, first, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    mid = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(mid, counts)
    out[j] = (ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
  return out[0] if squeeze else out


def evaluate_segmenter(segmenter: models.Segmenter, images: np.ndarray, labels: np.ndarray) -> dict:
  """mIoU, per-part IoU and pixel accuracy of `segmenter` on a labelled set.

  Args:
    images: float32 [N, H, W, 3] in [-1, 1].
    labels: uint8 [N, H, W] true part labels.
  """
  pred = segmenter.segment(images)
  conf = confusion_matrix(pred, labels, parts_lib.NUM_PARTS)
  iou = iou_per_class(conf)
  return {
    "miou": float(np.nanmean(iou)),
    "pixel_accuracy": float(np.trace(conf) / conf.sum()),
    "iou": {n: float(v) for n, v in zip(parts_lib.PART_NAMES, iou)},
  }


def evaluate_classifier(classifier: models.Classifier, images: np.ndarray, attrs: np.ndarray) -> dict:
  """Mean AUC / accuracy and per-attribute accuracy and AUC (logit > 0).

  Args:
    images: float32 [N, H, W, 3] in [-1, 1].
    attrs: float32 [N, A] raw attributes of the images.
  """
  logits = classifier.classify(images)
  y = models.binary_targets(attrs, classifier.config)
  acc = ((logits > 0) == (y > 0.5)).mean(0)
  auc = roc_auc(logits, y)
  names = classifier.attribute_names
  return {
    "mean_auc": float(np.nanmean(auc)),
    "mean_accuracy": float(acc.mean()),
    "accuracy": {n: float(v) for n, v in zip(names, acc)},
    "auc": {n: float(v) for n, v in zip(names, auc)},
  }
