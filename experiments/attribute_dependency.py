"""Attribute dependency (mean-AD, max-AD) of edits of one target attribute, as curves over edit strengths.

  python -m experiments.attribute_dependency --attribute=hair_color --channels=3_43 --interfacegan \
      --workdir=out/ad_hair
  python -m experiments.attribute_dependency --attribute=hat --directions=hat_w.npy --rows=0-3 \
      --classifier=my.pkg:logits --attribute_names=a,b,hat --workdir=out/ad_hat

Edits: --channels (S; '6_113+6_114' moves both together), --directions (.npy, W (w_dim,) applied
on --rows, or W+ (num_ws, w_dim)), --interfacegan (boundary fitted on the population for the
target). Strength alpha = alpha population stds of the edited code along the edit. A
population (seeds --population_seed..) gives the logit stds; held-out images are seeds
--eval_seed.. Writes ad.json, ad.md and ad_<attribute>.png (ss_jax/dci/attribute_dependency.py);
resumable and sharded over devices / processes like the other jobs.
"""

import sys

from absl import flags

from ss_jax.runtime import cli

from experiments import _distributed_flags

flags.DEFINE_string("checkpoint", None, "Generator; default: the embedded ToyFaces generator.")
flags.DEFINE_string("workdir", None, "Output / resume directory.")
flags.DEFINE_string("attribute", None, "Target attribute (name).")
flags.DEFINE_string("classifier", "toyfaces", "'toyfaces' or package.module:function (images -> (N, A) logits).")
flags.DEFINE_list("attribute_names", None, "Names of the classifier's logits (needed for a custom classifier).")
flags.DEFINE_list(
  "others",
  None,
  "Attributes AD is taken over (default: ToyFaces: held-out accuracy >= --min_accuracy; other classifiers: all).",
)
flags.DEFINE_float("min_accuracy", 0.9, "ToyFaces: reliable = held-out accuracy >= this.")
flags.DEFINE_list("channels", [], "S edits: channel groups, e.g. 3_43,6_113+6_114.")
flags.DEFINE_list("directions", [], "W / W+ direction .npy files.")
flags.DEFINE_string("rows", "all", "w rows the (w_dim,) directions are applied to ('all', '0-3').")
flags.DEFINE_bool("interfacegan", False, "Also evaluate InterFaceGAN's boundary for the target.")
flags.DEFINE_list("alphas", ["1", "2", "4", "8", "16"], "Edit strengths.")
flags.DEFINE_float("match", 1.0, "Target change (sigma) at which the curves are read.")
flags.DEFINE_integer("num_images", 32, "Held-out images.")
flags.DEFINE_integer("eval_seed", 2_000_000, "First held-out seed.")
flags.DEFINE_integer("num_population", 1000, "Population samples for the stds.")
flags.DEFINE_integer("population_seed", 0, "First population seed.")
flags.DEFINE_float("psi", 1.0, "Truncation psi.")
flags.DEFINE_integer("batch_size", 128, "Renders per step and process.")
flags.DEFINE_integer("images_per_shard", 16, "Held-out images per resumable shard.")
flags.mark_flags_as_required(["workdir", "attribute"])
cli.finite("min_accuracy", "match", "psi")
cli.positive("num_images", "num_population", "batch_size", "images_per_shard")
cli.seed_span("eval_seed", "num_images")
cli.seed_span("population_seed", "num_population")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  from ss_jax.dci import ad_edits, ad_population
  from ss_jax.dci import attribute_dependency as ad
  from ss_jax.runtime import defaults, distributed, jobs
  from ss_jax.stylespace import directions
  from ss_jax.stylegan2.checkpoint import load_generator
  from converters.io import CheckpointError

  try:
    _distributed_flags.initialize()
    fn = ad_population.attribute_function(FLAGS.classifier, FLAGS.attribute_names)
    names = list(fn.names)
    if FLAGS.attribute not in names:
      raise ValueError(f"unknown attribute {FLAGS.attribute!r}; choose from {', '.join(names)}")
    g = load_generator(FLAGS.checkpoint or defaults.default_checkpoint())
    others = ad_population.reliable_mask(names, FLAGS.others, FLAGS.classifier, FLAGS.min_accuracy)
    if (
      FLAGS.eval_seed < FLAGS.population_seed + FLAGS.num_population
      and FLAGS.population_seed < FLAGS.eval_seed + FLAGS.num_images
    ):
      raise ValueError("the held-out seeds overlap the population seeds: they must be disjoint")
    alphas = [float(a) for a in FLAGS.alphas]
    rows = None if FLAGS.rows == "all" else directions.parse_rows(FLAGS.rows, g.config.num_ws)
    progress = (lambda n, label: jobs.Progress(n, label, "renders")) if distributed.is_main() else (lambda *a: None)
    pop = ad_population.population(
      FLAGS.workdir,
      g,
      fn,
      FLAGS.num_population,
      FLAGS.population_seed,
      FLAGS.psi,
      batch_size=FLAGS.batch_size,
      progress=progress(FLAGS.num_population, "population"),
    )
    t = names.index(FLAGS.attribute)
    edits = ad_edits.make_edits(g, pop, t, FLAGS.channels, FLAGS.directions, rows, FLAGS.interfacegan)
    job = ad.make_job(
      FLAGS.workdir,
      "ad_heldout",
      g,
      fn,
      range(FLAGS.eval_seed, FLAGS.eval_seed + FLAGS.num_images),
      edits,
      alphas,
      FLAGS.psi,
      FLAGS.images_per_shard,
    )
    base, edited = ad.run_and_read(job, g, edits, fn, FLAGS.batch_size, progress(ad.num_renders(job), "held-out"))
    results = ad.evaluate(
      base, edited, edits, [t] * len(edits), alphas, ad_population.logit_std(pop["logits"]), names, FLAGS.match, others
    )
  except (CheckpointError, FileNotFoundError, ValueError, jobs.ShardsMissing) as e:
    sys.exit(f"error: {e}")
  if distributed.is_main():
    settings = dict(
      job.spec,
      others=None if others is None else [n for n, o in zip(names, others) if o],
      num_population=FLAGS.num_population,
      population_seed=FLAGS.population_seed,
    )
    pngs = ad.write_outputs(FLAGS.workdir, results, FLAGS.match, settings)
    print(ad.curves_markdown(results, FLAGS.match))
    print(f"\nwrote ad.json, ad.md and {', '.join(pngs)} to {FLAGS.workdir}")


if __name__ == "__main__":
  cli.run(main)
