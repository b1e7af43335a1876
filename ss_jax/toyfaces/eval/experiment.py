"""The ToyFaces inversion/editing comparison end to end (the pipeline of experiments/inversion_table.py).

`TableConfig` holds every setting as plain data (the binary's flags map onto its fields one to one);
`run(config)` inverts held-out renders with every method, edits the reconstructions, scores them and
writes table.md, results.json, figure.png and channels.json (or pilot.md / pilot.json with
config.pilot) to config.workdir. Resumable: S statistics (a ShardedJob), the exemplar bank and
each method's codes are cached with their settings (other settings are refused). Measurements:
inversion.py; tables and figure: inversion_table.py. Errors are one-line FileNotFoundError /
ValueError.
"""

import dataclasses
import json
import pathlib
import sys
import time
from typing import Optional

import numpy as np

from ss_jax.runtime import fingerprints
from ss_jax.inversion import encoder as encoder_lib
from ss_jax.inversion import codes as inversion_codes
from ss_jax.inversion import optimise as inversion
from ss_jax.runtime import defaults, images, jobs
from ss_jax.stylegan2 import sampling as sampling_lib
from ss_jax.stylegan2.checkpoint import load_generator
from ss_jax.stylespace import manipulate, stats
from ss_jax.toyfaces import attributes as attr_lib
from ss_jax.toyfaces import evaluate, models
from ss_jax.toyfaces.eval import edit_scores
from ss_jax.toyfaces.eval import inversion as ie
from ss_jax.toyfaces.eval import inversion_table as inversion_table_lib


@dataclasses.dataclass
class TableConfig:
  workdir: Optional[str] = None
  checkpoint: Optional[str] = None
  encoder: Optional[str] = None
  methods: list = dataclasses.field(default_factory=lambda: ["w", "wplus", "s", "encoder", "hybrid"])
  num_images: int = 32
  steps: int = 300
  hybrid_steps: int = 100
  lr: float = 0.1
  lpips: str = "alex"
  attributes: Optional[list] = None
  num_channels: Optional[int] = None
  alpha: Optional[float] = None
  num_exemplars: int = 50
  bank_size: int = 2000
  stats_samples: int = 10_000
  reference_images: int = 2000
  figure_rows: int = 4
  chunk_steps: int = 25
  batch_size: int = 64
  pilot: bool = False
  pilot_attributes: Optional[list] = None
  pilot_images: int = 64


def get_config() -> TableConfig:
  return TableConfig()


PILOT_SEED0 = 100_000
FLOOR_SETS = 5  # disjoint render sets of the FD floor (mean ± std)


def _log(msg, t0=[time.time()]):  # pylint: disable=dangerous-default-value
  print(f"[{time.time() - t0[0]:7.1f}s] {msg}", file=sys.stderr, flush=True)


def _cached(path, spec, compute):
  """Arrays of `path` (an .npz with its settings) if computed with `spec`; else compute() and save atomically."""
  spec = json.loads(json.dumps(spec, sort_keys=True))
  if path.exists():
    data = jobs.load_npz(path)
    old = json.loads(str(data.pop("settings_json")))
    if old != spec:
      diff = sorted(k for k in set(old) | set(spec) if old.get(k) != spec.get(k))
      raise ValueError(
        f"{path} was computed with other settings ({', '.join(diff)}); use another --workdir or delete that file"
      )
    return data, True
  data = compute()
  jobs.atomic_save_npz(path, settings_json=np.array(json.dumps(spec, sort_keys=True)), **data)
  return data, False


def _load_encoder(cfg, g):
  path = pathlib.Path(cfg.encoder) if cfg.encoder else encoder_lib.ENCODER_DIR
  if (path / "checkpoints").is_dir() and not (path / "config.json").is_file():
    from ss_jax.inversion import encoder_trainer

    enc, meta, _ = encoder_trainer.load_latest(path, g)
    return enc, f"{path} (training checkpoint, step {meta.get('step')})"
  enc = encoder_lib.load_encoder(path, generator=g)
  step = enc.info.get("training", {}).get("step")
  name = "the shipped ToyFaces encoder" if cfg.encoder is None else str(path)
  return enc, name + (f" (training step {step})" if step is not None else "")


def _population(cfg, g, workdir):
  """Population mean / std of S at psi 1 (cached ShardedJob) -> dict(mean, std, count)."""
  job = stats.make_job(workdir / "stats", g, cfg.stats_samples, psi=1.0, seed=0)
  done = stats.done_samples(job, cfg.stats_samples)
  progress = jobs.Progress(cfg.stats_samples, "S statistics", "samples", done=done)
  st = stats.population_stats(g, cfg.stats_samples, 1.0, batch_size=500, seed=0, job=job, progress=progress)
  stats.save(workdir / "stats.npz", st, g.layout, psi=1.0, seed=0)
  return st


def _bank(cfg, g, classifier, workdir, model_id, classifier_id):
  """Generator samples seeds 0..bank_size-1 at psi 1: flat S and classifier logits (cached)."""

  def compute():
    _log(f"exemplar bank: rendering and classifying {cfg.bank_size} generator samples")
    s = sampling_lib.styles_from_seeds(g, range(cfg.bank_size), psi=1.0, batch_size=500)
    x = manipulate.render(g, s, batch_size=cfg.batch_size)
    return {"styles": s, "logits": np.asarray(classifier.classify(x), np.float32)}

  spec = {"model": model_id, "classifier": classifier_id, "bank_size": cfg.bank_size, "psi": 1.0, "seed0": 0}
  data, _ = _cached(workdir / "bank.npz", spec, compute)
  return data


def _pilot(cfg, g, st, plan_fn, classifier, segmenter, logit_std, reliable, alpha, num_channels, workdir):
  if cfg.pilot_attributes:
    cands = ie.attribute_indices(cfg.pilot_attributes)
  else:
    cands = tuple(int(a) for a in np.flatnonzero(reliable & attr_lib.LOCAL))
  plan = plan_fn(cands)
  seeds = range(PILOT_SEED0, PILOT_SEED0 + cfg.pilot_images)
  _log(f"pilot: {len(plan)} candidate attributes on {cfg.pilot_images} generated samples")
  s = sampling_lib.styles_from_seeds(g, seeds, psi=1.0)
  x = manipulate.render(g, s, batch_size=cfg.batch_size)
  d = edit_scores.decision_directions(classifier.classify(x), plan)
  ev = edit_scores.evaluate_edits(
    g, s, x, d, plan, st["std"], alpha, classifier, segmenter, logit_std, reliable, cfg.batch_size
  )
  summary = inversion_table_lib.summarize_edits(ev)["per_attribute"]
  text = (
    f"Pilot: top {num_channels} channel(s) per attribute, alpha {alpha:g}, edits of "
    f"{cfg.pilot_images} generator samples (seeds {PILOT_SEED0}.., psi 1) toggling the classifier's "
    f"decision.\n\n" + inversion_table_lib.format_pilot_table(summary, plan) + "\n"
  )
  jobs.atomic_write_text(workdir / "pilot.md", text)
  jobs.atomic_write_json(
    workdir / "pilot.json", {"alpha": alpha, "plan": [e.to_dict() for e in plan], "summary": summary}
  )
  print(text)


def run(cfg: TableConfig, command_args=()):
  """The whole comparison (or the pilot with cfg.pilot) into cfg.workdir; see the module docstring.

  command_args: the binary's arguments, quoted in table.md's "Command:" line.
  """

  t_start = time.time()
  workdir = pathlib.Path(cfg.workdir)
  alpha = ie.DEFAULT_ALPHA if cfg.alpha is None else cfg.alpha
  num_channels = ie.DEFAULT_NUM_CHANNELS if cfg.num_channels is None else cfg.num_channels
  methods = ie.check_methods(cfg.methods)
  attributes = ie.attribute_indices(cfg.attributes or ie.DEFAULT_ATTRIBUTES)
  if min(cfg.num_images, cfg.num_exemplars, cfg.bank_size, cfg.stats_samples, num_channels) < 1:
    raise ValueError("--num_images, --num_exemplars, --bank_size, --stats_samples, --num_channels must be >= 1")
  if cfg.steps < 0 or cfg.hybrid_steps < 0 or cfg.chunk_steps < 1 or cfg.reference_images < 2:
    raise ValueError("--steps/--hybrid_steps must be >= 0, --chunk_steps >= 1, --reference_images >= 2")
  g = load_generator(cfg.checkpoint or defaults.default_checkpoint())
  classifier, segmenter = models.load_classifier(), models.load_segmenter()
  perceptual = None
  if cfg.lpips != "none":
    from ss_jax.inversion import lpips

    perceptual = lpips.load_lpips(cfg.lpips)
  encoder, encoder_src = None, None
  if not cfg.pilot and {"encoder", "hybrid"} & set(methods):
    encoder, encoder_src = _load_encoder(cfg, g)
  model_id = fingerprints.model_fingerprint(g)
  classifier_id = fingerprints.tree_fingerprint(classifier.params)
  jobs.open_workdir(workdir)  # after the flag checks: a refused run writes nothing
  st = _population(cfg, g, workdir)
  bank = _bank(cfg, g, classifier, workdir, model_id, classifier_id)
  logit_std = evaluate.population_std(bank["logits"])
  reliable = classifier.reliable()

  def plan_fn(attrs):
    return ie.edit_plan(
      bank["styles"], bank["logits"], attrs, st["mean"], st["std"], g.layout, cfg.num_exemplars, num_channels
    )

  if cfg.pilot:
    _pilot(cfg, g, st, plan_fn, classifier, segmenter, logit_std, reliable, alpha, num_channels, workdir)
    return
  plan = plan_fn(attributes)
  jobs.atomic_write_json(workdir / "channels.json", [e.to_dict() for e in plan])
  _log(
    "edit channels: "
    + "; ".join(f"{e.name}: {', '.join(f'{n}{s:+d}' for n, s in zip(e.names, e.signs))}" for e in plan)
  )

  res = g.config.img_resolution
  targets, _, attrs = ie.heldout_renders(cfg.num_images, res)
  losses = inversion.Losses(mse=1.0, perceptual=1.0 if perceptual is not None else 0.0)
  common = {
    "model": model_id,
    "images": {"seed0": ie.HELDOUT_SEED0, "num": cfg.num_images, "resolution": res},
    "lr": cfg.lr,
    "lpips": cfg.lpips,
    "losses": losses.to_dict(),
    "spread": {"num_samples": inversion_codes.SPREAD_SAMPLES, "seed": inversion_codes.SPREAD_SEED},
  }
  enc_id = fingerprints.tree_fingerprint(encoder.params) if encoder is not None else None
  spread = None
  outs, seconds = {}, {}
  for m in methods:
    spec = dict(common, method=m)
    if m in ("w", "wplus", "s"):
      spec["steps"] = cfg.steps
    if m == "hybrid":
      spec["hybrid_steps"] = cfg.hybrid_steps
    if m in ("encoder", "hybrid"):
      spec["encoder"] = enc_id
    n_steps = {"encoder": 0, "hybrid": cfg.hybrid_steps}.get(m, cfg.steps)
    if spread is None and n_steps > 0 and not (workdir / "methods" / f"{m}.npz").exists():
      spread = inversion_codes.latent_spread(g)

    def compute(m=m, n_steps=n_steps):
      _log(f"{m}: inverting {cfg.num_images} images ({n_steps} steps)")
      t0 = time.time()

      def progress(done, total, latest):
        _log(f"{m}: step {done}/{total}, mean loss {float(np.mean(latest)):.4g}")

      out = ie.invert_method(
        g,
        m,
        targets,
        steps=cfg.steps,
        hybrid_steps=cfg.hybrid_steps,
        lr=cfg.lr,
        perceptual=perceptual,
        encoder=encoder,
        spread=spread,
        image_ids=np.arange(cfg.num_images),
        chunk_size=cfg.chunk_steps,
        progress=progress,
      )
      return dict(out, seconds=np.float64(time.time() - t0))

    outs[m], cached = _cached(workdir / "methods" / f"{m}.npz", spec, compute)
    seconds[m] = float(outs[m]["seconds"])
    _log(f"{m}: {'reused' if cached else 'done'} ({seconds[m]:.0f}s of inversion)")

  _log("scoring reconstructions and edits")
  ref_feats = classifier.features(ie.heldout_renders(cfg.reference_images, res, ie.REFERENCE_SEED0)[0])
  n_edits = cfg.num_images * len(plan)
  # Renders vs renders at the size of the edited sets: FLOOR_SETS disjoint sets give the sampling spread.
  floor_feats = [
    classifier.features(ie.heldout_renders(n_edits, res, ie.FLOOR_SEED0 + k * n_edits)[0]) for k in range(FLOOR_SETS)
  ]
  floor_fd = [evaluate.frechet_distance(f, ref_feats) for f in floor_feats]
  floors = {
    "fd_edits": float(np.mean(floor_fd)),
    "fd_edits_std": float(np.std(floor_fd)),
    "fd_edits_sets": floor_fd,
    "num_sets": FLOOR_SETS,
    "fd_recon": evaluate.frechet_distance(floor_feats[0][: cfg.num_images], ref_feats),
  }
  rows, recons, edits = {}, {}, {}
  gt = edit_scores.evaluate_ground_truth(targets, attrs, plan, classifier, segmenter, logit_std, reliable)
  rows[ie.GROUND_TRUTH] = inversion_table_lib.summarize(
    {"mse": np.zeros(len(targets)), "perceptual": np.zeros(len(targets))}, gt, ref_feats
  )
  edits["true"] = gt["edited"]
  directions = edit_scores.plan_directions(attrs, plan)
  for m in methods:
    o = outs[m]
    err = ie.reconstruction_errors(targets, o["images"], perceptual)
    ev = edit_scores.evaluate_edits(
      g,
      o["styles"],
      o["images"],
      directions,
      plan,
      st["std"],
      alpha,
      classifier,
      segmenter,
      logit_std,
      reliable,
      cfg.batch_size,
    )
    rms_z = ie.code_rms_z(o["styles"], st["mean"], st["std"], g.layout)
    rows[ie.METHOD_LABELS[m]] = dict(inversion_table_lib.summarize(err, ev, ref_feats, rms_z), seconds=seconds[m])
    recons[ie.SHORT_LABELS[m]] = o["images"]
    edits[ie.SHORT_LABELS[m]] = ev["edited"]

  settings = {
    "num_images": cfg.num_images,
    "steps": cfg.steps,
    "hybrid_steps": cfg.hybrid_steps,
    "lr": cfg.lr,
    "lpips": cfg.lpips,
    "alpha": alpha,
    "num_channels": num_channels,
    "num_exemplars": cfg.num_exemplars,
    "bank_size": cfg.bank_size,
    "stats_samples": cfg.stats_samples,
    "reference_images": cfg.reference_images,
    "methods": list(methods),
    "encoder": encoder_src,
    "heldout_seed0": ie.HELDOUT_SEED0,
    "reference_seed0": ie.REFERENCE_SEED0,
    "floor_seed0": ie.FLOOR_SEED0,
  }
  lp = f"LPIPS {cfg.lpips}" if perceptual is not None else "LPIPS"
  loss = f"MSE + {lp}" if perceptual is not None else "MSE"
  text = "\n".join(
    [
      f"{cfg.num_images} held-out ToyFaces renders (seeds {ie.HELDOUT_SEED0:,}..) inverted with "
      f"ss_jax.inversion ({cfg.steps} steps in W, W+, S; the encoder's S + {cfg.hybrid_steps} steps in S "
      f"for the hybrid; lr {cfg.lr}; loss {loss}; encoder: {encoder_src or '-'}). Edits: the top "
      f"{num_channels} channel(s) of each attribute ({', '.join(e.name for e in plan)}) moved by {alpha:g} "
      f"population stds, toggling the attribute (towards it where the render lacks it, away where it has it); "
      f"{n_edits} edited images per row. Ground truth: the original renders, edited by re-rendering the "
      f"toggled attribute vector (its FD is the shift a perfect edit causes: toggling changes attribute "
      f"frequencies). FD: classifier features vs {cfg.reference_images} fresh renders; at N = {n_edits} in "
      f"{ref_feats.shape[1]} dimensions it is biased upwards, compare within the table only; the floor is the "
      f"mean ± std over {FLOOR_SETS} disjoint sets of {n_edits} fresh renders. Code RMS z: RMS over the conv "
      f"channels of (s - mean) / std of the S codes (about 1 for generator samples).",
      "",
      inversion_table_lib.format_table(rows, floors["fd_edits"], lp, floors["fd_edits_std"]),
      "",
      "Per attribute (edited channels; sign = direction that adds the attribute): target Δ (σ) / flipped / "
      "change outside region:",
      "",
      inversion_table_lib.format_attribute_table(rows, plan),
      "",
      "Inversion time (s, this machine, shared load): "
      + ", ".join(f"{ie.METHOD_LABELS[m]} {seconds[m]:.0f}" for m in methods),
      "",
      "Command: `python -m experiments.inversion_table " + " ".join(command_args) + "`",
      "",
    ]
  )
  jobs.atomic_write_text(workdir / "table.md", text)
  jobs.atomic_write_json(
    workdir / "results.json",
    {
      "settings": settings,
      "floors": floors,
      "rows": rows,
      "plan": [e.to_dict() for e in plan],
      "seconds_total_this_run": time.time() - t_start,
    },
  )
  images.save_png(workdir / "figure.png", inversion_table_lib.figure(targets, recons, edits, plan, cfg.figure_rows))
  print(text)
  _log(f"wrote table.md, results.json, figure.png, channels.json to {workdir}")
