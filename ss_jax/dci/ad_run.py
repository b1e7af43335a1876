"""One attribute-dependency run end to end (the pipeline of experiments/attribute_dependency.py).

`Settings` holds the binary's flags as plain data. `run` builds the classifier and the
population (ss_jax.dci.ad_population), the user's edits of the target (ss_jax.dci.ad_edits),
renders and classifies the held-out images (the resumable job of ss_jax.dci.attribute_dependency)
and returns the AD curves; its errors are CheckpointError, FileNotFoundError, ValueError
(SettingsMismatch included) and jobs.ShardsMissing. `report` (process 0) writes ad.json, ad.md
and ad_<attribute>.png and prints the curves.
"""

import dataclasses
from typing import Any, Optional, Sequence

from ss_jax.dci import ad_edits, ad_population
from ss_jax.dci import attribute_dependency as ad
from ss_jax.runtime import defaults, distributed, jobs
from ss_jax.stylegan2.checkpoint import load_generator
from ss_jax.stylespace import directions


@dataclasses.dataclass(frozen=True)
class Settings:
  """The attribute_dependency binary's flags (see experiments/attribute_dependency.py)."""

  checkpoint: Optional[str]  # None: the embedded ToyFaces generator
  workdir: str
  attribute: str  # the target
  classifier: str  # 'toyfaces' or package.module:function
  attribute_names: Optional[Sequence[str]]
  others: Optional[Sequence[str]]
  min_accuracy: float
  channels: Sequence[str]  # S edits: channel groups 'L_C+L_C'
  directions: Sequence[str]  # W / W+ direction .npy files
  rows: str  # 'all' or a row range for the (w_dim,) directions
  interfacegan: bool
  alphas: Sequence[str]
  match: float
  num_images: int
  eval_seed: int
  num_population: int
  population_seed: int
  psi: float
  batch_size: int
  images_per_shard: int


@dataclasses.dataclass
class Result:
  results: Any  # ad.evaluate's curves
  job: jobs.ShardedJob  # the held-out job
  names: list  # attribute names
  others: Any  # (A,) bool or None


def _check_seeds(s: Settings):
  if s.eval_seed < s.population_seed + s.num_population and s.population_seed < s.eval_seed + s.num_images:
    raise ValueError("the held-out seeds overlap the population seeds: they must be disjoint")


def run(s: Settings) -> Result:
  """Population, edits, held-out renders (resumable; every process calls it), AD curves."""
  fn = ad_population.attribute_function(s.classifier, s.attribute_names)
  names = list(fn.names)
  if s.attribute not in names:
    raise ValueError(f"unknown attribute {s.attribute!r}; choose from {', '.join(names)}")
  g = load_generator(s.checkpoint or defaults.default_checkpoint())
  others = ad_population.reliable_mask(names, s.others, s.classifier, s.min_accuracy)
  _check_seeds(s)
  alphas = [float(a) for a in s.alphas]
  rows = None if s.rows == "all" else directions.parse_rows(s.rows, g.config.num_ws)
  progress = lambda n, label: distributed.main_progress(n, label, "renders")
  pop = ad_population.population(
    s.workdir,
    g,
    fn,
    s.num_population,
    s.population_seed,
    s.psi,
    batch_size=s.batch_size,
    progress=progress(s.num_population, "population"),
  )
  t = names.index(s.attribute)
  edits = ad_edits.make_edits(g, pop, t, s.channels, s.directions, rows, s.interfacegan)
  seeds = range(s.eval_seed, s.eval_seed + s.num_images)
  job = ad.make_job(s.workdir, "ad_heldout", g, fn, seeds, edits, alphas, s.psi, s.images_per_shard)
  base, edited = ad.run_and_read(job, g, edits, fn, s.batch_size, progress(ad.num_renders(job), "held-out"))
  std = ad_population.logit_std(pop["logits"])
  results = ad.evaluate(base, edited, edits, [t] * len(edits), alphas, std, names, s.match, others)
  return Result(results, job, names, others)


def report(s: Settings, r: Result):
  """Process 0: writes ad.json, ad.md and the plots to the workdir and prints the curves."""
  settings = dict(
    r.job.spec,
    others=None if r.others is None else [n for n, o in zip(r.names, r.others) if o],
    num_population=s.num_population,
    population_seed=s.population_seed,
  )
  pngs = ad.write_outputs(s.workdir, r.results, s.match, settings)
  print(ad.curves_markdown(r.results, s.match))
  print(f"\nwrote ad.json, ad.md and {', '.join(pngs)} to {s.workdir}")
