"""Flags of detect_local's score rule and its default verification step (ss_jax.stylespace.verified_detection).

python -m experiments.detect_local --workdir=out/local                       # mass score + verification
python -m experiments.detect_local --workdir=out/local --score=official      # the paper's rule
python -m experiments.detect_local --workdir=out/local --noverify            # detections only
"""

from absl import flags

from ss_jax.stylespace import detection_scores as _ds
from ss_jax.stylespace import verification as _v

flags.DEFINE_enum(
  "score",
  _ds.DEFAULT_SCORE,
  list(_ds.SCORES),
  "Detection rule: 'official' (the paper's win "
  "fraction, --threshold/--margin), 'mass' (gradient-map mass inside the region beyond its area "
  "share, --mass_threshold) or 'union' (either; verification supplies the precision).",
)
flags.DEFINE_float(
  "mass_threshold",
  _ds.DEFAULT_MASS_THRESHOLD,
  "mass rule: minimum (mass inside k - area share of k) / (1 - area share of k).",
)
flags.DEFINE_bool("verify", True, "Verify every detection by editing held-out images (writes verified.json).")
flags.DEFINE_string("verify_seeds", _v.DEFAULT_SEEDS, "Held-out seeds (disjoint from the gradient maps').")
flags.DEFINE_string(
  "verify_more_seeds",
  _v.DEFAULT_MORE_SEEDS,
  "More held-out seeds, measured only for detections whose 95% CI of the visible share contains --min_share "
  "after --verify_seeds ('' = none).",
)
flags.DEFINE_bool(
  "verify_confident", _v.DEFAULT_CONFIDENT, "Verified only when the lower end of the 95% CI reaches --min_share."
)
flags.DEFINE_bool(
  "verify_any_category",
  _v.DEFAULT_ANY_CATEGORY,
  "Judge each detected channel for every category and list it as verified wherever its edits land "
  "(marked detected: false), not only for the categories it was detected for.",
)
flags.DEFINE_list("verify_alphas", [str(a) for a in _v.DEFAULT_ALPHAS], "Edit strengths in units of std_c.")
flags.DEFINE_float(
  "visible", _v.DEFAULT_VISIBLE, "A pixel changes visibly when max_RGB |delta| > this ([-1, 1] units)."
)
flags.DEFINE_float(
  "min_share", _v.DEFAULT_MIN_SHARE, "Verified: share of the visible change inside k (the CI's lower end, or the mean)."
)
flags.DEFINE_float("min_changed", _v.DEFAULT_MIN_CHANGED, "Verified: visibly changed fraction of the image.")
flags.DEFINE_integer("baseline_per_layer", 4, "Random channels per style layer for the baseline.")
flags.DEFINE_string("stats", None, "stats.npz for std_c (default: std of the gradient-map images' styles).")
flags.DEFINE_integer("verify_rows", 64, "(channel, image) rows per jitted edit step (bounds memory).")
FLAGS = flags.FLAGS


def verify(job, gm, result, labels_fn, source, table, progress_stream=None):
  """Runs the verification step from the flags; returns verified.json's dict."""
  from ss_jax.runtime.seeds import parse_seeds
  from ss_jax.stylespace import stats, verified_detection
  from ss_jax.stylegan2.checkpoint import load_generator

  g = load_generator(gm.spec["checkpoint"])
  sigma = stats.load(FLAGS.stats, g.layout)["std"] if FLAGS.stats else None
  more = parse_seeds(FLAGS.verify_more_seeds) if FLAGS.verify_more_seeds else []
  vjob = verified_detection.make_verify_stages(
    gm.dir.parent,
    gm,
    g,
    source,
    table,
    [parse_seeds(FLAGS.verify_seeds), more],
    [float(a) for a in FLAGS.verify_alphas],
    FLAGS.visible,
    sigma,
  )
  return verified_detection.verify(
    job,
    gm,
    result,
    g,
    labels_fn,
    vjob,
    FLAGS.min_share,
    FLAGS.min_changed,
    FLAGS.baseline_per_layer,
    FLAGS.verify_rows,
    progress_stream,
    FLAGS.verify_confident,
    FLAGS.verify_any_category,
  )
