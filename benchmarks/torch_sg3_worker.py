"""Timing worker for the official PyTorch StyleGAN3 code (run by bench_sg3 with a torch interpreter).

usage: python torch_sg3_worker.py --nvidia-repo DIR   (then one command per stdin line)
  build NAME JSON      construct training.networks_stylegan3.Generator(**JSON) in memory (random weights)
  gen NAME BATCH       seconds for one float32 synthesis batch (no grad) -> prints "ok SECONDS"
  jvp NAME K           seconds for the forward-mode (torch.func.jvp + vmap) columns of K channels of
                       every conv layer for one image (the official gradient-map method c) -> "ok SECONDS"
DIR is a checkout of NVlabs/stylegan3 outside this project (read-only, nothing copied). torch is not
a dependency of ss-jax; this file is only run by a separate interpreter that has it.
"""

import argparse
import json
import sys
import time

ap = argparse.ArgumentParser()
ap.add_argument("--nvidia-repo", required=True)
ap.add_argument("--threads", type=int, default=2)
a = ap.parse_args()
sys.path.insert(0, a.nvidia_repo)
import torch
from training.networks_stylegan3 import Generator

torch.set_num_threads(a.threads)
models = {}


class Fixed(torch.nn.Module):
  """Stands in for a layer's affine: returns a supplied style vector."""

  def __init__(self, value):
    super().__init__()
    self.value = value

  def forward(self, w):
    return self.value


def _jvp_seconds(G, k):
  """Columns d img / d s for k channels of every conv layer of one image (affines replaced by styles)."""
  syn = G.synthesis
  ws = G.mapping(torch.randn(1, G.z_dim), torch.zeros(1, G.c_dim) if G.c_dim else None)
  names = syn.layer_names[:-1]
  styles = {n: getattr(syn, n).affine(ws[:, i + 1]) for i, n in enumerate(names)}

  def render(name, s):
    saved = {}
    for n in names:
      layer = getattr(syn, n)
      saved[n] = layer.affine
      val = s if n == name else styles[n]
      layer.affine = Fixed(val)
    try:
      return syn(ws, noise_mode="const", force_fp32=True)
    finally:
      for n, m in saved.items():
        getattr(syn, n).affine = m

  t = time.perf_counter()
  for n in names:
    s = styles[n]
    tangents = torch.eye(s.shape[1])[:k, None, :]
    torch.func.vmap(lambda tv: torch.func.jvp(lambda x: render(n, x), (s,), (tv,))[1])(tangents)
  return time.perf_counter() - t


for line in sys.stdin:
  parts = line.split(maxsplit=2)
  if not parts:
    continue
  cmd = parts[0]
  with torch.no_grad():
    if cmd == "build":
      torch.manual_seed(0)
      models[parts[1]] = Generator(**json.loads(parts[2])).eval().requires_grad_(False)
      print("ok 0", flush=True)
    elif cmd == "gen":
      G = models[parts[1]]
      n = int(parts[2])
      ws = G.mapping(torch.randn(n, G.z_dim), torch.zeros(n, G.c_dim) if G.c_dim else None)
      t = time.perf_counter()
      G.synthesis(ws, noise_mode="const", force_fp32=True)
      print(f"ok {time.perf_counter() - t:.6f}", flush=True)
  if cmd == "jvp":
    print(f"ok {_jvp_seconds(models[parts[1]], int(parts[2])):.6f}", flush=True)
