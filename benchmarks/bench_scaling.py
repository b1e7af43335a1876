"""Scaling of the sharded jobs: stats and gradient-map throughput on 1, 2, 4, 8 (fake) devices.

  python -m benchmarks.bench_scaling                       # ToyFaces model; 1/2/4/8 devices + 2 processes x 2
  python -m benchmarks.bench_scaling --model=tiny          # a 16 px random model: seconds, for a smoke run
  python -m benchmarks.bench_scaling --devices=1,4 --processes=0 --gradmap_images=16

Every case is a fresh subprocess with XLA_FLAGS=--xla_force_host_platform_device_count=N
(and, for the multi-process case, two processes joined by jax.distributed on localhost).
Each runs the real job code: `stats.population_stats` with a ShardedJob and
`gradmaps.run_job` on a gradient-map job, in a temporary workdir, first a warm-up job
of the same shapes (compiles; reported as `warm-up s`) and then the timed job (wall time
until every shard is on disk, seen by process 0).

`ms/step` is the framework's own cost per step of `distributed.map_batches` on a trivial
function (batch_size x 512 floats: padding, building the global array, dispatch, reading rows
back) and `ms/agree` the cost of one agreement all-gather (one per round and per map_batches
call; 0-ish with one process).

`ratio` = time of the case / time on 1 device for the same work. On a CPU, fake devices
share the same cores, so a ratio near 1 means the sharding costs nothing; above 1 is
overhead (per-device dispatch, padding, small per-device batches), below 1 is better
core use than one device manages. On real accelerators the same jobs scale by the
device count times 1 / ratio (docs/scaling.md).
"""

import argparse
import json
import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python benchmarks/bench_scaling.py`
  sys.path.insert(0, str(REPO))


def _model(name):
  if name == "toyfaces":
    from ss_jax.runtime import defaults
    from ss_jax.stylegan2.checkpoint import load_generator

    return load_generator(defaults.default_checkpoint())
  from tests import tiny  # 16 px random generator of the test suite

  return tiny.tiny_generator(0)


def worker(case):
  """One case in this process (already joined to its peers if case['coordinator'])."""
  from ss_jax.runtime import distributed

  if case.get("coordinator"):
    distributed.initialize(case["coordinator"], case["processes"], case["process_id"])
  import jax
  from ss_jax.stylespace.gradmaps import api as gradmaps
  from ss_jax.stylespace.gradmaps import planning
  from ss_jax.stylespace import stats
  from ss_jax.stylespace.gradmaps import storage

  g = _model(case["model"])
  mesh = distributed.default_mesh()
  root = pathlib.Path(case["workdir"])
  row = dict(
    case, devices=jax.device_count(), local_devices=jax.local_device_count(), platform=jax.devices()[0].platform
  )
  for k in ("coordinator", "process_id", "workdir"):
    row.pop(k, None)

  def stats_job(name, seed, n):
    t = time.perf_counter()
    job = stats.make_job(root / name, g, n, 0.7, seed, case["samples_per_shard"])
    stats.population_stats(
      g, n, 0.7, case["batch_size"], seed, job, samples_per_shard=case["samples_per_shard"], mesh=mesh
    )
    return time.perf_counter() - t

  n = case["stats_samples"]
  row["stats_compile_s"] = stats_job("stats_warm", 10**6, case["samples_per_shard"] * case["processes"])
  row["stats_s"] = stats_job("stats", 0, n)
  row["stats_samples_per_s"] = n / row["stats_s"]

  k = case["gradmap_images"]
  per = max(k // case["processes"], 1)

  def maps_job(name, seeds):
    t = time.perf_counter()
    gm = storage.gradient_map_job(root / name, g, seeds, case["model"], case["resolution"], images_per_shard=per)
    gradmaps.run_job(gm, g, mesh=mesh)
    distributed.wait_for_shards(gm)
    return time.perf_counter() - t

  row.update(_framework_overheads(mesh, case["batch_size"]))
  row["gradmaps_compile_s"] = maps_job("maps_warm", range(10**6, 10**6 + per * case["processes"]))
  row["gradmaps_s"] = maps_job("maps", range(k))
  row["gradmaps_s_per_image"] = row["gradmaps_s"] / k
  row["plan"] = str(planning.plan(g.config, case["resolution"]))
  return row


def _double(g, x):
  return x * g


def _framework_overheads(mesh, batch_size, steps=64, width=512):
  """ms per map_batches step of a trivial function (pad, global array, dispatch, read back) and per
  agreement (the all-gather of every round and map_batches call), median-ish of repeats."""
  import numpy as np
  from ss_jax.runtime import distributed

  x = np.ones((steps * batch_size, width), np.float32)
  list(distributed.map_batches(_double, np.float32(2), (x[:batch_size],), (), batch_size, mesh))  # compile
  t = time.perf_counter()
  for _ in distributed.map_batches(_double, np.float32(2), (x,), (), batch_size, mesh):
    pass
  step_ms = (time.perf_counter() - t) / steps * 1e3
  distributed.agree_max(1, mesh)
  t = time.perf_counter()
  for _ in range(20):
    distributed.agree_max(1, mesh)
  return {"step_ms": step_ms, "agree_ms": (time.perf_counter() - t) / 20 * 1e3}


def _free_port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _spawn(case):
  """Runs a case in fresh subprocess(es); returns process 0's row (or an error row)."""
  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={case['local']}")
  procs = []
  with tempfile.TemporaryDirectory() as tmp:
    coordinator = f"localhost:{_free_port()}" if case["processes"] > 1 else None
    for i in range(case["processes"]):
      c = dict(case, workdir=tmp, coordinator=coordinator, process_id=i)
      procs.append(
        subprocess.Popen(
          [sys.executable, "-m", "benchmarks.bench_scaling", "--worker", json.dumps(c)],
          cwd=REPO,
          env=env,
          stdout=subprocess.PIPE,
          stderr=subprocess.PIPE,
          text=True,
        )
      )
    outs = [p.communicate() for p in procs]
  out, err = outs[0]
  if procs[0].returncode or any(p.returncode for p in procs):
    bad = next(o for p, o in zip(procs, outs) if p.returncode)
    lines = bad[1].strip().splitlines()
    return dict(case, error=lines[-1] if lines else "failed")
  return json.loads(out.strip().splitlines()[-1])


def _table(rows):
  base = next((r for r in rows if "error" not in r and r["devices"] == 1), None)
  head = [
    "case",
    "devices",
    "stats samples/s",
    "ratio",
    "gradmaps s/image",
    "ratio",
    "warm-up s (stats, maps)",
    "ms/step",
    "ms/agree",
  ]
  lines = [head]
  for r in rows:
    name = f"{r['processes']} proc x {r['local']} dev" if r["processes"] > 1 else f"{r['local']} dev"
    if "error" in r:
      lines.append([name, "-", "error: " + r["error"][:70], "", "", "", "", "", ""])
      continue
    rs = f"{r['stats_s'] / base['stats_s']:.2f}" if base else "-"
    rg = f"{r['gradmaps_s'] / base['gradmaps_s']:.2f}" if base else "-"
    lines.append(
      [
        name,
        str(r["devices"]),
        f"{r['stats_samples_per_s']:.0f}",
        rs,
        f"{r['gradmaps_s_per_image']:.3g}",
        rg,
        f"{r['stats_compile_s']:.1f}, {r['gradmaps_compile_s']:.1f}",
        f"{r['step_ms']:.2f}",
        f"{r['agree_ms']:.2f}",
      ]
    )
  widths = [max(len(l[i]) for l in lines) for i in range(len(head))]
  return "\n".join("  ".join(c.rjust(w) for c, w in zip(l, widths)) for l in lines)


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--model", choices=("toyfaces", "tiny"), default="toyfaces")
  ap.add_argument("--devices", default="1,2,4,8", help="fake device counts of the one-process cases")
  ap.add_argument("--processes", type=int, default=2, help="also run this many processes x 2 devices (0: no)")
  ap.add_argument("--stats_samples", type=int, default=16384)
  ap.add_argument("--samples_per_shard", type=int, default=2048)
  ap.add_argument("--batch_size", type=int, default=256, help="per step and process")
  ap.add_argument("--gradmap_images", type=int, default=8)
  ap.add_argument("--resolution", type=int, default=32)
  ap.add_argument("--worker", help=argparse.SUPPRESS)
  args = ap.parse_args()
  if args.worker:
    print(json.dumps(worker(json.loads(args.worker))))
    return
  common = dict(
    model=args.model,
    stats_samples=args.stats_samples,
    samples_per_shard=args.samples_per_shard,
    batch_size=args.batch_size,
    gradmap_images=args.gradmap_images,
    resolution=args.resolution if args.model == "toyfaces" else 8,
  )
  cases = [dict(common, processes=1, local=int(n)) for n in args.devices.split(",")]
  if args.processes > 1:
    cases.append(dict(common, processes=args.processes, local=2))
  print(
    f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; model {args.model}, "
    f"{args.stats_samples} stats samples, {args.gradmap_images} gradient-map images",
    flush=True,
  )
  rows = []
  for case in cases:
    rows.append(_spawn(case))
    print(json.dumps(rows[-1]), flush=True)
  print()
  print(_table(rows))
  print(
    f"\nload average now {os.getloadavg()[0]:.1f}. ratio = time / time on 1 device for the same work "
    "(fake devices share the CPU's cores: ~1 = no sharding overhead)."
  )


if __name__ == "__main__":
  main()
