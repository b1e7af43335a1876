"""Gradient maps + detection statistics at config-f widths, and stored vs streamed detection.

  python -m benchmarks.bench_gradmap_stream                       # 1024 px: before vs now, side by side
  python -m benchmarks.bench_gradmap_stream --variants=before,now,windows
  python -m benchmarks.bench_gradmap_stream --resolution=256 --images=2
  python -m benchmarks.bench_gradmap_stream --toyfaces --seeds=0-31   # stored vs --stream binaries

Model cases (a random config-f-width generator, pooled 32 x 32, all conv channels;
each case in a fresh subprocess so `peak GB` (ru_maxrss) is its own, compile
included; cases alternate so both variants see the same machine load). Both
variants include the streaming reduction `detection_stats.accumulate` of every
image's maps against an 11-category map (fixed synthetic layout: the segmenter,
BiSeNet at 1024 px, is not part of this measurement):

  untransposed  the default before 1ebe2fb: every layer above the local mode's cut is
          re-run on each tile's crops and differentiated there (jax.vjp), crop
          up-convs on the zero-padded crop (layers.UP_TRIM = False, split = 0);
  before  the default of b9e64bd: the blocks whose crops overlap most (split) run
          transposed at primal crops cut from one full-size forward pass (no
          per-tile recomputation of their convs), crop up-convs computed only
          where the kept outputs need them (bit-identical to the padded ones); the
          crop gradients at the cut are regrouped by position before the
          contraction with the forward tangents (local.REGROUP = True);
  now     the current default: as before, and the compiler's freed heap is
          returned to the OS before running (runtime.memory.release_free_heap, as
          distributed.map_batches and the gradmaps API do);
  windows as now, but the contraction reads the crop gradients window offset by
          window offset (local.REGROUP = False: no regrouped copy);
  tbN     as now, with N tiles per vmapped batch (Plan.tile_batch; the planner
          chooses 2 at 1024 px);
  splitN  as now, with Plan.split = N (the first layer re-run per tile; the planner
          chooses 20 at 1024 px: b512 and b1024 re-run per tile; split23 stores b512 too);
  chunkN  as now, with Plan.chunk = N low-layer tangents per vmapped chunk (the planner's
          budget rounded down to a power of two: 128 at config-f widths; chunk222 is the
          previous default, 512 channels then ran in chunks of 171).

The first image's maps of each variant are saved and compared (`max |diff|`).

--profile: each case maps one more image under `jax.profiler.trace` (with XLA's per-op trace events on)
and prints where its time went: seconds per kind of XLA CPU operation (the `ynn_fusion`s are the matrix
products, the others mostly pads, copies and element-wise fusions), summed over the trace, beside the
traced wall time.

Each image's computation is compiled ahead (`compile s`, apart), then timed:
`s/image` wall clock, `CPU s/image` the process's CPU time (all threads; on a
shared machine a better guide than wall time: at low load wall ~ CPU / cores);
`setup GB` is the peak RSS before compiling the maps (process, model, styles;
by default the random model is saved once as a converted directory and each case
loads it with `load_generator`, as a user's run does: 0.5 GB; `--model=random`
builds it in each case, whose jitted random init alone peaks ~0.6 GB higher), `XLA temp GB` the compiled maps program's temporaries (XLA's memory
analysis). --toyfaces runs the real binaries on
the shipped ToyFaces model (segmenter included) both ways and reports wall time
and disk use of the work directory.
"""

import argparse
import json
import os
import pathlib
import resource
import shutil
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
  sys.path.insert(0, str(REPO))


def _categories(n, p, k=11):
  """(n, p, p) synthetic category maps: background, a face disc, two eyes, a mouth, hair band."""
  import numpy as np

  yy, xx = np.mgrid[:p, :p] / p
  cats = np.ones((p, p), np.uint8)
  cats[(yy - 0.55) ** 2 + (xx - 0.5) ** 2 < 0.12] = 2
  cats[yy < 0.2] = 10
  cats[((yy - 0.45) ** 2 + (xx - 0.35) ** 2 < 0.004) | ((yy - 0.45) ** 2 + (xx - 0.65) ** 2 < 0.004)] = 4
  cats[(np.abs(yy - 0.75) < 0.04) & (np.abs(xx - 0.5) < 0.12)] = 7
  return np.repeat(cats[None] % k, n, axis=0)


# Variant prefix -> the Plan field its number sets (tbN, splitN, chunkN: "now" with that field = N).
PLAN_OVERRIDES = {"tb": "tile_batch", "split": "split", "chunk": "chunk"}


def worker(case):
  import jax
  import numpy as np
  from jax.sharding import NamedSharding
  from jax.sharding import PartitionSpec as P
  from ss_jax.runtime import memory
  from ss_jax.stylespace import detection_stats
  from ss_jax.stylegan2 import layers
  from ss_jax.stylespace.gradmaps import api as gradmaps
  from ss_jax.stylespace.gradmaps import local, planning
  from ss_jax.stylegan2.generator import Generator, config_f

  res, n, variant = case["resolution"], case["images"], case["variant"]
  cfg = config_f(res)
  if case.get("model_dir"):  # what a user's run does: a converted directory, loaded
    from ss_jax.stylegan2 import checkpoint

    g = checkpoint.load_generator(case["model_dir"])
    assert g.config == cfg, (g.config, cfg)
  else:  # built in this process: compiling the random init alone peaks at ~0.6 GB
    g = jax.jit(Generator.random, static_argnums=0)(cfg, jax.random.PRNGKey(0))
  z = jax.random.normal(jax.random.PRNGKey(1), (n, 512))
  styles = jax.jit(lambda g, z: g.styles(g.mapping(z)))(g, z)
  if variant == "untransposed":  # crop up-convs on the zero-padded crop, every block re-run per tile
    layers.UP_TRIM = False
  local.REGROUP = variant != "windows"
  pl = planning.plan(cfg, 32, split=0 if variant == "untransposed" else None)
  override = [p for p in PLAN_OVERRIDES if variant.startswith(p)]
  if override:
    import dataclasses

    (prefix,) = override
    pl = dataclasses.replace(pl, **{PLAN_OVERRIDES[prefix]: int(variant[len(prefix) :])})
  cats = _categories(1, 32)
  mesh = jax.make_mesh((1,), ("data",), devices=jax.devices()[:1])
  put = lambda i: jax.device_put(tuple(v[i : i + 1] for v in styles), NamedSharding(mesh, P("data")))
  g = jax.device_put(g, NamedSharding(mesh, P()))
  kw = dict(res=32, layers=gradmaps.considered_layers(g.layout), pl=pl, maps=True, mesh=mesh, n=1)
  t = time.perf_counter()
  setup_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # model, styles (high-water mark)
  exe = gradmaps._batched.lower(g, put(0), **kw).compile()
  # As distributed.map_batches does: the compiler's freed heap back to the OS.
  if variant in ("now", "windows") or override:
    memory.release_free_heap()
  compile_s = time.perf_counter() - t
  mem = exe.memory_analysis()
  temp_gb = None if mem is None else mem.temp_size_in_bytes / 1e9
  times, cpu, stats = [], [], None
  for i in range(n):
    s_i = put(i)
    t, c = time.perf_counter(), time.process_time()
    maps = np.asarray(exe(g, s_i))
    st = detection_stats.accumulate(maps, cats, 11, with_map_sum=True)
    stats = st if stats is None else stats + st
    times.append(time.perf_counter() - t)
    cpu.append(time.process_time() - c)
    if i == 0 and case.get("save"):
      np.save(case["save"], maps)
  out = dict(
    case,
    plan=str(pl),
    compile_s=compile_s,
    s_per_image=float(np.mean(times)),
    cpu_s_per_image=float(np.mean(cpu)),
    all_s=[round(t, 1) for t in times],
    peak_gb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
    setup_gb=setup_gb,
    xla_temp_gb=temp_gb,
    channels=int(maps.shape[1]),
    load=os.getloadavg()[0],
  )
  if stats is not None:
    out["stats_mb"] = sum(v.nbytes for v in stats.to_arrays().values()) / 1e6
  if case.get("profile"):
    out["profile"] = _profile(lambda: np.asarray(exe(g, put(0))))
  return out


def _profile(run, top=8):
  """Runs run() under jax.profiler.trace; -> {"wall_s", "ops_s": {kind: seconds}} (kind: an XLA op's name
  without its number, e.g. "ynn_fusion" or "copy_pad_fusion"; the top kinds, the rest as "other")."""
  import collections
  import gzip
  import re

  import jax

  d = tempfile.mkdtemp(prefix="bench_stream_trace_")
  try:
    t = time.perf_counter()
    with jax.profiler.trace(d, create_perfetto_trace=True):
      run()
    wall = time.perf_counter() - t
    (path,) = pathlib.Path(d).rglob("*.trace.json.gz")
    events = json.load(gzip.open(path))
    events = events["traceEvents"] if isinstance(events, dict) else events
    kinds = collections.Counter()
    for e in events:
      name = e.get("name", "")
      if e.get("ph") == "X" and re.fullmatch(r"[a-z][\w-]*\.\d+|wrapped_\w+", name):
        kinds[re.sub(r"\.\d+$", "", name)] += e.get("dur", 0) / 1e6
  finally:
    shutil.rmtree(d, ignore_errors=True)
  ops = dict(kinds.most_common(top))
  ops["other"] = sum(kinds.values()) - sum(ops.values())
  return {"wall_s": wall, "ops_s": {k: round(v, 2) for k, v in ops.items()}}


def save_model(resolution, directory):
  """Writes the benchmark's random config-f-width generator (seed 0) as a converted directory."""
  import jax
  from ss_jax.stylegan2 import checkpoint
  from ss_jax.stylegan2.generator import Generator, config_f

  g = jax.jit(Generator.random, static_argnums=0)(config_f(resolution), jax.random.PRNGKey(0))
  checkpoint.save_generator(g, directory, source={"random": "config_f, PRNGKey(0)"})


def _spawn(args, cwd=REPO):
  t = time.perf_counter()
  proc = subprocess.run([sys.executable] + args, cwd=cwd, capture_output=True, text=True)
  return proc, time.perf_counter() - t


def _du(path):
  return sum(f.stat().st_size for f in pathlib.Path(path).rglob("*") if f.is_file())


def toyfaces(seeds):
  """Stored maps vs --stream on the shipped ToyFaces model: wall time and disk of each workdir."""
  rows = []
  base = pathlib.Path(tempfile.mkdtemp(prefix="bench_stream_"))
  try:
    for variant in ("stored", "stream"):
      wd = base / variant
      extra = ["--stream"] if variant == "stream" else []
      p1, t1 = _spawn(["-m", "experiments.gradient_maps", f"--seeds={seeds}", f"--workdir={wd}"] + extra)
      p2, t2 = _spawn(["-m", "experiments.detect_local", f"--workdir={wd}", "--noverify"])
      if p1.returncode or p2.returncode:
        raise RuntimeError((p1.stderr + p2.stderr)[-2000:])
      det = json.loads((wd / "local" / "detections.json").read_text())
      rows.append(
        dict(
          variant=variant,
          maps_s=t1,
          detect_s=t2,
          disk_mb=_du(wd) / 1e6,
          detected={c["category"]: len(c["detected"]) for c in det["categories"]},
        )
      )
      print(json.dumps(rows[-1]), flush=True)
  finally:
    shutil.rmtree(base, ignore_errors=True)
  same = rows[0]["detected"] == rows[1]["detected"]
  print(f"\nToyFaces, seeds {seeds}: (wall s incl. start-up and compile; disk = whole workdir)")
  for r in rows:
    print(
      f"  {r['variant']:>6}: gradient_maps {r['maps_s']:.1f} s, detect_local {r['detect_s']:.1f} s, "
      f"disk {r['disk_mb']:.2f} MB"
    )
  print(f"  same detection counts per category: {same}")


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--resolution", type=int, default=1024)
  ap.add_argument("--images", type=int, default=2, help="images per case (the first includes compilation)")
  ap.add_argument("--rounds", type=int, default=1, help="before/now pairs, alternating")
  ap.add_argument("--variants", default="before,now", help="order of the variants in each round")
  ap.add_argument("--toyfaces", action="store_true", help="stored vs streamed binaries on ToyFaces")
  ap.add_argument("--seeds", default="0-31")
  ap.add_argument(
    "--model",
    default="converted",
    choices=["converted", "random"],
    help="converted: the random model is saved once and each case loads it as a user's converted "
    "checkpoint (load_generator); random: each case builds it in-process (compiles the random init)",
  )
  ap.add_argument("--profile", action="store_true", help="each case traces one more image: time per XLA op kind")
  ap.add_argument("--worker", help=argparse.SUPPRESS)
  ap.add_argument("--save_model", help=argparse.SUPPRESS)
  args = ap.parse_args()
  if args.worker:
    print(json.dumps(worker(json.loads(args.worker))))
    return
  if args.save_model:
    save_model(args.resolution, args.save_model)
    return
  print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
  if args.toyfaces:
    toyfaces(args.seeds)
    print(f"load average now {os.getloadavg()[0]:.1f}")
    return
  if args.profile:  # XLA:CPU records one trace event per operation only with this flag (workers inherit it)
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_enable_xprof_traceme=true").strip()
  rows, saved = [], {}
  tmp = pathlib.Path(tempfile.mkdtemp(prefix="bench_stream_maps_"))
  model_dir = None
  if args.model == "converted":
    model_dir = str(tmp / "model")
    proc, _ = _spawn(
      ["-m", "benchmarks.bench_gradmap_stream", f"--resolution={args.resolution}", f"--save_model={model_dir}"]
    )
    if proc.returncode:
      raise RuntimeError(proc.stderr[-2000:])
  for _ in range(args.rounds):
    for variant in args.variants.split(","):
      case = dict(
        resolution=args.resolution, images=args.images, variant=variant, model_dir=model_dir, profile=args.profile
      )
      if variant not in saved:
        case["save"] = saved[variant] = str(tmp / f"{variant}.npy")
      proc, _ = _spawn(["-m", "benchmarks.bench_gradmap_stream", "--worker", json.dumps(case)])
      row = (
        json.loads(proc.stdout.strip().splitlines()[-1])
        if proc.returncode == 0
        else dict(case, error=proc.stderr.strip()[-300:])
      )
      rows.append(row)
      print(json.dumps(row), flush=True)
  print(
    f"\n{args.resolution} px config-f widths ({args.model} model), 32 x 32 maps, per image "
    f"(load average now {os.getloadavg()[0]:.1f}):"
  )
  print(
    f"  {'variant':>7}  {'s/image':>8}  {'CPU s/image':>11}  {'compile s':>9}  {'peak GB':>8}  setup GB  "
    "XLA temp GB  stats MB  load"
  )
  for r in rows:
    if "error" in r:
      print(f"  {r['variant']:>7}  error: {r['error']}")
      continue
    print(
      f"  {r['variant']:>7}  {r['s_per_image']:8.1f}  {r['cpu_s_per_image']:11.1f}  {r['compile_s']:9.1f}  "
      f"{r['peak_gb']:8.2f}  {r['setup_gb']:8.2f}  {r['xla_temp_gb'] or float('nan'):11.2f}  "
      f"{r.get('stats_mb', 0):8.1f}  {r['load']:.1f}"
    )
  _compare(saved)
  for r in rows:
    if r.get("profile"):
      ops = r["profile"]["ops_s"]
      print(
        f"  {r['variant']} traced image: {r['profile']['wall_s']:.1f} s wall; XLA ops, seconds summed over the "
        f"trace ({sum(ops.values()):.1f} in all): " + ", ".join(f"{k} {v:.2f}" for k, v in ops.items())
      )
  shutil.rmtree(tmp, ignore_errors=True)


def _compare(saved):
  """Prints max |difference| between the first variant's first-image maps and each other's, against the maps' scale."""
  import numpy as np

  maps = {k: np.load(v) for k, v in saved.items() if pathlib.Path(v).is_file()}
  items = list(maps.items())
  for (ka, a), (kb, b) in zip(items[:1] * (len(items) - 1), items[1:]):
    d = np.abs(a - b)[0]  # (C, P, P)
    tiles = int((d.max(axis=0) > 1e-4).sum())
    print(
      f"  first image's maps, {ka} vs {kb}: max |diff| {d.max():.3g} (max |map| {np.abs(a[0]).max():.3g}); "
      f"pooled pixels where some channel differs by > 1e-4: {tiles} of {d.shape[1] * d.shape[2]}"
    )


if __name__ == "__main__":
  main()
