"""Ground truth on ToyFaces: every conv channel edited, precision / recall of every detection rule.

  python -m benchmarks.bench_verification --workdir=out/bench_verify        # ~20-40 min, resumable

Steps (each a resumable job under --workdir, so a killed run continues): gradient maps of
--seeds (the README's 300), scoring with the ToyFaces segmenter, detections under the official
rule and a grid of gradient-mass thresholds, verification of the default rule's detections as
detect_local runs it (--verify_seeds, then --verify_more_seeds for open verdicts), timed against
a timing sample of the gradient maps (--time_seeds images) under the same load, verification of
every other rule's detections, and the oracle: all conv channels edited on the first
--oracle_seeds stage, open verdicts on the next stages (all seed sets disjoint).
Writes bench_verification.json / .md (tables of docs/verification/README.md) into --workdir.
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
  ap.add_argument("--verify_seeds", default="1000000-1000015", help="first verification stage (as detect_local)")
  ap.add_argument("--verify_more_seeds", default="1000016-1000063", help="second stage, open verdicts only")
  ap.add_argument(
    "--oracle_seeds",
    default="2000000-2000011+2000012-2000047+2000048-2000095",
    help="oracle stages separated by '+': every channel on the first, open verdicts on the next ones",
  )
  ap.add_argument("--time_seeds", type=int, default=32, help="gradient-map images timed beside the verification")
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
    [parse_seeds(args.verify_seeds), parse_seeds(args.verify_more_seeds)],
    [parse_seeds(x) for x in args.oracle_seeds.split("+")],
    time_seeds=args.time_seeds,
  )
  print((pathlib.Path(args.workdir) / "bench_verification.md").read_text())
  for key in ("split", "split_decided"):
    print(f"{key}: chosen on the even channels: {out[key]['chosen']}; its targets on the odd ones:")
    for cat, ok, why in out[key]["targets_odd"]:
      print(f"  {cat:>10}: {'met' if ok else 'NOT met'} ({why})")
  t = out["timings"]
  print(
    "timings (s):",
    {k: round(v, 1) if isinstance(v, float) else v for k, v in t.items()},
    f"load average at start {load[0]:.1f}, at end {os.getloadavg()[0]:.1f}",
  )
  if out["cost"]:
    c = out["cost"]
    print(
      f"cost: verifying the default rule's detections {c['verify_s']} s, the gradient maps of the run's "
      f"{len(parse_seeds(args.seeds))} images {c['gradient_maps_s']} s (estimated from the timing sample): "
      f"{100 * c['verify_over_maps']:.0f}%"
    )
  for key, what in (("targets", "all channels"), ("targets_decided", "channels the oracle decided")):
    print(f"targets ({out['default_verified']}), {what}:")
    for cat, ok, why in out[key]:
      print(f"  {cat:>10}: {'met' if ok else 'NOT met'} ({why})")


if __name__ == "__main__":
  main()
