"""Edit S channels by alpha population stds and render a labelled grid.

  python -m experiments.manipulate --stats=out/stats/stats.npz --channels=6_202,9_11 \
      --seeds=0-3 --alphas=-10,-5,0,5,10 --outdir=out/manip
  python -m experiments.manipulate --stats=... --channels=6_202,9_11 --joint --outdir=...

  python -m experiments.manipulate --edit=edit.json --outdir=out/replay   # an explorer export

Rows = channel x seed (or the joint edit x seed with --joint), columns = alphas.
Writes OUTDIR/grid.png and manipulation.json; the edits themselves (uint8, every seed x
channel x alpha) are kept in resumable shards under OUTDIR/edits_<settings hash>/, so a
killed batch of many seeds resumes, with any number of devices or processes
(--coordinator_address=HOST:PORT --num_processes=M --process_id=i, or --distributed;
docs/scaling.md). Process 0 writes the grid (pipeline: ss_jax/stylespace/manipulate_run.py).
"""

from absl import flags

from experiments import _distributed_flags
from ss_jax.runtime import cli

flags.DEFINE_string("checkpoint", None, "Generator; default: the embedded ToyFaces generator.")
flags.DEFINE_string("stats", None, "stats.npz from experiments.style_stats (sigma of each channel).")
flags.DEFINE_string("channels", None, "Channels 'L_C', e.g. '6_202,9_11'.")
flags.DEFINE_string("seeds", "0-3", "Seeds of the images to edit.")
flags.DEFINE_float("psi", 0.7, "Truncation psi.")
flags.DEFINE_integer("class_idx", None, "Class for conditional models (default: seed % c_dim).")
flags.DEFINE_string("alphas", "-10,-5,0,5,10", "Edit strengths in units of sigma.")
flags.DEFINE_bool("joint", False, "Move all channels together instead of one row set per channel.")
flags.DEFINE_integer("min_cell", 64, "Upscale cells narrower than this (pixels) for readable grids.")
flags.DEFINE_integer("batch_size", 8, "Images per step and process (times the number of alphas).")
flags.DEFINE_integer("images_per_shard", 16, "Seeds per resumable shard.")
flags.DEFINE_string("outdir", "out/manipulate", "Output directory.")
flags.DEFINE_string(
  "edit",
  None,
  "Replay an edit JSON exported by experiments.explore (writes OUTDIR/edit_<i>.png; "
  "--stats and --channels are not needed: the file holds seeds or codes, alphas and sigmas).",
)
cli.seed_list("seeds")
cli.finite("psi")
cli.non_negative("class_idx")
cli.positive("min_cell", "batch_size", "images_per_shard")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  from ss_jax.runtime import defaults
  from ss_jax.stylegan2.checkpoint import load_generator
  from ss_jax.stylespace import manipulate_run

  if FLAGS.edit:
    from ss_jax.explorer import edit_spec

    with cli.exit_on(FileNotFoundError, ValueError):
      g = load_generator(FLAGS.checkpoint or defaults.default_checkpoint())
      for path in edit_spec.replay_file(g, FLAGS.edit, FLAGS.outdir):
        print(f"wrote {path}")
    return
  # ValueError includes CheckpointError, bad names, wrong stats, missing --stats / --channels
  _distributed_flags.run_pipeline(manipulate_run, (FileNotFoundError, ValueError))


if __name__ == "__main__":
  cli.run(main)
