"""Attribute-specific channels: a checked ranking from a classifier's bank, or theta on given exemplars.

  python -m experiments.attribute_channels --classifier=toyfaces --attribute=hair_color,hat \
      --bank_size=20000 --psi=1 --verified=out/local/verified.json --workdir=out/attr
  python -m experiments.attribute_channels --logits=l.npy --bank_size=N --attribute=3 --workdir=...
  python -m experiments.attribute_channels --stats=out/stats/stats.npz --seeds=3,7,12,40 --workdir=...

Bank mode (--classifier / --logits, ss_jax/dci/attribute_bank.py): a resumable bank (seed bank_seed + i
= logits row i); ranking on the strongest exemplars; detection accuracy vs number of exemplars
against an independent half of the bank, with and without the region's verified locally-active
channels (--verified); edits of held-out images (classifier mode). Exemplar mode (--seeds/--codes):
ranking.json and a self-resampling curve (stability only: its last point is 1 by construction).
Pipeline: ss_jax/dci/attribute_channels_run.py.
"""

from absl import flags

from experiments import _distributed_flags
from ss_jax.runtime import cli

flags.DEFINE_string("checkpoint", None, "Generator; default: the embedded ToyFaces generator.")
flags.DEFINE_string("classifier", None, "Registered classifier building the bank: toyfaces.")
flags.DEFINE_string("logits", None, ".npy (bank_size, A) logits, row i = seed bank_seed + i (no edits).")
flags.DEFINE_string("attribute", "all", "Bank mode: names or column indices, comma-separated, or 'all'.")
flags.DEFINE_integer("bank_size", 20_000, "Bank samples (split: num_eval held out, then two halves).")
flags.DEFINE_integer("bank_seed", 0, "Bank sample i uses seed bank_seed + i.")
flags.DEFINE_string("bank_workdir", None, "Where the bank lives (default: --workdir; a DCI workdir works).")
flags.DEFINE_integer("num_exemplars", 30, "Exemplars of the main ranking (strongest of the pool).")
flags.DEFINE_integer("num_reference", 200, "Strongest exemplars of the reference half (and pool draws).")
flags.DEFINE_integer("num_eval", 128, "Held-out bank images edited per attribute.")
flags.DEFINE_string("verified", None, "verified.json of detect_local: restrict to the region's channels.")
flags.DEFINE_list(
  "alphas", ["5", "10", "20"], "Edit strengths in channel stds (towards the exemplars; empty: no edits)."
)
flags.DEFINE_integer("edit_top", 3, "Top channels of the main ranking that are edited.")
flags.DEFINE_integer("samples_per_shard", 5_000, "Bank samples per resumable shard.")
flags.DEFINE_string("stats", None, "stats.npz (experiments.style_stats); bank mode default: the bank's own.")
flags.DEFINE_string("seeds", None, "Exemplar mode: exemplar seeds, e.g. '0-29'.")
flags.DEFINE_string("codes", None, "Exemplar mode: .npz with 'w' (M, w_dim) or 'ws' (M, num_ws, w_dim).")
flags.DEFINE_float("psi", 0.7, "Truncation psi of the bank / the --seeds exemplars.")
flags.DEFINE_bool("lowest", False, "Exemplars have the lowest logits instead of the highest.")
flags.DEFINE_bool("include_torgb", False, "Also rank toRGB channels.")
flags.DEFINE_string("restrict_to", None, "Exemplar mode: only rank 'L_C,...' or a .json/.txt of names.")
flags.DEFINE_integer("top_k", 50, "Exemplar mode: channels listed in ranking.json.")
flags.DEFINE_integer("draws", 100, "Random exemplar subsets per size.")
flags.DEFINE_integer("curve_seed", 0, "Seed of the subset draws (and of the bank split).")
flags.DEFINE_integer("batch_size", 64, "Samples per batch.")
flags.DEFINE_string("workdir", None, "Output directory.")
cli.seed_list("seeds")
cli.finite("psi")
cli.positive("num_exemplars", "num_reference", "bank_size", "samples_per_shard", "top_k", "draws", "batch_size")
cli.non_negative("num_eval", "edit_top")
cli.seed("curve_seed")
cli.seed("bank_seed")
flags.mark_flags_as_required(["workdir"])
FLAGS = flags.FLAGS


def main(argv):
  del argv
  from ss_jax.dci import attribute_channels_run

  with cli.exit_on(FileNotFoundError, ValueError):  # includes CheckpointError, SettingsMismatch, bad names
    _distributed_flags.initialize()
    attribute_channels_run.run(cli.config_from_flags(attribute_channels_run.Settings))


if __name__ == "__main__":
  cli.run(main)
