"""Synthesis throughput: images/s of jitted g.synthesis per config, and compile time.

  python -m benchmarks.bench_generate                 # fixtures + 256px config-f widths
  python -m benchmarks.bench_generate --skip_256

Side by side in one run: ss-jax's up-sampling conv (stride phases + separable
blur) against a plain transcription of the official one (zero insertion via
lhs_dilation, then the 4x4 blur as a depthwise conv). PyTorch's reference number
for 256px config-f, batch 4 on this CPU (3.87 s, from
shared/docs/performance_notes.md) is printed as a ratio too; it was measured
elsewhere, not in this run.
"""
import argparse
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from ss_jax import ops
from ss_jax.generator import Generator, config_f

TORCH_256_BATCH4_S = 3.87
FIXTURES = pathlib.Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "stylegan2"


def naive_conv2d_up(x, w, fir=ops.DEFAULT_FIR, precision=None):
  """Transposed conv by zero insertion (lhs_dilation) + full 4x4 depthwise blur."""
  k = w.shape[0]
  y = jax.lax.conv_general_dilated(x, w[::-1, ::-1], (1, 1), ((k - 1, k - 1), (k - 1, k - 1)),
                                   lhs_dilation=(2, 2), dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                   precision=precision)
  a = np.asarray(fir, np.float32)
  f = np.outer(a, a) / np.outer(a, a).sum() * 4
  c = y.shape[-1]
  fk = jnp.broadcast_to(jnp.asarray(f)[:, :, None, None], (4, 4, 1, c))
  return jax.lax.conv_general_dilated(y, fk, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                      feature_group_count=c, precision=precision)


def time_synthesis(g, batch, repeats):
  """(compile seconds, median seconds per batch) of jitted const-noise synthesis."""
  fn = jax.jit(lambda g, s: g.synthesis(s, noise_mode="const"))
  z = jax.random.normal(jax.random.PRNGKey(0), (batch, g.config.z_dim))
  c = jnp.zeros((batch, g.config.c_dim)).at[:, 0].set(1) if g.config.c_dim else None
  s = g.styles(g.mapping(z, c))
  t = time.perf_counter()
  fn(g, s).block_until_ready()
  compile_s = time.perf_counter() - t
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    fn(g, s).block_until_ready()
    times.append(time.perf_counter() - t)
  return compile_s, float(np.median(times))


def run_both(g, batch, repeats):
  ours = time_synthesis(g, batch, repeats)
  fast = ops.conv2d_up
  ops.conv2d_up = naive_conv2d_up
  try:
    naive = time_synthesis(g, batch, repeats)
  finally:
    ops.conv2d_up = fast
  return ours, naive


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--batch", type=int, default=4)
  ap.add_argument("--repeats", type=int, default=3)
  ap.add_argument("--skip_256", action="store_true", help="skip the 256px config-f model (slow on CPU)")
  args = ap.parse_args()
  from converters import load_checkpoint
  models = []
  for name, f in [("n1", "n1.pkl"), ("n2", "n2.pkl"), ("r1", "r1.pt"), ("t1", "t1.pkl")]:
    if (FIXTURES / name / f).is_file():
      models.append((name, load_checkpoint(FIXTURES / name / f)[0]))
  if not args.skip_256:
    models.append(("config-f 256px (random)", Generator.random(config_f(256))))
  print(f"device: {jax.devices()[0].device_kind}, batch {args.batch}, float32, const noise")
  print(f"{'model':26s} {'compile s':>9s} {'s/batch':>8s} {'img/s':>8s} {'naive s/batch':>13s} {'speed-up':>8s}")
  for name, g in models:
    (c_s, t), (_, tn) = run_both(g, args.batch, args.repeats)
    print(f"{name:26s} {c_s:9.2f} {t:8.3f} {args.batch / t:8.2f} {tn:13.3f} {tn / t:7.2f}x")
    if name.startswith("config-f 256") and args.batch == 4:
      print(f"  vs NVIDIA PyTorch on this CPU (3.87 s/batch of 4, performance_notes.md): "
            f"{TORCH_256_BATCH4_S / t:.2f}x (target >= 1.2x)")


if __name__ == "__main__":
  main()
