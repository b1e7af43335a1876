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
Conventions: ss_jax/toyfaces/eval/inversion.py; pipeline: ss_jax/toyfaces/eval/experiment.py.

Resumable: S statistics (WORKDIR/stats/, a ShardedJob), the exemplar bank (bank.npz) and each
method's codes (methods/<method>.npz) are written atomically and reused by a rerun with the same
settings (a method computed with other settings is refused: use another --workdir or delete
that file). Writes WORKDIR/table.md, results.json, figure.png (rows: images; columns:
original | reconstructions | true edit | edits) and channels.json; with --pilot, pilot.md and
pilot.json (edits of generated samples for every candidate attribute) instead.
"""

import sys

from absl import flags

from ss_jax.runtime import cli
from ss_jax.toyfaces.eval import experiment

D = experiment.get_config()
flags.DEFINE_string("workdir", D.workdir, "Output / resume directory.")
flags.DEFINE_string("checkpoint", D.checkpoint, "Generator; default: the embedded ToyFaces generator.")
flags.DEFINE_string(
  "encoder",
  D.encoder,
  "Encoder directory (ss_jax.inversion.encoder format) or an "
  "experiments.train_encoder workdir (its latest checkpoint); default: the shipped one.",
)
flags.DEFINE_list("methods", D.methods, "Methods among w, wplus, s, encoder, hybrid.")
flags.DEFINE_integer("num_images", D.num_images, "Held-out renders inverted (seeds 40,000,000 + i).")
flags.DEFINE_integer("steps", D.steps, "Optimisation steps of w, wplus and s.")
flags.DEFINE_integer("hybrid_steps", D.hybrid_steps, "Optimisation steps in S after the encoder (hybrid).")
flags.DEFINE_float("lr", D.lr, "Peak learning rate of ss_jax.inversion.optimise (S: in units of each channel's std).")
flags.DEFINE_enum("lpips", D.lpips, ["alex", "vgg", "none"], "Perceptual loss and metric (weight 1, plus MSE).")
flags.DEFINE_list("attributes", D.attributes, "Edited attributes (default: inversion_eval.DEFAULT_ATTRIBUTES).")
flags.DEFINE_integer("num_channels", D.num_channels, "Top channels moved per attribute (default: inversion_eval's).")
flags.DEFINE_float("alpha", D.alpha, "Edit strength in population stds (default: inversion_eval's).")
flags.DEFINE_integer(
  "num_exemplars", D.num_exemplars, "Exemplars per attribute: the bank samples with the highest logit."
)
flags.DEFINE_integer("bank_size", D.bank_size, "Generator samples (seeds 0.., psi 1) ranked by the classifier.")
flags.DEFINE_integer("stats_samples", D.stats_samples, "Samples (seeds 0.., psi 1) of the population mean / std of S.")
flags.DEFINE_integer("reference_images", D.reference_images, "Fresh renders (seeds 41,000,000..) of the FD reference.")
flags.DEFINE_integer(
  "figure_rows", D.figure_rows, "Images shown in figure.png (image i: edit of attribute i mod count)."
)
flags.DEFINE_integer("chunk_steps", D.chunk_steps, "Optimisation steps between progress lines.")
flags.DEFINE_integer("batch_size", D.batch_size, "Images per batch when rendering / classifying.")
flags.DEFINE_bool("pilot", D.pilot, "Score candidate attributes on generated samples and stop (pilot.md).")
flags.DEFINE_list(
  "pilot_attributes",
  D.pilot_attributes,
  "Candidates of --pilot (default: every local attribute the classifier reads reliably).",
)
flags.DEFINE_integer("pilot_images", D.pilot_images, "Generated samples (seeds 100,000..) edited by --pilot.")
flags.mark_flag_as_required("workdir")
cli.positive(
  "num_images",
  "stats_samples",
  "reference_images",
  "bank_size",
  "num_exemplars",
  "chunk_steps",
  "batch_size",
  "pilot_images",
  "num_channels",
  "lr",
)
cli.non_negative("steps", "hybrid_steps", "figure_rows")
cli.finite("alpha")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  config = cli.config_from_flags(experiment.TableConfig)
  with cli.exit_on(FileNotFoundError, ValueError):  # CheckpointError, GeneratorMismatch, SettingsMismatch, flags
    experiment.run(config, sys.argv[1:])


if __name__ == "__main__":
  cli.run(main)
