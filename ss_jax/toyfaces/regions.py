"""ToyFaces attribute -> segmentation categories, and the registered ToyFaces classifier.

The analysis code (ss_jax.stylespace.attribute_detection, ss_jax.dci.attribute_bank) knows no world; this
module is where the ToyFaces world is bound to it: each attribute's region is the set of
FFHQ-style categories (parts.CATEGORY_OF_PART) of the parts it may change
(attributes.ATTRIBUTES[i].parts); attributes that change "all" parts, or any part outside a
local attribute's list (the global ones), get None: no locally-active restriction.
"""

import numpy as np

from ss_jax.dci import attribute_bank
from ss_jax.dci import sampling as dci_sampling
from ss_jax.toyfaces import attributes as attr_lib
from ss_jax.toyfaces import models
from ss_jax.toyfaces import parts as parts_lib


def attribute_regions() -> dict:
  """{attribute name: sorted tuple of categories, or None for global attributes}."""
  out = {}
  for a in attr_lib.ATTRIBUTES:
    if not a.local or "all" in a.parts:
      out[a.name] = None
    else:
      out[a.name] = tuple(sorted({parts_lib.CATEGORY_OF_PART[p] for p in a.parts}))
  return out


def classifier(directory=None):
  """The shipped (or given) ToyFaces classifier as an attribute_bank.AttributeClassifier."""
  fn = dci_sampling.toyfaces_attribute_function(directory)
  reliable = np.asarray(models.load_classifier(directory).reliable(), bool)
  return attribute_bank.AttributeClassifier(fn, attribute_regions(), reliable)
