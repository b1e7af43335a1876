"""Timing worker for the official PyTorch StyleGAN3 code (run by bench_sg3 with a torch interpreter).

usage: python torch_sg3_worker.py --nvidia-repo DIR   (then one command per stdin line)
  build NAME JSON      construct training.networks_stylegan3.Generator(**JSON) in memory (random weights)
  gen NAME BATCH       seconds for one float32 synthesis batch (no grad) -> prints "ok SECONDS"
  jvp NAME K           seconds for the forward-mode (torch.func.jvp + vmap) columns of K channels of
                       every conv layer for one image (K >= a layer's width: all of them; the method
                       that made the official maps in shared/fixtures/gradmaps_sg3, "c") -> "ok SECONDS"
  rows NAME K          StyleSpace's own method ("a"): one forward with autograd, then one backward
                       pass per pooled output element; K elements timed, extrapolated to all
                       img_channels * P * P of them -> "ok SECONDS" (forward + K backward + the rest
                       at the mean rate of the K)
The pooled output is the image box-averaged to 32 x 32 (none at 32 px), as in the fixture's maps.
glibc malloc is told to keep freed memory (as shared/tools/torch_reference does): without it
torch's large vmap temporaries are mmap'ed and unmapped on every call, which slows torch.
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


def _tune_malloc():
  try:
    import ctypes

    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt(-3, -1)  # M_MMAP_THRESHOLD: serve everything from the heap
    libc.mallopt(-1, -1)  # M_TRIM_THRESHOLD: never give the heap top back
    libc.mallopt(-2, 256 << 20)  # M_TOP_PAD
  except Exception:  # non-glibc platform
    pass


_tune_malloc()
models = {}


class Fixed(torch.nn.Module):
  """Stands in for a layer's affine: returns a supplied style vector."""

  def __init__(self, value):
    super().__init__()
    self.value = value

  def forward(self, w):
    return self.value


def _pool(img):
  r = img.shape[-1]
  return torch.nn.functional.avg_pool2d(img, r // 32) if r > 32 else img


def _jvp_seconds(G, k):
  """Columns d pooled img / d s for k channels of every conv layer of one image (affines replaced by styles)."""
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
      return _pool(syn(ws, noise_mode="const", force_fp32=True))
    finally:
      for n, m in saved.items():
        getattr(syn, n).affine = m

  t = time.perf_counter()
  for n in names:
    s = styles[n]
    tangents = torch.eye(s.shape[1])[:k, None, :]
    torch.func.vmap(lambda tv: torch.func.jvp(lambda x: render(n, x), (s,), (tv,))[1])(tangents)
  return time.perf_counter() - t


def _rows_seconds(G, k):
  """StyleSpace's method: one backward per pooled output element, k of them timed, extrapolated to all."""
  syn = G.synthesis
  ws = G.mapping(torch.randn(1, G.z_dim), torch.zeros(1, G.c_dim) if G.c_dim else None)
  names = syn.layer_names[:-1]
  styles = [getattr(syn, n).affine(ws[:, i + 1]).detach().requires_grad_(True) for i, n in enumerate(names)]
  saved = {n: getattr(syn, n).affine for n in names}
  try:
    for n, s in zip(names, styles):
      getattr(syn, n).affine = Fixed(s)
    t = time.perf_counter()
    out = _pool(syn(ws, noise_mode="const", force_fp32=True)).flatten()
    t_fwd = time.perf_counter() - t
    idx = torch.linspace(0, out.numel() - 1, k).long()
    t = time.perf_counter()
    for i in idx:
      torch.autograd.grad(out[i], styles, retain_graph=True)
    t_rows = time.perf_counter() - t
  finally:
    for n, m in saved.items():
      getattr(syn, n).affine = m
  return t_fwd + t_rows * out.numel() / k


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
  elif cmd == "rows":
    print(f"ok {_rows_seconds(models[parts[1]], int(parts[2])):.6f}", flush=True)
