"""Channel explorer in the browser: browse StyleSpace channels and edit images live.

  python -m experiments.explore                                   # shipped ToyFaces model
  python -m experiments.explore --workdir=out/analysis            # + stats, detections, verified.json
  python -m experiments.explore --checkpoint=ffhq.pkl --stats=out/stats/stats.npz --port=8001

Prints the address (http://127.0.0.1:PORT/). Binds to 127.0.0.1 unless --host says otherwise
(the explorer has no authentication: another host exposes it to the network).
"""

import logging
import sys

from absl import flags

from ss_jax.runtime import cli

flags.DEFINE_string("checkpoint", None, "Generator; default: the embedded ToyFaces generator.")
flags.DEFINE_string("workdir", None, "Analysis folder searched for stats.npz, detections.json, verified.json.")
flags.DEFINE_string("stats", None, "stats.npz (overrides the workdir's); default: computed at start.")
flags.DEFINE_string("detections", None, "detections.json of experiments.detect_local (overrides the workdir's).")
flags.DEFINE_string("verified", None, "verified.json (overrides the workdir's).")
flags.DEFINE_string("segmenter", "auto", "auto (ToyFaces for the shipped model), none, toyfaces, bisenet, mod:fn.")
flags.DEFINE_string("encoder", "auto", "auto (the shipped encoder if it fits the generator), none, or a folder.")
flags.DEFINE_string("host", "127.0.0.1", "Address to bind; anything but loopback exposes the explorer.")
flags.DEFINE_integer("port", 8000, "Port (0: any free port).")
flags.DEFINE_integer("max_batch", 8, "Most images rendered in one batch.")
flags.DEFINE_integer("sigma_samples", 2000, "Samples for sigma when no stats.npz is given.")
flags.DEFINE_bool("measure", True, "Measure channel locality at start when there are no detections.")
cli.non_negative("port")
cli.positive("max_batch", "sigma_samples")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  logging.basicConfig(level=logging.INFO, format="%(message)s")
  from ss_jax.runtime import defaults
  from ss_jax.stylegan2.checkpoint import load_generator
  from ss_jax.explorer import app as app_lib, launch

  if not app_lib.is_loopback(FLAGS.host):
    print(
      f"warning: binding {FLAGS.host}: anyone who can reach this address can use the explorer (no authentication)",
      file=sys.stderr,
    )
  try:
    path = FLAGS.checkpoint or defaults.default_checkpoint()
    g = load_generator(path)
    ex = launch.build_explorer(
      g,
      str(FLAGS.checkpoint or "ToyFaces (shipped)"),
      default_model=FLAGS.checkpoint is None,
      workdir=FLAGS.workdir,
      stats_path=FLAGS.stats,
      detections_path=FLAGS.detections,
      verified_path=FLAGS.verified,
      segmenter=FLAGS.segmenter,
      encoder=FLAGS.encoder,
      max_batch=FLAGS.max_batch,
      sigma_samples=FLAGS.sigma_samples,
      measure=FLAGS.measure,
    )
  except (FileNotFoundError, ValueError) as e:
    sys.exit(f"error: {e}")
  launch.serve(ex, FLAGS.host, FLAGS.port)


if __name__ == "__main__":
  cli.run(main)
