"""Exact gradient maps: seconds per image, channels/s and peak memory per model and method.

  python -m benchmarks.bench_gradmaps                # n1, r1: local / forward / reverse, scaling
  python -m benchmarks.bench_gradmaps --quick        # n1, r1: local and forward, 2 images
  python -m benchmarks.bench_gradmaps --with_256     # + a random config-f-width 256 px model

Every case runs in a fresh subprocess, so `peak GB` (ru_maxrss) is that case's
own peak; `compile s` is trace + XLA compile, timed apart from the runs. The
256 px model runs "local" in full; "forward" and "reverse" there would take an
hour or more each, so they are estimated (marked `est`, erring a few percent
high): reverse from one timed chunk of 8 cotangents times 3,072 outputs, forward
from one timed chunk of 8 tangents entering at the first layer, scaled to every
layer by the multiply-add model of `planning.plan`. PyTorch reference numbers (torch.func on this CPU, from
shared/docs/performance_notes.md) were measured elsewhere, not in this run.

The machine is shared: a 2048^3 matmul is timed before the cases (`matmul
GFLOP/s`) so results can be put against the ~200 GFLOP/s the notes quote for an
idle machine.
"""

import argparse
import json
import os
import pathlib
import resource
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python benchmarks/bench_gradmaps.py`
  sys.path.insert(0, str(REPO))
SHARED = pathlib.Path(os.environ.get("SS_JAX_SHARED", REPO.parent / "shared"))
CHECKPOINTS = {"n1": "stylegan2/n1/n1.pkl", "r1": "stylegan2/r1/r1.pt"}
TORCH_BEST_S = {"n1": 1.4, "r1": 0.9, "f256": 57 * 60}  # per image, performance_notes.md


def _load(model):
  """(generator, styles of the reference images or None, reference maps or None)."""
  import jax
  import numpy as np

  if model in CHECKPOINTS:
    from ss_jax.stylegan2.checkpoint import load_checkpoint

    g, _ = load_checkpoint(SHARED / "fixtures" / CHECKPOINTS[model])
    ref = np.load(SHARED / "fixtures" / "gradmaps" / f"{model}.npz")
    return g, ref["ws"], ref["maps"]
  from ss_jax.stylegan2.generator import Generator, config_f

  g = jax.jit(Generator.random, static_argnums=0)(config_f(256), jax.random.PRNGKey(0))
  z = jax.random.normal(jax.random.PRNGKey(1), (8, 512))
  return g, jax.jit(lambda g, z: g.mapping(z))(g, z), None


def _images(g, ws, n):
  import numpy as np

  reps = -(-n // ws.shape[0])
  ws = np.concatenate([ws] * reps)[:n]
  return g.styles(ws)


def _timed(fn, repeats):
  """(output, first call seconds, best of the first and `repeats` more calls)."""
  import jax

  t = time.perf_counter()
  out = jax.block_until_ready(fn())
  first = best = time.perf_counter() - t
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(fn())
    best = min(best, time.perf_counter() - t)
  return out, first, best


def _compiled_maps(g, s, res, include_torgb, pl):
  """gradient_maps on one device, compiled ahead of time: (callable, compile seconds)."""
  import jax
  from jax.sharding import NamedSharding
  from jax.sharding import PartitionSpec as P
  from ss_jax.stylespace.gradmaps import api as gradmaps

  mesh = jax.make_mesh((1,), ("data",), devices=jax.devices()[:1])
  s = jax.device_put(gradmaps._as_styles(g, s), NamedSharding(mesh, P("data")))
  g = jax.device_put(g, NamedSharding(mesh, P()))
  kw = dict(
    res=res, layers=gradmaps.considered_layers(g.layout, include_torgb), pl=pl, maps=True, mesh=mesh, n=s[0].shape[0]
  )
  t = time.perf_counter()
  exe = gradmaps._batched.lower(g, s, **kw).compile()
  return (lambda: exe(g, s)), time.perf_counter() - t


def _estimate_reverse(g, s, res, k=8):
  """Seconds per image for all outputs, extrapolated from one chunk of k one-hot cotangents.

  chunk time / k includes 1/k of the chunk's forward pass, so this errs high by a
  few percent (a two-point slope was too noisy on the shared machine).
  """
  import jax
  import jax.numpy as jnp
  from ss_jax.stylespace.gradmaps import api as gm
  from ss_jax.stylespace.gradmaps import dense as jacobian_modes
  from ss_jax.stylegan2 import layers as layers_lib

  layers = gm.considered_layers(g.layout)
  s1 = tuple(v[:1] for v in s)

  def chunk(g, s1):
    def f(sc):
      s2 = list(s1)
      for m, v in zip(layers, sc):
        s2[m] = v
      return jacobian_modes._pool(layers_lib._render(g, s2)[1], res)[0]

    y, pull = jax.vjp(f, tuple(s1[m] for m in layers))
    ct = jax.nn.one_hot(jnp.arange(k), y.size, dtype=y.dtype).reshape((k,) + y.shape)
    return jax.vmap(pull)(ct)

  fn = jax.jit(chunk)
  n_out = g.config.img_channels * res * res
  return _timed(lambda: fn(g, s1), 1)[2] / k * n_out


def _estimate_forward(g, s, res, k=8):
  """Seconds per image: time per tangent entering at layer 0 (one chunk of k), scaled to
  every layer by the downstream multiply-adds of the FLOP model (errs high, as above)."""
  import jax
  from ss_jax.stylespace.gradmaps import api as gm
  from ss_jax.stylespace.gradmaps import dense as jacobian_modes
  from ss_jax.stylespace.gradmaps import planning
  from ss_jax.stylegan2 import layers as layers_lib

  layout = g.layout
  layers = gm.considered_layers(layout)
  s1 = tuple(v[:1] for v in s)

  def chunk(g, s1):
    st = layers_lib._initial_state(g, 1, s1[0].dtype)
    L, p = layout[0], g.params["synthesis"]["layers"][0]
    pre = layers_lib._pre(g.config, L, p, st[0], s1[0])
    rest = lambda pre_: jacobian_modes._pool(
      layers_lib._render(
        g,
        s1,
        1,
        state=layers_lib._post(g.config, L, p, g.params["synthesis"], st, pre_, layers_lib._noise(g, layout, 0)),
      )[1],
      res,
    )[0]
    _, lin = jax.linearize(rest, pre)
    return jax.vmap(lin)(jacobian_modes._entry_tangents(g, 0, st[0], s1[0], pre, 0, k)[:, None])

  fn = jax.jit(chunk)
  per_tangent = _timed(lambda: fn(g, s1), 1)[2] / k
  downstream = lambda m: sum(planning._conv_macs(layout[l]) for l in range(m + 1, len(layout)))
  return per_tangent * sum(layout[m].channels * downstream(m) for m in layers) / downstream(0)


def worker(case):
  """Run one case in this process; returns a result dict."""
  import jax
  import numpy as np
  from ss_jax.stylespace.gradmaps import api as gradmaps
  from ss_jax.stylespace.gradmaps import planning

  model, method, n = case["model"], case["method"], case["images"]
  g, ws, ref = _load(model)
  res = 32
  layers = gradmaps.considered_layers(g.layout, case.get("include_torgb", False))
  channels = sum(g.layout[m].channels for m in layers)
  row = dict(case, channels=channels)
  if case.get("estimate"):
    s = _images(g, ws, 1)
    est = _estimate_forward if method == "forward" else _estimate_reverse
    row.update(s_per_image=est(g, s, res), compile_s=float("nan"))
  else:
    s = _images(g, ws, n)
    rgb = case.get("include_torgb", False)
    pl = planning.plan(g.config, res, rgb, method=method)
    fn, compile_s = _compiled_maps(g, s, res, rgb, pl)
    maps, _, best = _timed(fn, case.get("repeats", 5))
    row.update(s_per_image=best / n, compile_s=compile_s, plan=str(pl))
    if ref is not None and not case.get("include_torgb"):
      k = min(n, ref.shape[0])
      row["max_err"] = float(np.abs(np.asarray(maps)[:k] - ref[:k]).max())
  row["channels_per_s"] = channels / row["s_per_image"]
  row["peak_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
  row["device"] = str(jax.devices()[0].platform)
  return row


def _spawn(case):
  cmd = [sys.executable, "-m", "benchmarks.bench_gradmaps", "--worker", json.dumps(case)]
  proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
  if proc.returncode:
    return dict(case, error=proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed")
  return json.loads(proc.stdout.strip().splitlines()[-1])


def _matmul_gflops():
  import jax
  import jax.numpy as jnp

  a = jnp.ones((2048, 2048), jnp.float32)
  f = jax.jit(jnp.matmul)
  f(a, a).block_until_ready()
  best = min(_timed(lambda: f(a, a), 3)[2], 1e9)
  return 2 * 2048**3 / best / 1e9


def _table(rows):
  head = ["model", "method", "imgs", "chans", "s/image", "chans/s", "vs torch", "compile s", "peak GB", "max err"]
  lines = [head]
  for r in rows:
    if "error" in r:
      lines.append([r["model"], r["method"], str(r["images"]), "-", "error: " + r["error"][:60], "", "", "", "", ""])
      continue
    est = " est" if r.get("estimate") else ""
    speed = TORCH_BEST_S.get(r["model"])
    lines.append(
      [
        r["model"],
        r["method"] + est + (" +rgb" if r.get("include_torgb") else ""),
        str(r["images"]),
        str(r["channels"]),
        f"{r['s_per_image']:.3g}",
        f"{r['channels_per_s']:.4g}",
        f"{speed / r['s_per_image']:.2f}x" if speed and not r.get("include_torgb") else "-",
        f"{r['compile_s']:.1f}",
        f"{r['peak_gb']:.2f}",
        f"{r['max_err']:.1e}" if "max_err" in r else "-",
      ]
    )
  widths = [max(len(l[i]) for l in lines) for i in range(len(head))]
  return "\n".join("  ".join(c.rjust(w) for c, w in zip(l, widths)) for l in lines)


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--quick", action="store_true", help="n1 and r1, local and forward, 2 images")
  ap.add_argument(
    "--with_256",
    action="store_true",
    help="add the random config-f 256 px model (local in full: minutes; forward/reverse estimated)",
  )
  ap.add_argument("--only_256", action="store_true", help="only the 256 px model")
  ap.add_argument("--worker", help=argparse.SUPPRESS)
  args = ap.parse_args()
  if args.worker:
    print(json.dumps(worker(json.loads(args.worker))))
    return
  cases = []
  for model in () if args.only_256 else ("n1", "r1"):
    cases += [dict(model=model, method="local", images=2), dict(model=model, method="forward", images=2)]
    if not args.quick:
      cases.append(dict(model=model, method="reverse", images=1, repeats=0))
  if not (args.quick or args.only_256):  # scaling with images and with channels (toRGB styles: +256)
    cases += [
      dict(model="n1", method="local", images=1),
      dict(model="n1", method="local", images=4),
      dict(model="n1", method="local", images=2, include_torgb=True),
      dict(model="n1", method="forward", images=2, include_torgb=True),
    ]
  if args.with_256 or args.only_256:
    cases += [
      dict(model="f256", method="local", images=1, repeats=0),
      dict(model="f256", method="forward", images=1, estimate=True),
      dict(model="f256", method="reverse", images=1, estimate=True),
    ]
  load = os.getloadavg()[0]
  print(
    f"matmul GFLOP/s (2048^3, float32): {_matmul_gflops():.0f}; load average {load:.1f} on {os.cpu_count()} CPUs",
    flush=True,
  )
  rows = []
  for case in cases:
    rows.append(_spawn(case))
    print(json.dumps(rows[-1]), flush=True)
  print()
  print(_table(rows))
  print(
    f"\nload average now {os.getloadavg()[0]:.1f}. 'vs torch': PyTorch's best per image (torch.func jvp+vmap; "
    "n1 1.4 s, r1 0.9 s; 256 px: 57 min, its best dense method) / ours."
  )


if __name__ == "__main__":
  main()
