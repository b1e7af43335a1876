"""One DCI run end to end (the pipeline of experiments/dci.py): sampling, fits, outputs.

`Settings` holds the binary's flags as plain data (one field per flag). `prepare` checks them,
loads the generator and opens the resumable sampling jobs (ss_jax.dci.sampling), before any
work: its errors are CheckpointError, FileNotFoundError or ValueError (SettingsMismatch
included). `run` samples this process's missing shards; with max_shards it stops once every
process agrees that shards are left; else it waits for the other processes' shards
(jobs.ShardsMissing when they never show up) and process 0 fits every space and writes
dci.json, dci.md, importance.npz and the heat maps (ss_jax.dci.results.fit_and_report).
"""

import dataclasses
import pathlib
import time
from typing import Any, Optional, Sequence

from ss_jax.dci import results as results_lib
from ss_jax.dci import sampling as dci_sampling
from ss_jax.runtime import defaults, distributed
from ss_jax.stylegan2.checkpoint import load_generator


@dataclasses.dataclass(frozen=True)
class Settings:
  """The dci binary's flags (see experiments/dci.py for their meaning)."""

  checkpoint: Optional[str]  # None: the embedded ToyFaces generator
  num_samples: int
  spaces: Sequence[str]
  control_seed: int
  method: str
  workdir: str
  logits: Optional[str]  # (num_samples, A) .npy; None: the ToyFaces classifier
  attribute_names: Optional[Sequence[str]]
  batch_size: int
  seed: int
  dci_seed: int
  psi: float
  samples_per_shard: int
  max_shards: Optional[int]


@dataclasses.dataclass
class Prepared:
  """What `prepare` opened: the generator, the attribute source and the sampling jobs."""

  settings: Settings
  g: Any
  logits: Any  # (num_samples, A) from the file, or None (the classifier's, read after sampling)
  attr_fn: Optional[dci_sampling.AttributeFunction]
  names: list
  source: dict
  sjobs: dci_sampling.SamplingJobs


def prepare(s: Settings) -> Prepared:
  """Checks the spaces, loads the generator and the attribute source, opens the sampling jobs."""
  bad = [x for x in s.spaces if x not in dci_sampling.SPACES]
  if bad or not s.spaces:
    raise ValueError(f"--spaces: unknown {bad}; choose from {', '.join(dci_sampling.SPACES)}")
  checkpoint = s.checkpoint or defaults.default_checkpoint()
  g = load_generator(checkpoint)
  logits, attr_fn, names, source = dci_sampling.attribute_source(s.logits, s.attribute_names, s.num_samples)
  sjobs = dci_sampling.make_jobs(
    s.workdir,
    g,
    s.num_samples,
    attr_fn,
    seed=s.seed,
    psi=s.psi,
    samples_per_shard=s.samples_per_shard,
    extra_spec={"checkpoint": str(pathlib.Path(checkpoint).absolute())},
  )
  return Prepared(s, g, logits, attr_fn, names, source, sjobs)


def run(p: Prepared):
  """Samples, then (process 0) fits and writes; returns fit_and_report's results, or None when this
  process writes nothing or the run stopped at max_shards."""
  s, sjobs, log = p.settings, p.sjobs, distributed.log
  done = sjobs.done_samples()
  what = "codes + classifier logits" if p.attr_fn else "codes"
  log(
    f"DCI sampling: {s.num_samples} samples ({what}), psi={s.psi}, seed={s.seed}, "
    f"{len(sjobs.ranges)} shards, {done} samples already done, in {s.workdir}; {distributed.describe()}"
  )
  t0 = time.time()
  progress = dci_sampling.main_progress(sjobs)
  computed = dci_sampling.run_sampling(
    p.g, sjobs, p.attr_fn, batch_size=s.batch_size, progress=progress, max_shards=s.max_shards
  )
  sample_s = time.time() - t0
  if s.max_shards is not None:
    distributed.barrier("dci/max_shards")  # every process has written; then one decision for all
    if distributed.agree_max(int(not sjobs.complete())):
      log(
        f"stopped after {computed} samples (--max_shards); {sjobs.done_samples()}/{s.num_samples} done, rerun to continue"
      )
      return None
  distributed.wait_for_shards(*[j for j in (sjobs.codes, sjobs.logits) if j is not None])
  if not distributed.is_main():
    return None  # process 0 fits and writes; the others are done
  logits = p.logits if p.logits is not None else dci_sampling.read_array(sjobs.logits, "logits")
  return results_lib.fit_and_report(
    s.workdir,
    sjobs.codes,
    logits,
    p.g,
    s.spaces,
    s.method,
    s.dci_seed,
    p.names,
    p.source,
    sample_s,
    computed,
    what,
    control_seed=s.control_seed,
  )
