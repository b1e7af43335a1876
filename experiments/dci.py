"""DCI (disentanglement, completeness, informativeness) of Z, W, W+ and S.

  python -m experiments.dci --num_samples=20000 --workdir=/tmp/dci_toyfaces
  python -m experiments.dci --checkpoint=ffhq.pkl --num_samples=100000 --method=gbt \
      --logits=ffhq_logits.npy --attribute_names=male,smiling,... --workdir=out/dci_ffhq

Samples seeds seed .. seed + num_samples - 1 at psi 1 (as the paper), stores z, w and S in
resumable shards (kill and rerun to continue; other settings are refused), scores the
rendered images with the attribute function (default: the shipped ToyFaces classifier) or
reads a precomputed (num_samples, A) logits .npy (row i = seed + i), then runs
ss_jax.dci.metric.dci per space. Writes WORKDIR/dci.json, dci.md, importance.npz and
importance_<space>[_top].png; see ss_jax/dci/sampling.py for the conventions (W+ is w
broadcast to every row). Several processes (docs/scaling.md): add
--coordinator_address=HOST:PORT --num_processes=M --process_id=i (or --distributed on a TPU
pod slice / SLURM); each samples its own shards, process 0 fits and writes the outputs.
"""
import pathlib
import sys
import time

from absl import app, flags

from experiments import _distributed_flags

flags.DEFINE_string("checkpoint", None, "Converted dir, NVIDIA .pkl or rosinality .pt; "
                    "default: the embedded ToyFaces generator.")
flags.DEFINE_integer("num_samples", 100_000, "Number of samples (official: 100,000).")
flags.DEFINE_list("spaces", ["z", "w", "wplus", "s"], "Latent spaces among z, w, wplus, s.")
flags.DEFINE_enum("method", "lasso", ["lasso", "gbt"], "Importance regressor (gbt = official, slow).")
flags.DEFINE_string("workdir", None, "Output/resume directory.")
flags.DEFINE_string("logits", None, "Precomputed (num_samples, A) logits .npy aligned with the seeds; "
                    "default: the ToyFaces classifier on the rendered images.")
flags.DEFINE_list("attribute_names", None, "Names of the --logits columns (default attr_0, ...).")
flags.DEFINE_integer("batch_size", 256, "Samples per step and process (padded to its device count).")
flags.DEFINE_integer("seed", 0, "Sample i uses z = RandomState(seed + i).randn.")
flags.DEFINE_integer("dci_seed", 0, "Seed of the train/test splits (and GBT random_state).")
flags.DEFINE_float("psi", 1.0, "Truncation psi (the paper's DCI uses none: 1).")
flags.DEFINE_integer("samples_per_shard", 5_000, "Samples per resumable shard.")
flags.DEFINE_integer("max_shards", None, "Compute at most this many shards (per process), then stop "
                     "(rerun to go on).")
flags.mark_flag_as_required("workdir")
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
    logits, attr_fn, names, source = dci_sampling.attribute_source(FLAGS.logits, FLAGS.attribute_names,
                                                                   FLAGS.num_samples)
    sjobs = dci_sampling.make_jobs(FLAGS.workdir, g, FLAGS.num_samples, attr_fn, seed=FLAGS.seed,
                                   psi=FLAGS.psi, samples_per_shard=FLAGS.samples_per_shard,
                                   extra_spec={"checkpoint": str(pathlib.Path(checkpoint).absolute())})
  except (CheckpointError, FileNotFoundError, ValueError) as e:  # includes SettingsMismatch
    sys.exit(f"error: {e}")

  log = distributed.log
  done = sjobs.done_samples()
  what = "codes + classifier logits" if attr_fn else "codes"
  log(f"DCI sampling: {FLAGS.num_samples} samples ({what}), psi={FLAGS.psi}, seed={FLAGS.seed}, "
      f"{len(sjobs.ranges)} shards, {done} samples already done, in {FLAGS.workdir}; {distributed.describe()}")
  t0 = time.time()
  computed = dci_sampling.run_sampling(g, sjobs, attr_fn, batch_size=FLAGS.batch_size,
                                       progress=dci_sampling.main_progress(sjobs), max_shards=FLAGS.max_shards)
  sample_s = time.time() - t0
  per_10k = sample_s / computed * 10_000 if computed else None
  if FLAGS.max_shards is not None:
    distributed.barrier("dci/max_shards")  # every process has written; then one decision for all
    if distributed.agree_max(int(not sjobs.complete())):
      log(f"stopped after {computed} samples (--max_shards); {sjobs.done_samples()}/{FLAGS.num_samples} "
          "done, rerun to continue")
      return
  if not _distributed_flags.wait_for_shards(*[j for j in (sjobs.codes, sjobs.logits) if j is not None]):
    return  # process 0 fits and writes; the others are done
  if logits is None:
    logits = dci_sampling.read_array(sjobs.logits, "logits")

  results = results_lib.evaluate(sjobs.codes, logits, FLAGS.spaces, g.config.num_ws, FLAGS.method,
                                  FLAGS.dci_seed, names, log=print)
  settings = dict(sjobs.codes.spec, method=FLAGS.method, dci_seed=FLAGS.dci_seed, spaces=FLAGS.spaces,
                  attribute_names=names, **source)
  timing = {"sampling_seconds": sample_s, "samples_computed": computed, "seconds_per_10k_samples": per_10k,
            "dci_seconds": {k: r["seconds"] for k, r in results.items()}}
  results_lib.write_and_report(pathlib.Path(FLAGS.workdir), results, g, settings, timing, names, what)


if __name__ == "__main__":
  app.run(main)
