"""StyleGAN3 speed: ss-jax vs the official PyTorch code on this CPU, interleaved in one run.

  python -m benchmarks.bench_sg3 --torch_python /tmp/torchref/bin/python --nvidia_repo DIR
  python -m benchmarks.bench_sg3 --skip_torch          # ss-jax only

Generation: images/s of a batch for the fixture architectures s1 (T) and s2 (R)
at 32 px, and at 256 px (default --res) with config-T widths (channel_base
32768, max 512, 3x3 convs) and config-R widths (65536 / 1024, 1x1 convs, radial
filters), random weights, float32; torch at 256 px only with --torch_big.
Gradient maps: seconds per image for the fixture architectures s1 (T) and s2 (R)
at 32 px, all conv channels: ss-jax's planned method (forward) vs, in the same
rounds, the official code's two methods on a model of the same architecture:
"jvp", the forward mode that made the official maps (torch.func jvp + vmap over
one conv layer's one-hot tangents at a time; all channels unless
`--torch_channels K` times K per layer and scales linearly), and "rows",
StyleSpace's own method (one backward pass per pooled output element;
`--torch_rows K` of the 3,072 timed, the rest extrapolated at their mean rate).
Rounds alternate ss-jax and torch so load drifts hit both alike; the load
average is printed (the machine is shared).
DIR is a checkout of NVlabs/stylegan3 outside this project; torch runs in a
separate interpreter (benchmarks/torch_sg3_worker.py), never in ss-jax's.
"""

import argparse
import json
import os
import pathlib
import subprocess
import time

import jax
import numpy as np

from ss_jax.stylespace.gradmaps import api as gradmaps
from ss_jax.stylespace.gradmaps import planning
from ss_jax.stylegan3 import StyleGAN3Generator, config_r, config_t

FIXTURES = pathlib.Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "stylegan3"
WORKER = pathlib.Path(__file__).resolve().parent / "torch_sg3_worker.py"


class Torch:
  """The official code in a torch interpreter, one command per line."""

  def __init__(self, python, repo, threads):
    self.p = subprocess.Popen(
      [python, str(WORKER), "--nvidia-repo", repo, "--threads", str(threads)],
      stdin=subprocess.PIPE,
      stdout=subprocess.PIPE,
      text=True,
    )

  def __call__(self, line):
    self.p.stdin.write(line + "\n")
    self.p.stdin.flush()
    out = self.p.stdout.readline().split()
    if not out or out[0] != "ok":
      raise RuntimeError(f"torch worker failed on {line!r}: {out}")
    return float(out[1])


def official_kwargs(cfg):
  return {
    "z_dim": cfg.z_dim,
    "c_dim": cfg.c_dim,
    "w_dim": cfg.w_dim,
    "img_resolution": cfg.img_resolution,
    "img_channels": cfg.img_channels,
    "mapping_kwargs": {"num_layers": cfg.mapping_layers},
    "channel_base": cfg.channel_base,
    "channel_max": cfg.channel_max,
    "conv_kernel": cfg.conv_kernel,
    "use_radial_filters": cfg.use_radial_filters,
    "num_fp16_res": 0,
    "conv_clamp": cfg.conv_clamp,
  }


def _timer(fn, *args):
  def run():
    t = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - t

  return run


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--res", type=int, default=256)
  ap.add_argument("--batch", type=int, default=4)
  ap.add_argument("--rounds", type=int, default=3)
  ap.add_argument("--torch_python", default="")
  ap.add_argument("--nvidia_repo", default="")
  ap.add_argument("--threads", type=int, default=2)
  ap.add_argument("--torch_channels", type=int, default=0, help="0: all channels")
  ap.add_argument("--torch_rows", type=int, default=16, help="0: skip StyleSpace's per-row method")
  ap.add_argument("--skip_torch", action="store_true")
  ap.add_argument("--skip_gradmaps", action="store_true")
  ap.add_argument("--skip_generation", action="store_true")
  ap.add_argument(
    "--torch_big", action="store_true", help="also time torch at --res (minutes per image on a loaded 2-core CPU)"
  )
  args = ap.parse_args()
  torch = None if args.skip_torch else Torch(args.torch_python, args.nvidia_repo, args.threads)
  load0 = os.getloadavg()
  rows = []
  from ss_jax.stylegan2.checkpoint import load_checkpoint

  models = (
    []
    if args.skip_generation
    else [
      (f"fixture {n} ({'T' if n == 's1' else 'R'}) 32px", load_checkpoint(FIXTURES / n / f"{n}.pkl")[0], True)
      for n in ("s1", "s2")
    ]
  )
  models += (
    []
    if args.skip_generation
    else [
      (f"config-{v} {args.res}px", StyleGAN3Generator.random(f(args.res, conv_clamp=None)), args.torch_big)
      for v, f in (("T", config_t), ("R", config_r))
    ]
  )
  for name, g, with_torch in models:
    cfg = g.config
    z = jax.random.normal(jax.random.PRNGKey(0), (args.batch, cfg.z_dim))
    s = g.styles(g.mapping(z, np.eye(args.batch, cfg.c_dim, dtype=np.float32) if cfg.c_dim else None))
    fn = jax.jit(lambda g, s: g.synthesis(s))
    t = time.perf_counter()
    fn(g, s).block_until_ready()
    compile_s = time.perf_counter() - t
    ours = _timer(fn, g, s)
    key = name.split()[1]
    if torch and with_torch:
      torch(f"build {key} {json.dumps(official_kwargs(cfg))}")
      torch(f"gen {key} {args.batch}")  # warm-up
    t_ours, t_torch = [], []
    for _ in range(args.rounds):
      t_ours.append(ours())
      if torch and with_torch:
        t_torch.append(torch(f"gen {key} {args.batch}"))
    rows.append((f"generate {name}, batch {args.batch} (s/batch)", compile_s, t_ours, t_torch))
  if not args.skip_gradmaps:
    for name in ("s1", "s2"):
      g, _ = load_checkpoint(FIXTURES / name / f"{name}.pkl")
      ref = np.load(FIXTURES / name / "ref.npz")
      s = g.styles(ref["ws"][:1])
      pl = planning.plan(g.config, 32)
      t = time.perf_counter()
      gradmaps.gradient_maps(g, s, method=pl).block_until_ready()
      compile_s = time.perf_counter() - t
      ours = _timer(lambda: gradmaps.gradient_maps(g, s, method=pl))
      conv = [L for L in g.layout if L.kind == "conv"]
      k = args.torch_channels if 0 < args.torch_channels < max(L.channels for L in conv) else 0
      scale = sum(L.channels for L in conv) / sum(min(k, L.channels) for L in conv) if k else 1.0
      if torch:
        meta = json.loads((FIXTURES / name / "meta.json").read_text())
        kw = {k: v for k, v in meta["G_kwargs"].items() if k != "class_name"}
        torch(f"build grad-{name} {json.dumps(kw)}")
      t_ours, t_torch, t_rows = [], [], []
      for _ in range(args.rounds):
        t_ours.append(ours())
        if torch:
          t_torch.append(torch(f"jvp grad-{name} {k or 1 << 30}") * scale)
          if args.torch_rows:
            t_rows.append(torch(f"rows grad-{name} {args.torch_rows}"))
      rows.append((f"gradient maps {name} ({pl.method} vs jvp; s/image)", compile_s, t_ours, t_torch))
      if t_rows:
        rows.append((f"gradient maps {name} ({pl.method} vs rows; s/image)", compile_s, t_ours, t_rows))
  load1 = os.getloadavg()
  print(
    f"device: {jax.devices()[0].device_kind}; load average before {load0[0]:.1f}, after {load1[0]:.1f} "
    f"(1 min); {os.cpu_count()} CPUs; torch threads {args.threads}; medians of {args.rounds} interleaved rounds"
  )
  print(f"{'measurement':52s} {'compile s':>9s} {'ss-jax':>9s} {'torch':>9s} {'speed-up':>8s}")
  for label, c, a, b in rows:
    ta = float(np.median(a))
    tb = float(np.median(b)) if b else float("nan")
    print(f"{label:52s} {c:9.1f} {ta:9.3f} {tb:9.3f} {tb / ta:7.2f}x")
    if "generate" in label:
      print(f"{'':52s} {'images/s':>9s} {args.batch / ta:9.2f} {args.batch / tb:9.2f}")
  if torch and not args.skip_gradmaps:
    print(
      f"(torch jvp: {f'{k} channels per conv layer timed, scaled x{scale:.1f}' if k else 'all channels'}; "
      + (
        f"torch rows: {args.torch_rows} backward passes timed, extrapolated to all pooled outputs"
        if args.torch_rows
        else ""
      )
      + ")"
    )
    for label, _, a, b in rows:
      if "gradient" in label:
        print(f"  {label}: ss-jax {' '.join(f'{x:.2f}' for x in a)}; torch {' '.join(f'{x:.2f}' for x in b)}")


if __name__ == "__main__":
  main()
