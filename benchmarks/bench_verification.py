"""Ground truth on ToyFaces: every conv channel edited, precision / recall of every detection rule.

  python -m benchmarks.bench_verification --workdir=out/bench_verify        # ~20-40 min, resumable

Steps (each a resumable job under --workdir, so a killed run continues): gradient maps of
--seeds (the README's 300), scoring with the ToyFaces segmenter, detections under the official
rule and a grid of gradient-mass thresholds, verification of the default rule's detections on
--verify_seeds (timed against the gradient maps), verification of every other rule's
detections, and the oracle: all conv channels edited on --oracle_seeds (disjoint from both).
Writes bench_verification.json / .md (tables of docs/verification.md) into --workdir.
"""

import argparse
import pathlib
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
  sys.path.insert(0, str(REPO))


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--workdir", required=True)
  ap.add_argument("--seeds", default="0-299", help="gradient-map seeds")
  ap.add_argument("--verify_seeds", default="1000000-1000015")
  ap.add_argument("--oracle_seeds", default="2000000-2000011")
  args = ap.parse_args()
  import os
  from ss_jax.runtime import defaults
  from ss_jax.stylespace import ground_truth
  from ss_jax.runtime.seeds import parse_seeds
  from ss_jax.stylegan2.checkpoint import load_generator

  ckpt = defaults.default_checkpoint()
  g = load_generator(ckpt)
  load = os.getloadavg()
  out = ground_truth.run_benchmark(
    args.workdir,
    g,
    ckpt,
    parse_seeds(args.seeds),
    parse_seeds(args.verify_seeds),
    parse_seeds(args.oracle_seeds),
  )
  print((pathlib.Path(args.workdir) / "bench_verification.md").read_text())
  t = out["timings"]
  print(
    "timings (s):",
    {k: round(v, 1) if isinstance(v, float) else v for k, v in t.items()},
    f"load average at start {load[0]:.1f}, at end {os.getloadavg()[0]:.1f}",
  )
  print("targets (default rule + verified):")
  for cat, ok, why in out["targets"]:
    print(f"  {cat:>10}: {'met' if ok else 'NOT met'} ({why})")


if __name__ == "__main__":
  main()
