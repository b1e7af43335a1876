"""One comparison of edit methods by attribute dependency, end to end (experiments/ad_comparison.py).

`Settings` holds the binary's flags as plain data; `comparison()` turns the comparison's own
ones into an ss_jax.dci.ad_comparison.Settings (strengths and matched changes as floats).
`prepare` loads the generator and the classifier and resolves the reliable attributes and the
targets (errors: CheckpointError, FileNotFoundError, ValueError); `run` is
ad_comparison.run (resumable; every process calls it; errors: ValueError with SettingsMismatch,
jobs.ShardsMissing); `report` (process 0) writes its files and prints the tables.
"""

import dataclasses
import time
from typing import Any, Optional, Sequence

from ss_jax.dci import ad_comparison, ad_population
from ss_jax.runtime import defaults, distributed
from ss_jax.stylegan2.checkpoint import load_generator


@dataclasses.dataclass(frozen=True)
class Settings:
  """The ad_comparison binary's flags (see experiments/ad_comparison.py)."""

  checkpoint: Optional[str]  # None: the embedded ToyFaces generator
  workdir: str
  attributes: Optional[Sequence[str]]  # targets, ['all'], or None: the default targets
  classifier: str
  attribute_names: Optional[Sequence[str]]
  reliable: Optional[Sequence[str]]
  min_accuracy: float
  batch_size: int
  # ad_comparison.Settings' fields, as the flags give them
  min_rate: float
  num_population: int
  num_select: int
  num_eval: int
  alphas: Sequence[str]
  select_alpha: float
  num_exemplars: int
  s_candidates: int
  num_components: int
  row_ranges: Optional[Sequence[str]]
  matches: Sequence[str]
  psi: float

  def comparison(self) -> ad_comparison.Settings:
    """The checked ad_comparison.Settings of these flags."""
    settings = ad_comparison.Settings(
      num_population=self.num_population,
      num_select=self.num_select,
      num_eval=self.num_eval,
      psi=self.psi,
      alphas=tuple(float(a) for a in self.alphas),
      select_alpha=self.select_alpha,
      num_exemplars=self.num_exemplars,
      s_candidates=self.s_candidates,
      num_components=self.num_components,
      row_ranges=tuple(self.row_ranges) if self.row_ranges else None,
      matches=tuple(float(x) for x in self.matches),
      min_rate=self.min_rate,
    )
    settings.check()
    return settings


@dataclasses.dataclass
class Prepared:
  settings: Settings
  comparison: ad_comparison.Settings
  g: Any
  fn: Any  # dci_sampling.AttributeFunction
  reliable: Any  # (A,) bool
  targets: Any  # (A,) bool, or None: every reliable attribute


def prepare(s: Settings) -> Prepared:
  g = load_generator(s.checkpoint or defaults.default_checkpoint())
  fn = ad_population.attribute_function(s.classifier, s.attribute_names)
  reliable = ad_population.reliable_mask(fn.names, s.reliable, s.classifier, s.min_accuracy)
  if reliable is None:
    raise ValueError("--reliable is required with a custom --classifier")
  wanted = s.attributes or (ad_comparison.DEFAULT_TARGETS if s.classifier == "toyfaces" else ["all"])
  targets = None if wanted == ["all"] else ad_population.reliable_mask(fn.names, wanted)  # validates the names
  return Prepared(s, s.comparison(), g, fn, reliable, targets)


def run(p: Prepared) -> dict:
  """ad_comparison.run from the prepared settings; the result carries its start time ('t0')."""
  progress = (
    (lambda total, label: distributed.main_progress(total, label, "renders")) if distributed.is_main() else None
  )
  t0 = time.time()
  result = ad_comparison.run(
    p.settings.workdir,
    p.g,
    p.fn,
    p.reliable,
    p.comparison,
    p.settings.batch_size,
    distributed.log,
    progress,
    targets=p.targets,
  )
  return {"result": result, "t0": t0}


def report(p: Prepared, outcome: dict):
  """Process 0: comparison.md / .json, ad.md / .json, ad_<attribute>.png; prints the tables."""
  workdir, t0 = p.settings.workdir, outcome["t0"]
  md = ad_comparison.write_outputs(workdir, outcome["result"], {"seconds": time.time() - t0})
  print(md)
  print(f"\nwrote comparison.md/.json, ad.md/.json and ad_<attribute>.png to {workdir} in {time.time() - t0:.0f}s")
