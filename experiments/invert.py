"""Invert real images into W, W+ or S (optimisation, encoder, or encoder + optimisation).

  python -m experiments.invert --images=photos/ --workdir=out/invert --space=s
  python -m experiments.invert --images=face.png --workdir=out/inv1 --space=wplus --steps=500 --lpips=none
  python -m experiments.invert --images=photos/ --workdir=out/hyb --mode=hybrid --steps=100
  python -m experiments.invert --images=DIR --workdir=W --edit_channels=6_202 --stats=out/stats/stats.npz

Modes: optimise (start at w_avg / styles(w_avg), --steps of Adam, ss_jax.inversion),
encoder (the image encoder's code, no optimisation), hybrid (encoder start + --steps).
Images (PNG/JPG/BMP/WebP, a folder or one file) must have the generator's size
unless --resize is given (then they are centre-cropped to a square and resized,
with a warning); alpha channels are dropped and greyscale images converted to
RGB, each with a warning. Images are processed in batches of --batch_size; each
finished batch is written atomically under WORKDIR/invert/, and a rerun with the
same flags skips finished batches (other flags: refused, use another --workdir).

Writes to WORKDIR:
  codes.npz             code (of --space), s (flat S), names, loss_total/mse/perceptual/noise_reg,
                        history (N, K) + history_steps, noise_<k> maps with --noise
  reconstructions/      <stem>.png per image
  reconstructions.png   original | reconstruction grid (first --grid_images images)
  edits.png             with --edit_channels: rows channel x image, columns --alphas
  invert.json           settings and mean losses
"""
import sys

from absl import flags

from ss_jax.runtime import cli

flags.DEFINE_string("images", None, "A folder of images or one image file.")
flags.DEFINE_string("workdir", None, "Output folder (resumable).")
flags.DEFINE_enum("space", "s", ["w", "wplus", "s"], "Space of the codes.")
flags.DEFINE_enum("mode", "optimise", ["optimise", "encoder", "hybrid"],
                  "optimise: from w_avg; encoder: the encoder's code only; hybrid: encoder start + --steps.")
flags.DEFINE_string("checkpoint", None, "Generator; default: the embedded ToyFaces generator.")
flags.DEFINE_string("encoder", None, "Encoder directory for --mode=encoder/hybrid; default: the shipped one.")
flags.DEFINE_integer("steps", None, "Optimisation steps (default 1000 for optimise, 100 for hybrid).")
flags.DEFINE_float("lr", 0.1, "Peak Adam learning rate (S: in units of each channel's std).")
flags.DEFINE_enum("lpips", "alex", ["alex", "vgg", "none"], "Perceptual loss (ss_jax.lpips) or none.")
flags.DEFINE_float("perceptual_weight", 1.0, "Weight of the LPIPS term.")
flags.DEFINE_float("mse_weight", 1.0, "Weight of the pixel MSE term (images in [-1, 1]).")
flags.DEFINE_bool("noise", False, "Also optimise per-image noise maps (saved in codes.npz; edits use them).")
flags.DEFINE_float("noise_reg", 1e5, "Weight of the noise-map regulariser (with --noise).")
flags.DEFINE_integer("batch_size", 8, "Images per batch (one resumable unit).")
flags.DEFINE_bool("resize", False, "Resize images of another size (centre crop + Lanczos) instead of refusing them.")
flags.DEFINE_integer("seed", 0, "Seed of the latent noise (image i uses (seed, i)).")
flags.DEFINE_integer("history_every", 10, "Record the loss every this many steps.")
flags.DEFINE_integer("chunk_steps", 100, "Steps between progress lines (one device loop each off CPU).")
flags.DEFINE_string("edit_channels", None, "Channels 'L_C' to edit in an edit grid, e.g. '6_202,9_11'.")
flags.DEFINE_string("alphas", "-10,-5,0,5,10", "Edit strengths in units of sigma (--stats).")
flags.DEFINE_string("stats", None, "stats.npz from experiments.style_stats (needed with --edit_channels).")
flags.DEFINE_integer("grid_images", 16, "Images shown in reconstructions.png and edits.png.")
flags.DEFINE_integer("min_cell", 64, "Upscale grid cells narrower than this (pixels).")
flags.mark_flags_as_required(["images", "workdir"])
cli.non_negative("steps", "perceptual_weight", "mse_weight", "noise_reg")
cli.positive("batch_size", "history_every", "chunk_steps", "grid_images", "min_cell", "lr")
cli.seed("seed")
FLAGS = flags.FLAGS


def _load_encoder(g):
  try:
    from ss_jax import encoder as encoder_lib
  except ImportError as e:
    raise ValueError(f"--mode={FLAGS.mode} needs the image encoder (ss_jax.encoder), "
                     f"which is not available here ({e}); use --mode=optimise") from e
  import inspect
  kw = {"generator": g} if "generator" in inspect.signature(encoder_lib.load_encoder).parameters else {}
  return encoder_lib.load_encoder(FLAGS.encoder, **kw)


def _load_lpips(g):
  if FLAGS.lpips == "none" or FLAGS.perceptual_weight == 0:
    return None
  try:
    from ss_jax import lpips
  except ImportError as e:
    raise ValueError(f"--lpips={FLAGS.lpips} needs ss_jax.lpips, not available here ({e}); "
                     "pass --lpips=none") from e
  lp = lpips.load_lpips(FLAGS.lpips)
  size = getattr(lp, "min_size", 0)
  if g.config.img_resolution < size:
    raise ValueError(f"LPIPS {FLAGS.lpips} needs images of at least {size}px, the generator makes "
                     f"{g.config.img_resolution}px; pass --lpips=none")
  return lp


def main(argv):
  del argv
  import pathlib

  import numpy as np

  from ss_jax import defaults, images, inversion, jobs, manipulate, stats
  from ss_jax.checkpoint import load_generator
  workdir = pathlib.Path(FLAGS.workdir)
  steps = {"optimise": 1000, "hybrid": 100, "encoder": 0}[FLAGS.mode] if FLAGS.steps is None else FLAGS.steps
  if FLAGS.mode == "encoder":
    steps = 0
  try:
    if steps < 0 or FLAGS.batch_size < 1 or FLAGS.history_every < 1 or FLAGS.chunk_steps < 1:
      raise ValueError("--steps must be >= 0 and --batch_size, --history_every, --chunk_steps >= 1")
    files = images.image_files(FLAGS.images)
    g = load_generator(FLAGS.checkpoint or defaults.default_checkpoint())
    size, channels = g.config.img_resolution, g.config.img_channels
    edit = None
    if FLAGS.edit_channels:
      if not FLAGS.stats:
        raise ValueError("--edit_channels needs --stats (the std of each channel)")
      edit = (manipulate.resolve_channels(g.layout, FLAGS.edit_channels), manipulate.parse_alphas(FLAGS.alphas),
              stats.load(FLAGS.stats, g.layout)["std"])
    enc = _load_encoder(g) if FLAGS.mode != "optimise" else None
    perceptual = _load_lpips(g)
    notes = []
    for p in files:  # headers only: fail on unreadable / wrong-size files before any work
      try:
        notes += images.check_image(p, size, FLAGS.resize, channels)
      except ValueError as e:
        hint = " (pass --resize to resize)" if "expected" in str(e) and not FLAGS.resize else ""
        raise ValueError(f"{e}{hint}") from e
  except (FileNotFoundError, ValueError) as e:  # includes CheckpointError, GeneratorMismatch, bad stats
    sys.exit(f"error: {e}")
  for n in notes:
    print(f"warning: {n}", file=sys.stderr)

  losses = inversion.Losses(mse=FLAGS.mse_weight, perceptual=FLAGS.perceptual_weight if perceptual else 0.0,
                            noise_reg=FLAGS.noise_reg)
  settings = {"space": FLAGS.space, "mode": FLAGS.mode, "steps": steps, "lr": FLAGS.lr,
              "losses": losses.to_dict(), "lpips": FLAGS.lpips if perceptual else "none", "noise": FLAGS.noise,
              "resize": FLAGS.resize, "seed": FLAGS.seed, "history_every": FLAGS.history_every,
              "encoder": (FLAGS.encoder or "shipped") if enc is not None else None,
              "spread": {"num_samples": inversion.SPREAD_SAMPLES, "seed": inversion.SPREAD_SEED}}
  n = len(files)
  try:
    job = inversion.make_job(workdir, g, [p.name for p in files], inversion.files_digest(files),
                             FLAGS.batch_size, settings)
  except jobs.SettingsMismatch as e:
    sys.exit(f"error: {e}")
  num_batches = job.num_shards
  print(f"inverting {n} image(s) into {FLAGS.space} ({FLAGS.mode}, {steps} steps, lpips {settings['lpips']}, "
        f"noise maps {'optimised' if FLAGS.noise else 'const'}): {num_batches} batch(es), "
        f"{num_batches - len(job.pending())} already done", file=sys.stderr)
  if enc is not None and FLAGS.space == "w":
    print("note: the encoder predicts W+; the W code is the mean of its rows", file=sys.stderr)

  def load(a, b):
    return images.from_uint8(np.stack([images.read_image(p, size, FLAGS.resize, channels)[0]
                                       for p in files[a:b]]))

  def encode(target):
    codes = enc.encode(target)
    return np.asarray(codes["wplus"]).mean(axis=1) if FLAGS.space == "w" else codes[FLAGS.space]

  report, finished = inversion.progress_lines(job, steps)

  try:
    inversion.run_job(job, g, load, FLAGS.space, steps, encode=encode if enc is not None else None,
                      progress=report, finished=finished, lr=FLAGS.lr, losses=losses,
                      perceptual=perceptual, optimize_noise=FLAGS.noise, seed=FLAGS.seed, history_every=FLAGS.history_every,
                      chunk_size=FLAGS.chunk_steps)
  except ValueError as e:  # an image whose data turns out corrupt
    sys.exit(f"error: {e}")

  out = job.read_all()
  names = np.array([p.name for p in files])
  result = {"code": out["code"], "s": out["s"], "names": names, "history": out["history"],
            "history_steps": np.arange(0, steps, FLAGS.history_every),
            "space": np.array(FLAGS.space), "mode": np.array(FLAGS.mode),
            **{k: v for k, v in out.items() if k.startswith(("loss_", "noise_"))}}
  jobs.atomic_save_npz(workdir / "codes.npz", **result)
  for p, r in zip(files, out["reconstruction"]):
    images.save_png(workdir / "reconstructions" / f"{p.stem}.png", r)
  k = min(n, max(FLAGS.grid_images, 1))
  originals = np.stack([images.read_image(p, size, FLAGS.resize, channels)[0] for p in files[:k]])
  stems = [p.stem for p in files[:k]]
  images.save_png(workdir / "reconstructions.png",
                  inversion.comparison_grid(originals, out["reconstruction"][:k], stems, min_cell=FLAGS.min_cell))
  written = ["codes.npz", "reconstructions/", "reconstructions.png"]
  if edit is not None:
    idx, alphas, std = edit
    noise = [out[f"noise_{j}"][:k] for j in range(len(g.buffers["noise"]))] if FLAGS.noise else None
    grid = inversion.edit_grid(g, out["s"][:k], idx, alphas, std, noise=noise, row_names=stems,
                               min_cell=FLAGS.min_cell)
    images.save_png(workdir / "edits.png", grid)
    written.append("edits.png")
  summary = dict(job.spec, mean_losses={k[5:]: float(np.mean(v)) for k, v in out.items() if k.startswith("loss_")},
                 edit_channels=FLAGS.edit_channels, alphas=FLAGS.alphas if edit else None, stats=FLAGS.stats)
  jobs.atomic_write_json(workdir / "invert.json", summary)
  written.append("invert.json")
  losses_txt = ", ".join(f"{k} {v:.4g}" for k, v in summary["mean_losses"].items())
  print(f"wrote {', '.join(written)} to {workdir} (mean losses: {losses_txt})")


if __name__ == "__main__":
  cli.run(main)
