"""One attribute-channels run end to end (the pipeline of experiments/attribute_channels.py).

`Settings` holds the binary's flags as plain data. `run` opens the workdir, loads the generator
and runs one of the two modes: bank mode (a classifier or a logits file: ss_jax.dci.attribute_bank,
a checked ranking with its detection curve) or exemplar mode (given seeds or codes:
ss_jax.stylespace.attribute_channels, a ranking and its self-resampling curve). Errors:
FileNotFoundError, ValueError (CheckpointError, SettingsMismatch and unknown names included).
"""

import dataclasses
import pathlib
from typing import Optional, Sequence

import jax

from ss_jax.dci import attribute_bank as ab
from ss_jax.runtime import defaults, jobs
from ss_jax.stylegan2.checkpoint import load_generator
from ss_jax.stylespace import attribute_channels as ac


@dataclasses.dataclass(frozen=True)
class Settings:
  """The attribute_channels binary's flags (see experiments/attribute_channels.py)."""

  checkpoint: Optional[str]  # None: the embedded ToyFaces generator
  classifier: Optional[str]  # bank mode: a registered classifier
  logits: Optional[str]  # bank mode: a (bank_size, A) .npy
  attribute: str
  bank_size: int
  bank_seed: int
  bank_workdir: Optional[str]
  num_exemplars: int
  num_reference: int
  num_eval: int
  verified: Optional[str]
  alphas: Sequence[str]
  edit_top: int
  samples_per_shard: int
  stats: Optional[str]
  seeds: Optional[str]  # exemplar mode
  codes: Optional[str]  # exemplar mode
  psi: float
  lowest: bool
  include_torgb: bool
  restrict_to: Optional[str]
  top_k: int
  draws: int
  curve_seed: int
  batch_size: int
  workdir: str


def check_settings(s: Settings) -> ab.CheckSettings:
  """The bank mode's per-attribute check settings."""
  return ab.CheckSettings(
    s.num_eval,
    s.num_exemplars,
    s.num_reference,
    num_draws=s.draws,
    split_seed=s.curve_seed,
    curve_seed=s.curve_seed,
    alphas=tuple(float(a) for a in s.alphas),
    edit_top=s.edit_top,
    lowest=s.lowest,
    include_torgb=s.include_torgb,
  )


def bank_mode(s: Settings, out, g, checkpoint):
  """ab.bank_mode from the settings; checkpoint: the generator's absolute path (in the job's settings)."""
  return ab.bank_mode(
    g,
    out,
    check_settings(s),
    s.attribute,
    s.classifier,
    s.logits,
    bank_size=s.bank_size,
    bank_seed=s.bank_seed,
    bank_workdir=s.bank_workdir,
    psi=s.psi,
    samples_per_shard=s.samples_per_shard,
    checkpoint=checkpoint,
    verified=s.verified,
    stats_path=s.stats,
    batch_size=s.batch_size,
  )


def run(s: Settings):
  """Bank mode with a classifier or logits file, else exemplar mode; writes the outputs to s.workdir."""
  out = jobs.open_workdir(s.workdir, jax.process_index())  # never a folder of the user's files
  if sum(x is not None for x in (s.classifier or s.logits, s.seeds, s.codes)) != 1:
    raise ValueError("give exactly one of --classifier / --logits (bank mode), --seeds, --codes")
  checkpoint = s.checkpoint or defaults.default_checkpoint()
  g = load_generator(checkpoint)
  if s.classifier or s.logits:
    return bank_mode(s, out, g, str(pathlib.Path(checkpoint).absolute()))
  restrict = ac.channel_list(s.restrict_to) if s.restrict_to else None
  return ac.exemplar_mode(
    g,
    out,
    s.stats,
    s.seeds,
    s.codes,
    s.psi,
    s.include_torgb,
    restrict,
    s.top_k,
    s.draws,
    s.curve_seed,
    s.batch_size,
  )
