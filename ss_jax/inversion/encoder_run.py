"""One invocation of the encoder trainer (the pipeline of experiments/train_encoder.py).

`Settings` holds the binary's flags as plain data. `train` runs (or resumes) a training chunk in
the workdir (ss_jax.inversion.encoder_trainer.train with `train_settings`); `export` evaluates
the latest checkpoint, writes the encoder and, with `grid`, a PNG of inputs and their
reconstructions G(S), G(W+), G(w_avg). Errors a user can cause: FileNotFoundError and
jobs.SettingsMismatch (a resume with other settings).
"""

import dataclasses
from typing import Callable, Optional

from ss_jax.inversion import encoder_trainer
from ss_jax.inversion import encoder_training as et
from ss_jax.runtime import defaults
from ss_jax.stylegan2 import checkpoint as checkpoint_lib


def _print(msg):
  print(msg, flush=True)


@dataclasses.dataclass(frozen=True)
class Settings:
  """The train_encoder binary's flags (see experiments/train_encoder.py)."""

  workdir: str
  checkpoint: Optional[str]  # None: the embedded ToyFaces generator
  steps: int
  batch_size: int
  learning_rate: float
  image_weight: float
  image_batch: int
  mixing_prob: float
  psi_min: float
  psi_max: float
  reuse: int
  max_seconds: Optional[float]
  max_steps: Optional[int]
  eval_images: int
  render_images: int
  export: Optional[str]  # export to this directory instead of training
  grid: Optional[str]
  log_every_s: float
  ckpt_every_s: float
  overwrite: bool


def load_generator(s: Settings):
  return checkpoint_lib.load_generator(s.checkpoint or defaults.default_checkpoint())


def train_settings(s: Settings) -> et.TrainSettings:
  """The run's settings (the same on every chunk: a resume with others is refused)."""
  return et.TrainSettings(
    steps=s.steps,
    batch_size=s.batch_size,
    learning_rate=s.learning_rate,
    image_weight=s.image_weight,
    image_batch=s.image_batch,
    mixing_prob=s.mixing_prob,
    psi_min=s.psi_min,
    psi_max=s.psi_max,
    reuse=s.reuse,
  )


def train(s: Settings, g, command: str, should_stop: Callable = lambda: False, log: Callable = _print):
  """One training chunk (max_seconds / max_steps / should_stop end it with a checkpoint)."""
  return encoder_trainer.train(
    g,
    s.workdir,
    train_settings(s),
    max_seconds=s.max_seconds,
    max_steps=s.max_steps,
    eval_images=s.eval_images,
    log_every_s=s.log_every_s,
    ckpt_every_s=s.ckpt_every_s,
    should_stop=should_stop,
    command=command,
    log=log,
  )


def export(s: Settings, g, command: str, log: Callable = _print):
  """Evaluates the latest checkpoint, writes the encoder to s.export and, with s.grid, the grid PNG."""
  encoder_trainer.export(
    s.workdir,
    s.export,
    g,
    eval_images=s.eval_images,
    render_images=s.render_images,
    command=command,
    log=log,
    overwrite=s.overwrite,
  )
  if s.grid:
    from ss_jax.inversion import encoder
    from PIL import Image

    enc = encoder.load_encoder(s.export, generator=g)
    images = (
      et.heldout_renders(8, g.config.img_resolution)
      if s.render_images
      else et.generated_heldout(g, 8, encoder_trainer.load_run(s.workdir)[0])[0]
    )
    Image.fromarray(et.comparison_grid(enc, g, images)).save(s.grid)
    log(f"grid (rows: input, G(S), G(W+), G(w_avg)) written to {s.grid}")
