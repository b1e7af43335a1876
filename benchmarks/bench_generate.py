"""Synthesis throughput: images/s of jitted g.synthesis per config, and compile time.

  python -m benchmarks.bench_generate                 # fixtures + 256px config-f widths
  python -m benchmarks.bench_generate --skip_256

Side by side in one run: ss-jax as shipped (stride-phase up-sampling conv with a
separable blur, Winograd F(2x2,3x3) for wide 3x3 convs on CPU), the same without
Winograd (every conv through lax.conv), and a plain transcription of the official
up-sampling (zero insertion via lhs_dilation, then the 4x4 blur as a depthwise conv). PyTorch's reference number
for 256px config-f, batch 4 on this CPU (3.87 s, from
shared/docs/performance_notes.md) is printed divided by this run's time, labelled as
not side by side: it was measured elsewhere (../shared/tools/torch_reference/torch_generate.py
times the official generator on this machine).
"""

import argparse
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from ss_jax.stylegan2 import ops
from ss_jax.stylegan2.generator import Generator, config_f

TORCH_256_BATCH4_S = 3.87
FIXTURES = pathlib.Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "stylegan2"


def naive_conv2d_up(x, w, fir=ops.DEFAULT_FIR, precision=None):
  """Transposed conv by zero insertion (lhs_dilation) + full 4x4 depthwise blur."""
  k = w.shape[0]
  y = jax.lax.conv_general_dilated(
    x,
    w[::-1, ::-1],
    (1, 1),
    ((k - 1, k - 1), (k - 1, k - 1)),
    lhs_dilation=(2, 2),
    dimension_numbers=("NHWC", "HWIO", "NHWC"),
    precision=precision,
  )
  a = np.asarray(fir, np.float32)
  f = np.outer(a, a) / np.outer(a, a).sum() * 4
  c = y.shape[-1]
  fk = jnp.broadcast_to(jnp.asarray(f)[:, :, None, None], (4, 4, 1, c))
  return jax.lax.conv_general_dilated(
    y,
    fk,
    (1, 1),
    ((1, 1), (1, 1)),
    dimension_numbers=("NHWC", "HWIO", "NHWC"),
    feature_group_count=c,
    precision=precision,
  )


def _compiled(g, batch, patch):
  """(fn, styles, compile seconds) of jitted const-noise synthesis traced under `patch` (ops overrides)."""
  fn = jax.jit(lambda g, s: g.synthesis(s, noise_mode="const"))
  z = jax.random.normal(jax.random.PRNGKey(0), (batch, g.config.z_dim))
  c = jnp.zeros((batch, g.config.c_dim)).at[:, 0].set(1) if g.config.c_dim else None
  s = g.styles(g.mapping(z, c))
  saved = {k: getattr(ops, k) for k in patch}
  for k, v in patch.items():
    setattr(ops, k, v)
  try:  # tracing reads the overrides; the compiled program keeps them after they are undone
    t = time.perf_counter()
    fn(g, s).block_until_ready()
    compile_s = time.perf_counter() - t
  finally:
    for k, v in saved.items():
      setattr(ops, k, v)
  return fn, s, compile_s


VARIANTS = {
  "ours": {},
  "no-Winograd": {"WINOGRAD_MIN_CHANNELS": 1 << 30},
  "naive": {"WINOGRAD_MIN_CHANNELS": 1 << 30, "conv2d_up": naive_conv2d_up},
}


def run_variants(g, batch, repeats):
  """{variant: (compile s, median s/batch)}; repeats interleave the variants so load drifts hit all alike."""
  compiled = {k: _compiled(g, batch, patch) for k, patch in VARIANTS.items()}
  times = {k: [] for k in VARIANTS}
  for _ in range(repeats):
    for k, (fn, s, _) in compiled.items():
      t = time.perf_counter()
      fn(g, s).block_until_ready()
      times[k].append(time.perf_counter() - t)
  return {k: (compiled[k][2], float(np.median(times[k]))) for k in VARIANTS}


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--batch", type=int, default=4)
  ap.add_argument("--repeats", type=int, default=3)
  ap.add_argument("--skip_256", action="store_true", help="skip the 256px config-f model (slow on CPU)")
  args = ap.parse_args()
  from ss_jax.stylegan2.checkpoint import load_checkpoint

  models = []
  for name, f in [("n1", "n1.pkl"), ("n2", "n2.pkl"), ("r1", "r1.pt"), ("t1", "t1.pkl")]:
    if (FIXTURES / name / f).is_file():
      models.append((name, load_checkpoint(FIXTURES / name / f)[0]))
  if not args.skip_256:
    models.append(("config-f 256px (random)", Generator.random(config_f(256))))
  print(f"device: {jax.devices()[0].device_kind}, batch {args.batch}, float32, const noise")
  print(
    f"{'model':26s} {'compile s':>9s} {'s/batch':>8s} {'img/s':>8s} {'no-Winograd s':>13s} {'ratio':>6s} "
    f"{'naive s/batch':>13s} {'ratio':>6s}"
  )
  for name, g in models:
    r = run_variants(g, args.batch, args.repeats)
    (c_s, t), td, tn = r["ours"], r["no-Winograd"][1], r["naive"][1]
    print(f"{name:26s} {c_s:9.2f} {t:8.3f} {args.batch / t:8.2f} {td:13.3f} {td / t:5.2f}x {tn:13.3f} {tn / t:5.2f}x")
    if name.startswith("config-f 256") and args.batch == 4:
      print(
        f"  NVIDIA PyTorch was not run here: {TORCH_256_BATCH4_S} s/batch of 4 (performance_notes.md, measured "
        f"elsewhere) / this run = {TORCH_256_BATCH4_S / t:.2f}, not a side-by-side ratio "
        "(../shared/tools/torch_reference/torch_generate.py measures one)"
      )


if __name__ == "__main__":
  main()
