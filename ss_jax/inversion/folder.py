"""Inverting a folder of images end to end (the pipeline of experiments/invert.py).

`InvertConfig` holds every setting as plain data (the binary's flags map onto its fields one to
one); `run(config)` checks the images and generator, inverts in resumable batches
(batch.make_job / batch.run_job: a rerun with the same settings skips finished batches, other
settings are refused) and writes codes.npz, reconstructions/, reconstructions.png, edits.png
(with edit_channels) and invert.json to config.workdir. Errors are raised as one-line
FileNotFoundError / ValueError (CheckpointError, SettingsMismatch included).
"""

import dataclasses
import pathlib
import sys
from typing import Optional

import numpy as np

from ss_jax.inversion import batch as batch_lib
from ss_jax.inversion import encoder as encoder_lib
from ss_jax.inversion import lpips
from ss_jax.inversion import codes as inversion_codes
from ss_jax.inversion import optimise as inversion
from ss_jax.runtime import defaults, images, jobs
from ss_jax.stylegan2.checkpoint import load_generator
from ss_jax.stylespace import manipulate, stats

DEFAULT_STEPS = {"optimise": 1000, "hybrid": 100, "encoder": 0}


@dataclasses.dataclass
class InvertConfig:
  images: Optional[str] = None  # a folder of images or one image file
  workdir: Optional[str] = None  # output folder (resumable)
  space: str = "s"  # w, wplus or s
  mode: str = "optimise"  # optimise, encoder or hybrid
  checkpoint: Optional[str] = None  # default: the embedded ToyFaces generator
  encoder: Optional[str] = None  # default: the shipped encoder
  steps: Optional[int] = None  # default: DEFAULT_STEPS[mode]
  lr: float = 0.1
  lpips: str = "alex"  # alex, vgg or none
  perceptual_weight: float = 1.0
  mse_weight: float = 1.0
  noise: bool = False
  noise_reg: float = 1e5
  batch_size: int = 8
  resize: bool = False
  seed: int = 0
  history_every: int = 10
  chunk_steps: int = 100
  edit_channels: Optional[str] = None
  alphas: str = "-10,-5,0,5,10"
  stats: Optional[str] = None
  grid_images: int = 16
  min_cell: int = 64


def get_config() -> InvertConfig:
  return InvertConfig()


def _load_lpips(cfg, g):
  if cfg.lpips == "none" or cfg.perceptual_weight == 0:
    return None
  lp = lpips.load_lpips(cfg.lpips)
  size = getattr(lp, "min_size", 0)
  if g.config.img_resolution < size:
    raise ValueError(
      f"LPIPS {cfg.lpips} needs images of at least {size}px, the generator makes "
      f"{g.config.img_resolution}px; pass --lpips=none"
    )
  return lp


def _prepare(cfg, steps):
  """Generator, image files, edit plan, encoder, LPIPS and warnings; fails before any work."""
  if steps < 0 or cfg.batch_size < 1 or cfg.history_every < 1 or cfg.chunk_steps < 1:
    raise ValueError("--steps must be >= 0 and --batch_size, --history_every, --chunk_steps >= 1")
  files = images.image_files(cfg.images)
  g = load_generator(cfg.checkpoint or defaults.default_checkpoint())
  size, channels = g.config.img_resolution, g.config.img_channels
  edit = None
  if cfg.edit_channels:
    if not cfg.stats:
      raise ValueError("--edit_channels needs --stats (the std of each channel)")
    edit = (
      manipulate.resolve_channels(g.layout, cfg.edit_channels),
      manipulate.parse_alphas(cfg.alphas),
      stats.load(cfg.stats, g.layout)["std"],
    )
  enc = encoder_lib.load_encoder(cfg.encoder, generator=g) if cfg.mode != "optimise" else None
  perceptual = _load_lpips(cfg, g)
  notes = []
  for p in files:  # headers only: fail on unreadable / wrong-size files before any work
    try:
      notes += images.check_image(p, size, cfg.resize, channels)
    except ValueError as e:
      hint = " (pass --resize to resize)" if "expected" in str(e) and not cfg.resize else ""
      raise ValueError(f"{e}{hint}") from e
  return g, files, edit, enc, perceptual, notes


def _write_outputs(cfg, g, job, files, steps, edit):
  workdir = pathlib.Path(cfg.workdir)
  size, channels = g.config.img_resolution, g.config.img_channels
  out = job.read_all()
  names = np.array([p.name for p in files])
  result = {
    "code": out["code"],
    "s": out["s"],
    "names": names,
    "history": out["history"],
    "history_steps": np.arange(0, steps, cfg.history_every),
    "space": np.array(cfg.space),
    "mode": np.array(cfg.mode),
    **{k: v for k, v in out.items() if k.startswith(("loss_", "noise_"))},
  }
  jobs.atomic_save_npz(workdir / "codes.npz", **result)
  for p, r in zip(files, out["reconstruction"]):
    images.save_png(workdir / "reconstructions" / f"{p.stem}.png", r)
  k = min(len(files), max(cfg.grid_images, 1))
  originals = np.stack([images.read_image(p, size, cfg.resize, channels)[0] for p in files[:k]])
  stems = [p.stem for p in files[:k]]
  images.save_png(
    workdir / "reconstructions.png",
    batch_lib.comparison_grid(originals, out["reconstruction"][:k], stems, min_cell=cfg.min_cell),
  )
  written = ["codes.npz", "reconstructions/", "reconstructions.png"]
  if edit is not None:
    idx, alphas, std = edit
    noise = [out[f"noise_{j}"][:k] for j in range(len(g.buffers["noise"]))] if cfg.noise else None
    grid = batch_lib.edit_grid(g, out["s"][:k], idx, alphas, std, noise=noise, row_names=stems, min_cell=cfg.min_cell)
    images.save_png(workdir / "edits.png", grid)
    written.append("edits.png")
  summary = dict(
    job.spec,
    mean_losses={k[5:]: float(np.mean(v)) for k, v in out.items() if k.startswith("loss_")},
    edit_channels=cfg.edit_channels,
    alphas=cfg.alphas if edit else None,
    stats=cfg.stats,
  )
  jobs.atomic_write_json(workdir / "invert.json", summary)
  written.append("invert.json")
  losses_txt = ", ".join(f"{k} {v:.4g}" for k, v in summary["mean_losses"].items())
  print(f"wrote {', '.join(written)} to {workdir} (mean losses: {losses_txt})")


def run(cfg: InvertConfig, log=sys.stderr):
  """Inverts cfg.images into cfg.workdir (see the module docstring); progress lines go to `log`."""
  steps = DEFAULT_STEPS[cfg.mode] if cfg.steps is None else cfg.steps
  if cfg.mode == "encoder":
    steps = 0
  g, files, edit, enc, perceptual, notes = _prepare(cfg, steps)
  for n in notes:
    print(f"warning: {n}", file=log)
  size, channels = g.config.img_resolution, g.config.img_channels
  losses = inversion.Losses(
    mse=cfg.mse_weight, perceptual=cfg.perceptual_weight if perceptual else 0.0, noise_reg=cfg.noise_reg
  )
  settings = {
    "space": cfg.space,
    "mode": cfg.mode,
    "steps": steps,
    "lr": cfg.lr,
    "losses": losses.to_dict(),
    "lpips": cfg.lpips if perceptual else "none",
    "noise": cfg.noise,
    "resize": cfg.resize,
    "seed": cfg.seed,
    "history_every": cfg.history_every,
    "encoder": (cfg.encoder or "shipped") if enc is not None else None,
    "spread": {"num_samples": inversion_codes.SPREAD_SAMPLES, "seed": inversion_codes.SPREAD_SEED},
  }
  job = batch_lib.make_job(
    pathlib.Path(cfg.workdir), g, [p.name for p in files], batch_lib.files_digest(files), cfg.batch_size, settings
  )
  num_batches = job.num_shards
  print(
    f"inverting {len(files)} image(s) into {cfg.space} ({cfg.mode}, {steps} steps, lpips {settings['lpips']}, "
    f"noise maps {'optimised' if cfg.noise else 'const'}): {num_batches} batch(es), "
    f"{num_batches - len(job.pending())} already done",
    file=log,
  )
  if enc is not None and cfg.space == "w":
    print("note: the encoder predicts W+; the W code is the mean of its rows", file=log)

  def load(a, b):
    return images.from_uint8(np.stack([images.read_image(p, size, cfg.resize, channels)[0] for p in files[a:b]]))

  def encode(target):
    codes = enc.encode(target)
    return np.asarray(codes["wplus"]).mean(axis=1) if cfg.space == "w" else codes[cfg.space]

  report, finished = batch_lib.progress_lines(job, steps, stream=log)  # rate, ETA, final losses
  batch_lib.run_job(
    job,
    g,
    load,
    cfg.space,
    steps,
    encode=encode if enc is not None else None,
    progress=report,
    finished=finished,
    lr=cfg.lr,
    losses=losses,
    perceptual=perceptual,
    optimize_noise=cfg.noise,
    seed=cfg.seed,
    history_every=cfg.history_every,
    chunk_size=cfg.chunk_steps,
  )
  _write_outputs(cfg, g, job, files, steps, edit)
