"""The population behind attribute dependency, and the classifier that reads it.

`population` samples generator codes and logits (w, S, logits of seeds seed..; the DCI sampling
jobs under WORKDIR/population/, resumable, on every process); `logit_std` gives the attributes'
population stds sigma_i that AD is measured in. `attribute_function` builds the classifier
('toyfaces' or a package.module:function), `reliable_mask` / `toyfaces_reliable` the attributes
it reads reliably (the "others" of AD, the targets of ss_jax.dci.ad_comparison).
"""

import importlib
import pathlib

import numpy as np

from ss_jax.dci import sampling as dci_sampling
from ss_jax.runtime import distributed, outputs

POPULATION_DIR = "population"


def population(
  workdir,
  g,
  attribute_fn,
  num_samples,
  seed=0,
  psi=1.0,
  samples_per_shard=1000,
  batch_size=128,
  progress=None,
  mesh=None,
) -> dict:
  """w (N, w_dim), s (N, C), logits (N, A) of seeds seed .. seed + N - 1 (resumable, on every process).

  The DCI sampling jobs under workdir/population/ (same conventions as experiments.dci).
  """
  if distributed.is_main():
    outputs.claim(workdir)  # the workdir holds population/ and the edit jobs: one ss-jax folder
  sjobs = dci_sampling.make_jobs(
    pathlib.Path(workdir) / POPULATION_DIR,
    g,
    num_samples,
    attribute_fn,
    seed=seed,
    psi=psi,
    samples_per_shard=samples_per_shard,
  )
  dci_sampling.run_sampling(g, sjobs, attribute_fn, batch_size=batch_size, mesh=mesh, progress=progress)
  distributed.wait_for_shards(sjobs.codes, sjobs.logits)
  read = dci_sampling.read_array
  return {"w": read(sjobs.codes, "w"), "s": read(sjobs.codes, "s"), "logits": read(sjobs.logits, "logits")}


def logit_std(logits, eps=1e-6):
  """(A,) float64 population std of each logit (floored at eps)."""
  return np.maximum(np.asarray(logits, np.float64).std(0), eps)


def toyfaces_reliable(names, min_accuracy=0.9, directory=None):
  """(A,) bool: held-out accuracy (stored with the ToyFaces classifier, 1,024 renders) >= min_accuracy."""
  from ss_jax.toyfaces import models

  acc = models.load_classifier(directory).info.get("heldout_metrics", {}).get("accuracy", {})
  if not acc:
    raise ValueError("the classifier carries no held-out accuracy: pass the reliable attributes explicitly")
  return np.array([acc.get(n, 0.0) >= min_accuracy for n in names])


def reliable_mask(names, listed=None, classifier="toyfaces", min_accuracy=0.9):
  """(A,) bool: the `listed` attributes; else, for the ToyFaces classifier, toyfaces_reliable; else None."""
  if listed:
    unknown = sorted(set(listed) - set(names))
    if unknown:
      raise ValueError(f"unknown attributes {unknown}; choose from {', '.join(names)}")
    return np.array([n in listed for n in names])
  return toyfaces_reliable(names, min_accuracy) if classifier == "toyfaces" else None


def attribute_function(spec="toyfaces", names=None) -> dci_sampling.AttributeFunction:
  """'toyfaces' (the shipped classifier, traceable) or 'package.module:function' (images -> (N, A) logits,
  called on the host with numpy batches; `names` required)."""
  if spec == "toyfaces":
    return dci_sampling.toyfaces_attribute_function()
  if ":" not in str(spec):
    raise ValueError(f"unknown classifier {spec!r}: use 'toyfaces' or 'package.module:function'")
  if not names:
    raise ValueError("a classifier given as package.module:function needs its attribute names")
  mod, attr = str(spec).split(":", 1)
  try:
    fn = getattr(importlib.import_module(mod), attr)
  except (ImportError, AttributeError) as e:
    raise ValueError(f"cannot load classifier {spec!r}: {e}") from e
  return dci_sampling.AttributeFunction(fn, tuple(names), f"{spec}:{','.join(names)}", traceable=False)
