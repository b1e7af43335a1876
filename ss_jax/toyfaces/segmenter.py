"""Registers the ToyFaces segmenter ("toyfaces") and its category table with the analysis'
segmentation interface (ss_jax/stylespace/segmentation.py), which imports this module on first use
of the name."""

from ss_jax.stylespace import segmentation
from ss_jax.toyfaces import models, parts


def toyfaces_table():
  """ToyFaces part indices merged into the FFHQ categories (same names and ids as FFHQ)."""
  merge = {}
  for part in parts.PART_NAMES:
    merge.setdefault(parts.CATEGORY_OF_PART[part], []).append(part)
  return segmentation.table_from_dict("toyfaces", segmentation.FFHQ_CATEGORIES, parts.PART_NAMES, merge)


def _segmenter():
  # Loaded eagerly so a missing shipped model is reported before any work starts.
  return models.load_segmenter()


segmentation.register_table("toyfaces", toyfaces_table)
segmentation.register_segmenter("toyfaces", _segmenter, "toyfaces")
