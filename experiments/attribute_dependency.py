"""Attribute dependency (mean-AD, max-AD) of edits of one target attribute, as curves over edit strengths.

  python -m experiments.attribute_dependency --attribute=hair_color --channels=3_43 --interfacegan \
      --workdir=out/ad_hair
  python -m experiments.attribute_dependency --attribute=hat --directions=hat_w.npy --rows=0-3 \
      --classifier=my.pkg:logits --attribute_names=a,b,hat --workdir=out/ad_hat

Edits: --channels (S; '6_113+6_114' moves both together), --directions (.npy, W (w_dim,) applied
on --rows, or W+ (num_ws, w_dim)), --interfacegan (boundary fitted on the population for the
target). Strength alpha = alpha population stds of the edited code along the edit. A
population (seeds --population_seed..) gives the logit stds; held-out images are seeds
--eval_seed.. Writes ad.json, ad.md and ad_<attribute>.png (ss_jax/dci/attribute_dependency.py;
pipeline: ss_jax/dci/ad_run.py); resumable and sharded over devices / processes like the other jobs.
"""

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
  from converters.io import CheckpointError
  from ss_jax.dci import ad_run
  from ss_jax.runtime import distributed, jobs

  settings = cli.config_from_flags(ad_run.Settings)
  with cli.exit_on(CheckpointError, FileNotFoundError, ValueError, jobs.ShardsMissing):
    _distributed_flags.initialize()
    result = ad_run.run(settings)
  if distributed.is_main():
    ad_run.report(settings, result)


if __name__ == "__main__":
  cli.run(main)
