"""BiSeNet face-parser throughput at 512x512: images/s of the jitted network and of the segmenter.

  python -m benchmarks.bench_bisenet                  # batch 1 and 4, CPU by default
  python -m benchmarks.bench_bisenet --batches=1,8 --repeats=5

Rows: "network" = `bisenet.forward` main head on normalised 512x512 input;
"segmenter" = `FaceParser.segment` on 512x512 float images (quantise,
normalise, network, argmax; no resize), sharded over all devices. Weights are
random (`bisenet.random_params`): speed does not depend on them.

If `import torch` succeeds (optional; torch is never required by ss-jax), the
same folded network transcribed with torch.nn.functional runs side by side
(same threads, inference mode) and the max difference of the logits is
printed; otherwise the comparison is reported as skipped.
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from ss_jax.parser import bisenet, face_parser

SIZE = 512


def _median_time(fn, repeats):
  """(first-call seconds, median seconds of `repeats` further calls); fn blocks until done."""
  t = time.perf_counter()
  fn()
  first = time.perf_counter() - t
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return first, float(np.median(times))


def bench_network(params, x, repeats):
  fn = jax.jit(lambda p, x: bisenet.forward(p, x)[0])
  return _median_time(lambda: fn(params, x).block_until_ready(), repeats)


def bench_segmenter(params, images, repeats):
  parser = face_parser.FaceParser(params, batch_size=len(images))
  return _median_time(lambda: parser.segment(images), repeats)


def torch_forward(torch, tp, x):
  """Main-head logits of the folded network in torch (NCHW); tp: name -> (OIHW weight, bias)."""
  F = torch.nn.functional
  conv = lambda n, t, s=1: F.conv2d(t, tp[n][0], tp[n][1], s, tp[n][0].shape[-1] // 2)
  cbr = lambda n, t, s=1: F.relu(conv(n, t, s))
  gap = lambda t: t.mean((2, 3), keepdim=True)
  h = F.max_pool2d(cbr("cp.resnet.conv1", x, 2), 3, 2, 1)
  feats = []
  for i in range(1, 5):
    for b in (0, 1):
      pre, s = f"cp.resnet.layer{i}.{b}", 2 if (b == 0 and i > 1) else 1
      r = conv(f"{pre}.conv2", cbr(f"{pre}.conv1", h, s))
      h = F.relu((conv(f"{pre}.downsample.0", h, s) if f"{pre}.downsample.0" in tp else h) + r)
    feats.append(h)
  feat8, feat16, feat32 = feats[1:]

  def arm(pre, t):
    f = cbr(f"{pre}.conv.conv", t)
    return f * torch.sigmoid(conv(f"{pre}.conv_atten", gap(f)))

  avg = F.interpolate(cbr("cp.conv_avg.conv", gap(feat32)), size=feat32.shape[2:], mode="nearest")
  s32 = arm("cp.arm32", feat32) + avg
  cp16 = cbr("cp.conv_head32.conv", F.interpolate(s32, size=feat16.shape[2:], mode="nearest"))
  s16 = arm("cp.arm16", feat16) + cp16
  cp8 = cbr("cp.conv_head16.conv", F.interpolate(s16, size=feat8.shape[2:], mode="nearest"))
  f = cbr("ffm.convblk.conv", torch.cat([feat8, cp8], 1))
  fuse = f * torch.sigmoid(conv("ffm.conv2", F.relu(conv("ffm.conv1", gap(f))))) + f
  out = conv("conv_out.conv_out", cbr("conv_out.conv.conv", fuse))
  return F.interpolate(out, size=x.shape[2:], mode="bilinear", align_corners=True)


def bench_torch(params, x, repeats):
  """(first s, median s, max |torch - jax|) or None when torch is not importable."""
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError:
    return None
  tp = {
    n: (
      torch.from_numpy(np.array(np.transpose(p["w"], (3, 2, 0, 1)), np.float32)),
      torch.from_numpy(np.array(p["b"], np.float32)),
    )
    for n, p in params.items()
  }
  xt = torch.from_numpy(np.array(np.transpose(np.asarray(x), (0, 3, 1, 2)), np.float32))
  with torch.inference_mode():
    first, med = _median_time(lambda: torch_forward(torch, tp, xt), repeats)
    out = torch_forward(torch, tp, xt).numpy().transpose(0, 2, 3, 1)
  ref = np.asarray(jax.jit(lambda p, x: bisenet.forward(p, x)[0])(params, x))
  return first, med, float(np.abs(out - ref).max())


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--batches", default="1,4", help="comma-separated batch sizes")
  ap.add_argument("--repeats", type=int, default=3)
  args = ap.parse_args()
  params = jax.tree.map(jnp.asarray, bisenet.random_params(0))
  dev = jax.devices()[0]
  print(f"device: {dev.platform} {dev.device_kind} x{jax.device_count()}, {SIZE}x{SIZE}, float32, random weights")
  print(f"{'what':10s} {'batch':>5s} {'first s':>8s} {'s/batch':>8s} {'img/s':>7s}")
  rng = np.random.default_rng(0)
  for b in (int(v) for v in args.batches.split(",")):
    images = rng.uniform(-1, 1, (b, SIZE, SIZE, 3)).astype(np.float32)
    x = face_parser.preprocess(jnp.asarray(images), SIZE)
    rows = [
      ("network", bench_network(params, x, args.repeats)),
      ("segmenter", bench_segmenter(params, images, args.repeats)),
    ]
    torch_res = bench_torch(params, x, args.repeats)
    if torch_res is not None:
      rows.append(("torch", torch_res[:2]))
    for name, (first, t) in rows:
      print(f"{name:10s} {b:5d} {first:8.2f} {t:8.3f} {b / t:7.2f}")
    if torch_res is None:
      print(f"{'torch':10s} {b:5d}  skipped (torch not importable; optional)")
    else:
      speedup = torch_res[1] / rows[0][1][1]  # torch s/batch over jax network s/batch
      print(f"  jax network vs torch: {speedup:.2f}x, max |logits diff| {torch_res[2]:.2e}")


if __name__ == "__main__":
  main()
