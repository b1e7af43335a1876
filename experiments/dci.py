"""DCI (disentanglement, completeness, informativeness) of Z, W, W+, S and two controls.

  python -m experiments.dci --num_samples=20000 --workdir=/tmp/dci_toyfaces
  python -m experiments.dci --checkpoint=ffhq.pkl --num_samples=100000 --method=gbt \
      --logits=ffhq_logits.npy --attribute_names=male,smiling,... --workdir=out/dci_ffhq

Samples seeds seed .. seed + num_samples - 1 at psi 1 (as the paper), stores z, w and S in
resumable shards (other settings are refused), scores the renders with the attribute function
(default: the ToyFaces classifier) or reads a (num_samples, A) logits .npy (row i = seed + i),
runs ss_jax.dci.metric.dci per space (controls: ss_jax/dci/controls.py) and writes dci.json, dci.md,
importance.npz and heat maps (conventions: ss_jax/dci/sampling.py, ss_jax/dci/results.py). Several
processes (docs/scaling.md): --coordinator_address=HOST:PORT --num_processes=M --process_id=i (or
--distributed); each samples its own shards, process 0 fits and writes the outputs.
"""

import pathlib
import sys
import time

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
  from ss_jax.dci import sampling as dci_sampling
  from ss_jax.dci import results as results_lib
  from ss_jax.runtime import defaults, distributed
  from ss_jax.stylegan2.checkpoint import load_generator
  from converters.io import CheckpointError

  try:
    _distributed_flags.initialize()
    bad = [s for s in FLAGS.spaces if s not in dci_sampling.SPACES]
    if bad or not FLAGS.spaces:
      raise ValueError(f"--spaces: unknown {bad}; choose from {', '.join(dci_sampling.SPACES)}")
    checkpoint = FLAGS.checkpoint or defaults.default_checkpoint()
    g = load_generator(checkpoint)
    logits, attr_fn, names, source = dci_sampling.attribute_source(
      FLAGS.logits, FLAGS.attribute_names, FLAGS.num_samples
    )
    sjobs = dci_sampling.make_jobs(
      FLAGS.workdir,
      g,
      FLAGS.num_samples,
      attr_fn,
      seed=FLAGS.seed,
      psi=FLAGS.psi,
      samples_per_shard=FLAGS.samples_per_shard,
      extra_spec={"checkpoint": str(pathlib.Path(checkpoint).absolute())},
    )
  except (CheckpointError, FileNotFoundError, ValueError) as e:  # includes SettingsMismatch
    sys.exit(f"error: {e}")

  log = distributed.log
  done = sjobs.done_samples()
  what = "codes + classifier logits" if attr_fn else "codes"
  log(
    f"DCI sampling: {FLAGS.num_samples} samples ({what}), psi={FLAGS.psi}, seed={FLAGS.seed}, "
    f"{len(sjobs.ranges)} shards, {done} samples already done, in {FLAGS.workdir}; {distributed.describe()}"
  )
  t0 = time.time()
  computed = dci_sampling.run_sampling(
    g,
    sjobs,
    attr_fn,
    batch_size=FLAGS.batch_size,
    progress=dci_sampling.main_progress(sjobs),
    max_shards=FLAGS.max_shards,
  )
  sample_s = time.time() - t0
  if FLAGS.max_shards is not None:
    distributed.barrier("dci/max_shards")  # every process has written; then one decision for all
    if distributed.agree_max(int(not sjobs.complete())):
      log(
        f"stopped after {computed} samples (--max_shards); {sjobs.done_samples()}/{FLAGS.num_samples} "
        "done, rerun to continue"
      )
      return
  if not _distributed_flags.wait_for_shards(*[j for j in (sjobs.codes, sjobs.logits) if j is not None]):
    return  # process 0 fits and writes; the others are done
  if logits is None:
    logits = dci_sampling.read_array(sjobs.logits, "logits")

  results_lib.fit_and_report(
    FLAGS.workdir,
    sjobs.codes,
    logits,
    g,
    FLAGS.spaces,
    FLAGS.method,
    FLAGS.dci_seed,
    names,
    source,
    sample_s,
    computed,
    what,
    control_seed=FLAGS.control_seed,
  )


if __name__ == "__main__":
  cli.run(main)
