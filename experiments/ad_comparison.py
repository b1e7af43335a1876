"""Single S channels vs InterFaceGAN / GANSpace / SeFa: attribute dependency at a matched target change.

  python -m experiments.ad_comparison --workdir=out/ad_cmp                  # 6 ToyFaces attributes, ~7 min at load ~25
  python -m experiments.ad_comparison --workdir=out/ad_all --attributes=all --num_population=2000 \
      --num_select=16 --num_eval=32 --s_candidates=8 --num_components=8 --alphas=1,2,4,8,16,32   # the README table

Protocol (ss_jax/dci/ad_comparison.py): population of generator samples (logit stds, exemplars,
InterFaceGAN, GANSpace PCA), candidates picked on selection images, AD measured on disjoint
held-out images (pipeline: ss_jax/dci/ad_comparison_run.py). Targets: attributes with held-out classifier accuracy >= --min_accuracy
(stored with the ToyFaces classifier) and a positive rate in [--min_rate, 1 - --min_rate].
Writes comparison.md / .json, ad.md / .json and ad_<attribute>.png; resumable (rerun the
same command after a kill), sharded over devices and processes like the other jobs.
"""

from absl import flags

from ss_jax.runtime import cli

from experiments import _distributed_flags
from ss_jax.dci import ad_comparison

flags.DEFINE_string("checkpoint", None, "Generator; default: the embedded ToyFaces generator.")
flags.DEFINE_string("workdir", None, "Output / resume directory.")
flags.DEFINE_list(
  "attributes",
  None,
  "Target attributes, or 'all' (every reliable one). Default: ToyFaces "
  "hair_color,clothes_color,glasses,hat,mouth_open,bangs (a short run); a custom classifier: all.",
)
flags.DEFINE_string("classifier", "toyfaces", "'toyfaces' or package.module:function (images -> (N, A) logits).")
flags.DEFINE_list("attribute_names", None, "Names of a custom classifier's logits.")
flags.DEFINE_list(
  "reliable",
  None,
  "Reliable attributes (targets and AD); default for ToyFaces: held-out "
  "accuracy >= --min_accuracy; required for a custom classifier.",
)
flags.DEFINE_float("min_accuracy", 0.9, "ToyFaces: reliable = the classifier's held-out accuracy >= this.")
_D = ad_comparison.Settings()  # the flags' defaults
flags.DEFINE_float("min_rate", _D.min_rate, "Targets need this share of positives and of negatives.")
flags.DEFINE_integer("num_population", _D.num_population, "Population samples (seeds 0..).")
flags.DEFINE_integer("num_select", _D.num_select, "Selection images (seeds 1,000,000..).")
flags.DEFINE_integer("num_eval", _D.num_eval, "Held-out evaluation images (seeds 2,000,000..).")
flags.DEFINE_list("alphas", [f"{a:g}" for a in _D.alphas], "Edit strengths (population stds along the edit).")
flags.DEFINE_float("select_alpha", _D.select_alpha, "Strength (both signs) at which candidates are compared.")
flags.DEFINE_integer("num_exemplars", _D.num_exemplars, "Exemplars (highest logits of the population) for theta.")
flags.DEFINE_integer("s_candidates", _D.s_candidates, "Top-theta channels tried per attribute.")
flags.DEFINE_integer("num_components", _D.num_components, "GANSpace / SeFa components per row range.")
flags.DEFINE_list("row_ranges", None, "w row ranges for GANSpace / SeFa (default: all + thirds).")
flags.DEFINE_list(
  "matches", [f"{x:g}" for x in _D.matches], "Target changes (sigma of the target logit) at which AD is compared."
)
flags.DEFINE_float("psi", _D.psi, "Truncation psi of every image.")
flags.DEFINE_integer("batch_size", 128, "Renders per step and process.")
flags.mark_flag_as_required("workdir")
cli.finite("min_accuracy", "min_rate", "select_alpha", "psi")
cli.positive(
  "num_population", "num_select", "num_eval", "num_exemplars", "s_candidates", "num_components", "batch_size"
)
FLAGS = flags.FLAGS


def main(argv):
  del argv
  from converters.io import CheckpointError
  from ss_jax.dci import ad_comparison_run
  from ss_jax.runtime import distributed, jobs

  with cli.exit_on(CheckpointError, FileNotFoundError, ValueError):
    _distributed_flags.initialize()
    prepared = ad_comparison_run.prepare(cli.config_from_flags(ad_comparison_run.Settings))
  with cli.exit_on(ValueError, jobs.ShardsMissing):  # includes SettingsMismatch
    outcome = ad_comparison_run.run(prepared)
  if distributed.is_main():
    ad_comparison_run.report(prepared, outcome)


if __name__ == "__main__":
  cli.run(main)
