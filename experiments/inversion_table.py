"""Real-image inversion on ToyFaces: reconstruction and edit quality of W / W+ / S / encoder / hybrid.

  python -m experiments.inversion_table --workdir=out/inversion_table
  python -m experiments.inversion_table --workdir=out/inv1000 --methods=w,s --steps=1000
  python -m experiments.inversion_table --workdir=out/inversion_table --pilot     # choose attributes

Inverts --num_images held-out ToyFaces renders (seeds 40,000,000..) with every method, edits
every reconstruction's S code by the detected channels of each --attributes (toggling the
attribute: towards it where the render lacks it, away from it where it has it) and scores
reconstruction (MSE, LPIPS), edit effect (classifier), leakage (other attributes, change
outside the attribute's segmented region) and realism (Fréchet distance in the classifier's
feature space); the ground-truth edit (toggled attribute re-rendered) is scored the same way.
Conventions: ss_jax/toyfaces/inversion_eval.py.

Resumable: S statistics (WORKDIR/stats/, a ShardedJob), the exemplar bank (bank.npz) and each
method's codes (methods/<method>.npz) are written atomically and reused by a rerun with the same
settings (a method computed with other settings is refused: use another --workdir or delete
that file). Writes WORKDIR/table.md, results.json, figure.png (rows: images; columns:
original | reconstructions | true edit | edits) and channels.json; with --pilot, pilot.md and
pilot.json (edits of generated samples for every candidate attribute) instead.
"""
import hashlib
import json
import pathlib
import sys
import time

from absl import flags

from ss_jax.runtime import cli

flags.DEFINE_string("workdir", None, "Output / resume directory.")
flags.DEFINE_string("checkpoint", None, "Generator; default: the embedded ToyFaces generator.")
flags.DEFINE_string("encoder", None, "Encoder directory (ss_jax.encoder format) or an "
                    "experiments.train_encoder workdir (its latest checkpoint); default: the shipped one.")
flags.DEFINE_list("methods", ["w", "wplus", "s", "encoder", "hybrid"], "Methods among w, wplus, s, encoder, hybrid.")
flags.DEFINE_integer("num_images", 32, "Held-out renders inverted (seeds 40,000,000 + i).")
flags.DEFINE_integer("steps", 300, "Optimisation steps of w, wplus and s.")
flags.DEFINE_integer("hybrid_steps", 100, "Optimisation steps in S after the encoder (hybrid).")
flags.DEFINE_float("lr", 0.1, "Peak learning rate of ss_jax.inversion (S: in units of each channel's std).")
flags.DEFINE_enum("lpips", "alex", ["alex", "vgg", "none"], "Perceptual loss and metric (weight 1, plus MSE).")
flags.DEFINE_list("attributes", None, "Edited attributes (default: inversion_eval.DEFAULT_ATTRIBUTES).")
flags.DEFINE_integer("num_channels", None, "Top channels moved per attribute (default: inversion_eval's).")
flags.DEFINE_float("alpha", None, "Edit strength in population stds (default: inversion_eval's).")
flags.DEFINE_integer("num_exemplars", 50, "Exemplars per attribute: the bank samples with the highest logit.")
flags.DEFINE_integer("bank_size", 2000, "Generator samples (seeds 0.., psi 1) ranked by the classifier.")
flags.DEFINE_integer("stats_samples", 10_000, "Samples (seeds 0.., psi 1) of the population mean / std of S.")
flags.DEFINE_integer("reference_images", 2000, "Fresh renders (seeds 41,000,000..) of the FD reference.")
flags.DEFINE_integer("figure_rows", 4, "Images shown in figure.png (image i: edit of attribute i mod count).")
flags.DEFINE_integer("chunk_steps", 25, "Optimisation steps between progress lines.")
flags.DEFINE_integer("batch_size", 64, "Images per batch when rendering / classifying.")
flags.DEFINE_bool("pilot", False, "Score candidate attributes on generated samples and stop (pilot.md).")
flags.DEFINE_list("pilot_attributes", None, "Candidates of --pilot (default: every local attribute the "
                  "classifier reads reliably).")
flags.DEFINE_integer("pilot_images", 64, "Generated samples (seeds 100,000..) edited by --pilot.")
flags.mark_flag_as_required("workdir")
cli.positive("num_images", "stats_samples", "reference_images", "bank_size", "num_exemplars", "chunk_steps",
             "batch_size", "pilot_images", "num_channels", "lr")
cli.non_negative("steps", "hybrid_steps", "figure_rows")
cli.finite("alpha")
FLAGS = flags.FLAGS

PILOT_SEED0 = 100_000
FLOOR_SETS = 5  # disjoint render sets of the FD floor (mean ± std)


def _log(msg, t0=[time.time()]):  # pylint: disable=dangerous-default-value
  print(f"[{time.time() - t0[0]:7.1f}s] {msg}", file=sys.stderr, flush=True)


def _fingerprint(tree):
  """sha1 of the bytes of every array leaf of a pytree."""
  import jax
  import numpy as np
  h = hashlib.sha1()
  for leaf in jax.tree.leaves(tree):
    h.update(np.ascontiguousarray(np.asarray(leaf)).tobytes())
  return h.hexdigest()


def _cached(path, spec, compute):
  """Arrays of `path` (an .npz with its settings) if computed with `spec`; else compute() and save atomically."""
  import numpy as np
  from ss_jax import jobs
  spec = json.loads(json.dumps(spec, sort_keys=True))
  if path.exists():
    data = jobs.load_npz(path)
    old = json.loads(str(data.pop("settings_json")))
    if old != spec:
      diff = sorted(k for k in set(old) | set(spec) if old.get(k) != spec.get(k))
      raise ValueError(f"{path} was computed with other settings ({', '.join(diff)}); "
                       "use another --workdir or delete that file")
    return data, True
  data = compute()
  jobs.atomic_save_npz(path, settings_json=np.array(json.dumps(spec, sort_keys=True)), **data)
  return data, False


def _load_encoder(g):
  from ss_jax import encoder as encoder_lib
  path = pathlib.Path(FLAGS.encoder) if FLAGS.encoder else encoder_lib.ENCODER_DIR
  if (path / "checkpoints").is_dir() and not (path / "config.json").is_file():
    from ss_jax import encoder_training
    enc, meta, _ = encoder_training.load_latest(path, g)
    return enc, f"{path} (training checkpoint, step {meta.get('step')})"
  enc = encoder_lib.load_encoder(path, generator=g)
  step = enc.info.get("training", {}).get("step")
  name = "the shipped ToyFaces encoder" if FLAGS.encoder is None else str(path)
  return enc, name + (f" (training step {step})" if step is not None else "")


def _population(g, workdir):
  """Population mean / std of S at psi 1 (cached ShardedJob) -> dict(mean, std, count)."""
  from ss_jax import jobs, stats
  job = stats.make_job(workdir / "stats", g, FLAGS.stats_samples, psi=1.0, seed=0)
  done = stats.done_samples(job, FLAGS.stats_samples)
  progress = jobs.Progress(FLAGS.stats_samples, "S statistics", "samples", done=done)
  st = stats.population_stats(g, FLAGS.stats_samples, 1.0, batch_size=500, seed=0, job=job, progress=progress)
  stats.save(workdir / "stats.npz", st, g.layout, psi=1.0, seed=0)
  return st


def _bank(g, classifier, workdir, model_id, classifier_id):
  """Generator samples seeds 0..bank_size-1 at psi 1: flat S and classifier logits (cached)."""
  import numpy as np
  from ss_jax import manipulate, stats

  def compute():
    _log(f"exemplar bank: rendering and classifying {FLAGS.bank_size} generator samples")
    s = stats.styles_from_seeds(g, range(FLAGS.bank_size), psi=1.0, batch_size=500)
    x = manipulate.render(g, s, batch_size=FLAGS.batch_size)
    return {"styles": s, "logits": np.asarray(classifier.classify(x), np.float32)}

  spec = {"model": model_id, "classifier": classifier_id, "bank_size": FLAGS.bank_size, "psi": 1.0, "seed0": 0}
  data, _ = _cached(workdir / "bank.npz", spec, compute)
  return data


def _pilot(g, st, plan_fn, classifier, segmenter, logit_std, reliable, alpha, num_channels, workdir):
  import numpy as np
  from ss_jax import jobs, manipulate, stats
  from ss_jax.toyfaces import attributes as attr_lib
  from ss_jax.toyfaces import inversion_eval as ie
  if FLAGS.pilot_attributes:
    cands = ie.attribute_indices(FLAGS.pilot_attributes)
  else:
    cands = tuple(int(a) for a in np.flatnonzero(reliable & attr_lib.LOCAL))
  plan = plan_fn(cands)
  seeds = range(PILOT_SEED0, PILOT_SEED0 + FLAGS.pilot_images)
  _log(f"pilot: {len(plan)} candidate attributes on {FLAGS.pilot_images} generated samples")
  s = stats.styles_from_seeds(g, seeds, psi=1.0)
  x = manipulate.render(g, s, batch_size=FLAGS.batch_size)
  d = ie.decision_directions(classifier.classify(x), plan)
  ev = ie.evaluate_edits(g, s, x, d, plan, st["std"], alpha, classifier, segmenter, logit_std, reliable,
                         FLAGS.batch_size)
  summary = ie.summarize_edits(ev)["per_attribute"]
  text = (f"Pilot: top {num_channels} channel(s) per attribute, alpha {alpha:g}, edits of "
          f"{FLAGS.pilot_images} generator samples (seeds {PILOT_SEED0}.., psi 1) toggling the classifier's "
          f"decision.\n\n" + ie.format_pilot_table(summary, plan) + "\n")
  jobs.atomic_write_text(workdir / "pilot.md", text)
  jobs.atomic_write_json(workdir / "pilot.json", {"alpha": alpha, "plan": [e.to_dict() for e in plan],
                                                  "summary": summary})
  print(text)


def main(argv):
  del argv
  import numpy as np

  from ss_jax import defaults, images, inversion, jobs, stats
  from ss_jax.checkpoint import load_generator
  from ss_jax.toyfaces import evaluate, models
  from ss_jax.toyfaces import inversion_eval as ie
  t_start = time.time()
  workdir = pathlib.Path(FLAGS.workdir)
  alpha = ie.DEFAULT_ALPHA if FLAGS.alpha is None else FLAGS.alpha
  num_channels = ie.DEFAULT_NUM_CHANNELS if FLAGS.num_channels is None else FLAGS.num_channels
  try:
    methods = ie.check_methods(FLAGS.methods)
    attributes = ie.attribute_indices(FLAGS.attributes or ie.DEFAULT_ATTRIBUTES)
    if min(FLAGS.num_images, FLAGS.num_exemplars, FLAGS.bank_size, FLAGS.stats_samples, num_channels) < 1:
      raise ValueError("--num_images, --num_exemplars, --bank_size, --stats_samples, --num_channels must be >= 1")
    if FLAGS.steps < 0 or FLAGS.hybrid_steps < 0 or FLAGS.chunk_steps < 1 or FLAGS.reference_images < 2:
      raise ValueError("--steps/--hybrid_steps must be >= 0, --chunk_steps >= 1, --reference_images >= 2")
    g = load_generator(FLAGS.checkpoint or defaults.default_checkpoint())
    classifier, segmenter = models.load_classifier(), models.load_segmenter()
    perceptual = None
    if FLAGS.lpips != "none":
      from ss_jax import lpips
      perceptual = lpips.load_lpips(FLAGS.lpips)
    encoder, encoder_src = None, None
    if not FLAGS.pilot and {"encoder", "hybrid"} & set(methods):
      encoder, encoder_src = _load_encoder(g)
    model_id = stats.model_fingerprint(g)
    classifier_id = _fingerprint(classifier.params)
    jobs.open_workdir(workdir)  # after the flag checks: a refused run writes nothing
    st = _population(g, workdir)
    bank = _bank(g, classifier, workdir, model_id, classifier_id)
  except (FileNotFoundError, ValueError) as e:  # CheckpointError, GeneratorMismatch, SettingsMismatch, flags
    sys.exit(f"error: {e}")
  logit_std = evaluate.population_std(bank["logits"])
  reliable = classifier.reliable()

  def plan_fn(attrs):
    return ie.edit_plan(bank["styles"], bank["logits"], attrs, st["mean"], st["std"], g.layout,
                        FLAGS.num_exemplars, num_channels)

  if FLAGS.pilot:
    try:
      _pilot(g, st, plan_fn, classifier, segmenter, logit_std, reliable, alpha, num_channels, workdir)
    except ValueError as e:  # unknown --pilot_attributes
      sys.exit(f"error: {e}")
    return
  plan = plan_fn(attributes)
  jobs.atomic_write_json(workdir / "channels.json", [e.to_dict() for e in plan])
  _log("edit channels: " + "; ".join(f"{e.name}: {', '.join(f'{n}{s:+d}' for n, s in zip(e.names, e.signs))}"
                                     for e in plan))

  res = g.config.img_resolution
  targets, _, attrs = ie.heldout_renders(FLAGS.num_images, res)
  losses = inversion.Losses(mse=1.0, perceptual=1.0 if perceptual is not None else 0.0)
  common = {"model": model_id, "images": {"seed0": ie.HELDOUT_SEED0, "num": FLAGS.num_images, "resolution": res},
            "lr": FLAGS.lr, "lpips": FLAGS.lpips, "losses": losses.to_dict(),
            "spread": {"num_samples": inversion.SPREAD_SAMPLES, "seed": inversion.SPREAD_SEED}}
  enc_id = _fingerprint(encoder.params) if encoder is not None else None
  spread = None
  outs, seconds = {}, {}
  for m in methods:
    spec = dict(common, method=m)
    if m in ("w", "wplus", "s"):
      spec["steps"] = FLAGS.steps
    if m == "hybrid":
      spec["hybrid_steps"] = FLAGS.hybrid_steps
    if m in ("encoder", "hybrid"):
      spec["encoder"] = enc_id
    n_steps = {"encoder": 0, "hybrid": FLAGS.hybrid_steps}.get(m, FLAGS.steps)
    if spread is None and n_steps > 0 and not (workdir / "methods" / f"{m}.npz").exists():
      spread = inversion.latent_spread(g)

    def compute(m=m, n_steps=n_steps):
      _log(f"{m}: inverting {FLAGS.num_images} images ({n_steps} steps)")
      t0 = time.time()

      def progress(done, total, latest):
        _log(f"{m}: step {done}/{total}, mean loss {float(np.mean(latest)):.4g}")

      out = ie.invert_method(g, m, targets, steps=FLAGS.steps, hybrid_steps=FLAGS.hybrid_steps, lr=FLAGS.lr,
                             perceptual=perceptual, encoder=encoder, spread=spread,
                             image_ids=np.arange(FLAGS.num_images), chunk_size=FLAGS.chunk_steps,
                             progress=progress)
      return dict(out, seconds=np.float64(time.time() - t0))

    try:
      outs[m], cached = _cached(workdir / "methods" / f"{m}.npz", spec, compute)
    except ValueError as e:
      sys.exit(f"error: {e}")
    seconds[m] = float(outs[m]["seconds"])
    _log(f"{m}: {'reused' if cached else 'done'} ({seconds[m]:.0f}s of inversion)")

  _log("scoring reconstructions and edits")
  ref_feats = classifier.features(ie.heldout_renders(FLAGS.reference_images, res, ie.REFERENCE_SEED0)[0])
  n_edits = FLAGS.num_images * len(plan)
  # Renders vs renders at the size of the edited sets: FLOOR_SETS disjoint sets give the sampling spread.
  floor_feats = [classifier.features(ie.heldout_renders(n_edits, res, ie.FLOOR_SEED0 + k * n_edits)[0])
                 for k in range(FLOOR_SETS)]
  floor_fd = [evaluate.frechet_distance(f, ref_feats) for f in floor_feats]
  floors = {"fd_edits": float(np.mean(floor_fd)), "fd_edits_std": float(np.std(floor_fd)),
            "fd_edits_sets": floor_fd, "num_sets": FLOOR_SETS,
            "fd_recon": evaluate.frechet_distance(floor_feats[0][:FLAGS.num_images], ref_feats)}
  rows, recons, edits = {}, {}, {}
  gt = ie.evaluate_ground_truth(targets, attrs, plan, classifier, segmenter, logit_std, reliable)
  rows[ie.GROUND_TRUTH] = ie.summarize({"mse": np.zeros(len(targets)), "perceptual": np.zeros(len(targets))}, gt,
                                       ref_feats)
  edits["true"] = gt["edited"]
  directions = ie.plan_directions(attrs, plan)
  for m in methods:
    o = outs[m]
    err = ie.reconstruction_errors(targets, o["images"], perceptual)
    ev = ie.evaluate_edits(g, o["styles"], o["images"], directions, plan, st["std"], alpha, classifier, segmenter,
                           logit_std, reliable, FLAGS.batch_size)
    rms_z = ie.code_rms_z(o["styles"], st["mean"], st["std"], g.layout)
    rows[ie.METHOD_LABELS[m]] = dict(ie.summarize(err, ev, ref_feats, rms_z), seconds=seconds[m])
    recons[ie.SHORT_LABELS[m]] = o["images"]
    edits[ie.SHORT_LABELS[m]] = ev["edited"]

  settings = {"num_images": FLAGS.num_images, "steps": FLAGS.steps, "hybrid_steps": FLAGS.hybrid_steps,
              "lr": FLAGS.lr, "lpips": FLAGS.lpips, "alpha": alpha, "num_channels": num_channels,
              "num_exemplars": FLAGS.num_exemplars, "bank_size": FLAGS.bank_size,
              "stats_samples": FLAGS.stats_samples, "reference_images": FLAGS.reference_images,
              "methods": list(methods), "encoder": encoder_src, "heldout_seed0": ie.HELDOUT_SEED0,
              "reference_seed0": ie.REFERENCE_SEED0, "floor_seed0": ie.FLOOR_SEED0}
  lp = f"LPIPS {FLAGS.lpips}" if perceptual is not None else "LPIPS"
  loss = f"MSE + {lp}" if perceptual is not None else "MSE"
  text = "\n".join([
      f"{FLAGS.num_images} held-out ToyFaces renders (seeds {ie.HELDOUT_SEED0:,}..) inverted with "
      f"ss_jax.inversion ({FLAGS.steps} steps in W, W+, S; the encoder's S + {FLAGS.hybrid_steps} steps in S "
      f"for the hybrid; lr {FLAGS.lr}; loss {loss}; encoder: {encoder_src or '-'}). Edits: the top "
      f"{num_channels} channel(s) of each attribute ({', '.join(e.name for e in plan)}) moved by {alpha:g} "
      f"population stds, toggling the attribute (towards it where the render lacks it, away where it has it); "
      f"{n_edits} edited images per row. Ground truth: the original renders, edited by re-rendering the "
      f"toggled attribute vector (its FD is the shift a perfect edit causes: toggling changes attribute "
      f"frequencies). FD: classifier features vs {FLAGS.reference_images} fresh renders; at N = {n_edits} in "
      f"{ref_feats.shape[1]} dimensions it is biased upwards, compare within the table only; the floor is the "
      f"mean ± std over {FLOOR_SETS} disjoint sets of {n_edits} fresh renders. Code RMS z: RMS over the conv "
      f"channels of (s - mean) / std of the S codes (about 1 for generator samples).", "",
      ie.format_table(rows, floors["fd_edits"], lp, floors["fd_edits_std"]), "",
      "Per attribute (edited channels; sign = direction that adds the attribute): target Δ (σ) / flipped / "
      "change outside region:", "",
      ie.format_attribute_table(rows, plan), "",
      "Inversion time (s, this machine, shared load): "
      + ", ".join(f"{ie.METHOD_LABELS[m]} {seconds[m]:.0f}" for m in methods), "",
      "Command: `python -m experiments.inversion_table " + " ".join(sys.argv[1:]) + "`", ""])
  jobs.atomic_write_text(workdir / "table.md", text)
  jobs.atomic_write_json(workdir / "results.json", {"settings": settings, "floors": floors, "rows": rows,
                                                    "plan": [e.to_dict() for e in plan],
                                                    "seconds_total_this_run": time.time() - t_start})
  images.save_png(workdir / "figure.png", ie.figure(targets, recons, edits, plan, FLAGS.figure_rows))
  print(text)
  _log(f"wrote table.md, results.json, figure.png, channels.json to {workdir}")


if __name__ == "__main__":
  cli.run(main)
