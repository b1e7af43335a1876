"""DCI (disentanglement, completeness, informativeness) of Z, W, W+, S and two controls.

  python -m experiments.dci --num_samples=20000 --workdir=/tmp/dci_toyfaces
  python -m experiments.dci --checkpoint=ffhq.pkl --num_samples=100000 --method=gbt \
      --logits=ffhq_logits.npy --attribute_names=male,smiling,... --workdir=out/dci_ffhq

Samples seeds seed .. seed + num_samples - 1 at psi 1 (as the paper), stores z, w and S in
resumable shards (other settings are refused), scores the renders with the attribute function
(default: the ToyFaces classifier) or reads a (num_samples, A) logits .npy (row i = seed + i),
runs ss_jax.dci.metric.dci per space (controls: ss_jax/dci/controls.py) and writes dci.json, dci.md,
importance.npz and heat maps (pipeline: ss_jax/dci/dci_run.py; conventions: ss_jax/dci/sampling.py,
ss_jax/dci/results.py). Several
processes (docs/scaling.md): --coordinator_address=HOST:PORT --num_processes=M --process_id=i (or
--distributed); each samples its own shards, process 0 fits and writes the outputs.
"""

from absl import flags

from experiments import _distributed_flags
from ss_jax.runtime import cli

flags.DEFINE_string(
  "checkpoint", None, "Converted dir, NVIDIA .pkl or rosinality .pt; default: the embedded ToyFaces generator."
)
flags.DEFINE_integer("num_samples", 100_000, "Number of samples (official: 100,000).")
flags.DEFINE_list(
  "spaces",
  ["z", "w", "wplus", "s", "w_expand", "s_rotated"],
  "Spaces among z, w, wplus, s and the controls w_expand (W randomly expanded to S's "
  "size), s_rotated (S rotated within each layer); see ss_jax/dci/controls.py.",
)
flags.DEFINE_integer("control_seed", 0, "Seed of the control spaces' random matrices.")
flags.DEFINE_enum("method", "lasso", ["lasso", "gbt"], "Importance regressor (gbt = official, slow).")
flags.DEFINE_string("workdir", None, "Output/resume directory.")
flags.DEFINE_string(
  "logits",
  None,
  "Precomputed (num_samples, A) logits .npy aligned with the seeds; "
  "default: the ToyFaces classifier on the rendered images.",
)
flags.DEFINE_list("attribute_names", None, "Names of the --logits columns (default attr_0, ...).")
flags.DEFINE_integer("batch_size", 256, "Samples per step and process (padded to its device count).")
flags.DEFINE_integer("seed", 0, "Sample i uses z = RandomState(seed + i).randn.")
flags.DEFINE_integer("dci_seed", 0, "Seed of the train/test splits (and GBT random_state).")
flags.DEFINE_float("psi", 1.0, "Truncation psi (the paper's DCI uses none: 1).")
flags.DEFINE_integer("samples_per_shard", 5_000, "Samples per resumable shard.")
flags.DEFINE_integer("max_shards", None, "Compute at most this many shards (per process), then stop (rerun to go on).")
flags.mark_flag_as_required("workdir")
cli.positive("num_samples", "batch_size", "samples_per_shard", "max_shards")
cli.seed("seed", "dci_seed")
cli.seed_span("seed", "num_samples")
cli.finite("psi")
cli.needs_module("method", "gbt", "sklearn", "scikit-learn (pip install scikit-learn)")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  from converters.io import CheckpointError
  from ss_jax.dci import dci_run

  # ValueError includes SettingsMismatch
  _distributed_flags.run_pipeline(dci_run, (CheckpointError, FileNotFoundError, ValueError))


if __name__ == "__main__":
  cli.run(main)
