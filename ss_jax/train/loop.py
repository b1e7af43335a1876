"""Resumable training loop, checkpoints, sample grids and generator export.

Workdir layout:
  WORKDIR/train_config.json     TrainConfig of the run (a resume must match it)
  WORKDIR/checkpoints/<step>/   orbax: "state" (TrainState), "meta" (JSON: step, kimg,
                                train_seconds, device, ...); last 2 kept
  WORKDIR/metrics.jsonl         one record per log interval
  WORKDIR/samples/              reals.png, fakes_step<step>.png (fixed z, EMA G, psi 1)

Running the same `train(...)` again continues from the latest checkpoint; the
data of step t and the per-step keys depend only on t and the saved state,
so a run split into chunks follows the uninterrupted trajectory exactly.
"""

import dataclasses
import json
import logging
import math
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from ss_jax.runtime import jobs, outputs
from ss_jax.stylegan2 import generator as gen
from ss_jax.stylegan2.checkpoint import save_generator
from ss_jax.train import data as data_lib
from ss_jax.train import step as step_lib
from ss_jax.train.configs import RESUMABLE_OVERRIDES, TrainConfig

CONFIG_FILE = "train_config.json"
CKPT_DIR = "checkpoints"
METRICS_FILE = "metrics.jsonl"
SAMPLES_DIR = "samples"


# ----------------------------------------------------------------------------- checkpoints


def _manager(workdir, max_to_keep=2, read_only=False):
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=not read_only, read_only=read_only)
  return ocp.CheckpointManager(
    pathlib.Path(workdir).absolute() / CKPT_DIR, options=options, item_names=("state", "meta")
  )


def _abstract_state(cfg: TrainConfig, sharding=None):
  shapes = jax.eval_shape(lambda: step_lib.init_state(cfg))
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), shapes)


def save_checkpoint(manager, state, meta):
  """Queue an (async) orbax save of state + meta at meta['step']."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

  manager.save(
    int(meta["step"]),
    args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
    force=True,
  )


def restore_checkpoint(manager, cfg: TrainConfig, step=None, sharding=None):
  """(TrainState, meta) of `step` (default latest), or (None, None) without checkpoints."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

  step = manager.latest_step() if step is None else step
  if step is None:
    return None, None
  if sharding is None:
    sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  out = manager.restore(
    step,
    args=ocp.args.Composite(
      state=ocp.args.StandardRestore(_abstract_state(cfg, sharding)), meta=ocp.args.JsonRestore()
    ),
  )
  return out["state"], out["meta"]


def load_run_config(workdir) -> TrainConfig:
  path = pathlib.Path(workdir) / CONFIG_FILE
  if not path.is_file():
    raise FileNotFoundError(f"{workdir}: no {CONFIG_FILE}; not a training workdir")
  return TrainConfig.from_json(path.read_text())


def _check_config(workdir, cfg: TrainConfig):
  """Write the run's config on first use; later runs must match it except RESUMABLE_OVERRIDES."""
  path = pathlib.Path(workdir) / CONFIG_FILE
  if not path.is_file():
    jobs.atomic_write_text(path, cfg.to_json())
    return
  saved = TrainConfig.from_json(path.read_text())
  a, b = saved.to_dict(), cfg.to_dict()
  for k in RESUMABLE_OVERRIDES:
    a.pop(k), b.pop(k)
  if not jobs.same_settings(a, b):
    diff = sorted(k for k in set(a) | set(b) if not jobs.same_settings(a.get(k), b.get(k)))
    raise ValueError(
      f"{path} differs from the requested config in {diff}: resuming with "
      "another config would not continue the same run (use a new workdir)"
    )
  if saved.total_kimg != cfg.total_kimg:
    jobs.atomic_write_text(path, cfg.to_json())


# ----------------------------------------------------------------------------- samples / export


def grid_image(images_u8, grid):
  """uint8 (N, H, W, C) -> (gh * H, gw * W, C) tiled row-major; N must be gh * gw."""
  gh, gw = grid
  n, h, w, c = images_u8.shape
  return images_u8[: gh * gw].reshape(gh, gw, h, w, c).transpose(0, 2, 1, 3, 4).reshape(gh * h, gw * w, c)


def to_uint8(images):
  """float NHWC in [-1, 1] -> uint8, as the training data were scaled."""
  return np.asarray(jnp.clip(jnp.round((images + 1.0) * 127.5), 0, 255).astype(jnp.uint8))


def sample_z(cfg: TrainConfig, n, seed=0):
  """Fixed float32 (n, z_dim) latents for progress grids."""
  return np.random.RandomState(seed).randn(n, cfg.generator.z_dim).astype(np.float32)


@jax.jit
def _ema_images(g, z):
  return g.synthesis(g.styles(g.mapping(z)), noise_mode="const", precision=None)


def ema_generator(cfg: TrainConfig, state, w_avg=None) -> gen.Generator:
  """The EMA generator of `state` (w_avg zeros unless given)."""
  buffers = dict(state.g_buffers)
  if w_avg is not None:
    buffers["w_avg"] = jnp.asarray(w_avg, jnp.float32)
  return gen.Generator(state.g_ema, buffers, cfg.generator)


def sample_images(cfg: TrainConfig, state, z, batch=64):
  """EMA-generator images (uint8 NHWC) for z, psi 1, const noise."""
  g = ema_generator(cfg, state)
  return np.concatenate([to_uint8(_ema_images(g, z[i : i + batch])) for i in range(0, len(z), batch)])


@jax.jit
def _w_mean(g, z):
  return jnp.mean(gen.mapping(g.config, g.params, z), axis=0)


def compute_w_avg(g: gen.Generator, num=10_000, seed=0, chunk=1000):
  """Mean mapping output over `num` z ~ N(0, I): float32 (w_dim,)."""
  rs = np.random.RandomState(seed)
  sums, count = 0.0, 0
  while count < num:
    k = min(chunk, num - count)
    z = rs.randn(k, g.config.z_dim).astype(np.float32)
    sums = sums + np.asarray(_w_mean(g, z), np.float64) * k
    count += k
  return (sums / num).astype(np.float32)


def export_generator(cfg: TrainConfig, state, directory, source=None, w_avg_samples=10_000, overwrite=False):
  """Save the EMA generator (w_avg = mean mapping of w_avg_samples z) with save_generator.

  Returns the exported Generator.
  """
  state = jax.device_get(state)
  g = ema_generator(cfg, state)
  g = ema_generator(cfg, state, compute_w_avg(g, w_avg_samples))
  src = {
    "trainer": "ss_jax.train",
    "data": "ss_jax.toyfaces.render",
    "w_avg_samples": w_avg_samples,
    "train_config": cfg.to_dict(),
  }
  src.update(source or {})
  save_generator(g, directory, source=src, overwrite=overwrite)
  return g


def export_latest(workdir, directory, source=None, w_avg_samples=10_000, overwrite=False):
  """Export the EMA generator of workdir's latest checkpoint; returns (Generator, meta)."""
  outputs.check_target(directory, overwrite)  # before the w_avg work
  cfg = load_run_config(workdir)
  with _manager(workdir, read_only=True) as manager:
    state, meta = restore_checkpoint(manager, cfg)
  if state is None:
    raise FileNotFoundError(f"{workdir}: no checkpoint to export")
  info = {k: meta.get(k) for k in ("step", "kimg", "train_seconds", "device", "num_devices", "commands")}
  info.update(source or {})
  return export_generator(cfg, state, directory, info, w_avg_samples, overwrite), meta


# ----------------------------------------------------------------------------- training


def _device_info():
  d = jax.devices()[0]
  return f"{d.platform}:{getattr(d, 'device_kind', '?')}"


def _save_png(path, image_u8):
  from PIL import Image  # pylint: disable=g-import-not-at-top

  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_suffix(".tmp.png")
  Image.fromarray(image_u8).save(tmp)
  tmp.replace(path)


@dataclasses.dataclass
class _MetricMeans:
  """Running sums of per-step device metrics, fetched once per log interval."""

  pending: list = dataclasses.field(default_factory=list)

  def add(self, m):
    self.pending.append(m)

  def pop(self):
    sums, counts = {}, {}
    for m in jax.device_get(self.pending):
      for k, v in m.items():
        sums[k] = sums.get(k, 0.0) + float(v)
        counts[k] = counts.get(k, 0) + 1
    self.pending = []
    return {k: sums[k] / counts[k] for k in sums}


def train(
  cfg: TrainConfig,
  workdir,
  *,
  max_minutes=None,
  max_steps=None,
  data_fn=None,
  devices=None,
  data_workers=1,
  data_processes=False,
  log_every_s=10.0,
  sample_every_kimg=50.0,
  sample_grid=(8, 8),
  ckpt_every_minutes=10.0,
  ckpt_every_steps=None,
  should_stop=None,
  command=None,
  compiler_options=None,
  log=logging.info,
):
  """Train (or resume) in workdir until total_kimg, max_steps, the time budget or should_stop().

  Args:
    cfg: the run's config; must match workdir's train_config.json except total_kimg.
    workdir: run directory (created).
    max_minutes: wall-clock budget of this call (from entry, compilation
      included); the loop then checkpoints and returns.
    max_steps: stop once state.step reaches this (tests, debugging).
    data_fn: seeds int64 [N] -> uint8 [N, R, R, 3]; default ToyFaces at cfg.resolution.
    devices: devices of the data mesh (default all; the most that divide the batch).
    data_workers, data_processes: render pool (processes scale on many-core hosts).
    log_every_s, sample_every_kimg, ckpt_every_minutes, ckpt_every_steps: cadences
      (None disables the step-based checkpoint cadence).
    should_stop: optional callable polled every step (e.g. set by a SIGTERM handler).
    command: command line recorded in checkpoint meta (and exports).
    compiler_options: XLA options for the step (see step.TrainStep).
    log: logging function for progress lines.

  Returns:
    (state, meta): final TrainState (replicated on the mesh) and checkpoint meta.
  """
  t_start = time.time()
  workdir = jobs.open_workdir(workdir, jax.process_index())
  workdir.mkdir(parents=True, exist_ok=True)
  _check_config(workdir, cfg)
  mesh = step_lib.make_mesh(cfg.batch_size, devices)
  train_step = step_lib.make_train_step(cfg, mesh, compiler_options)
  total_steps = cfg.total_steps if max_steps is None else min(cfg.total_steps, max_steps)
  data_fn = data_fn or data_lib.toyfaces_source(cfg.resolution)
  deadline = None if max_minutes is None else t_start + 60.0 * max_minutes

  with _manager(workdir) as manager:
    state, meta = restore_checkpoint(manager, cfg, sharding=train_step.replicated)
    if state is None:
      state = train_step.init()
      meta = {"step": 0, "kimg": 0.0, "train_seconds": 0.0, "commands": []}
      log(
        "new run in %s: G %d params, D %d params, %d device(s) %s",
        workdir,
        _nparams(state.g_params),
        _nparams(state.d_params),
        mesh.devices.size,
        _device_info(),
      )
    else:
      log("resuming %s at step %d (%.1f kimg)", workdir, meta["step"], meta["kimg"])
    step = int(meta["step"])
    _truncate_metrics(workdir / METRICS_FILE, step)
    meta = dict(meta, device=_device_info(), num_devices=int(mesh.devices.size))
    if command:
      meta["commands"] = list(meta.get("commands", []))[-9:] + [command]
    train_seconds0 = float(meta["train_seconds"])
    grid_z = sample_z(cfg, sample_grid[0] * sample_grid[1])
    samples = workdir / SAMPLES_DIR
    if not (samples / "reals.png").exists():
      reals = data_fn(data_lib.step_seeds(0, len(grid_z), cfg.data_seed_offset + 7_777_777))
      _save_png(samples / "reals.png", grid_image(np.asarray(reals), sample_grid))

    def write_samples():
      _save_png(samples / f"fakes_step{step:08d}.png", grid_image(sample_images(cfg, state, grid_z), sample_grid))

    saved = {"step": None}

    def checkpoint():
      saved["step"] = step
      meta.update(step=step, kimg=step * cfg.batch_size / 1000.0, train_seconds=train_seconds0 + time.time() - t_start)
      save_checkpoint(manager, state, dict(meta))

    means = _MetricMeans()
    prev_metrics = None
    t_log = t_ckpt = time.time()
    step_log = step
    next_sample_kimg = (
      (math.floor(step * cfg.batch_size / 1000.0 / sample_every_kimg) + 1) * sample_every_kimg
      if sample_every_kimg
      else None
    )
    start_step = step
    with (
      data_lib.Prefetcher(
        data_fn, step, cfg.batch_size, cfg.data_seed_offset, workers=data_workers, processes=data_processes
      ) as prefetch,
      open(workdir / METRICS_FILE, "a") as metrics_file,
    ):
      while step < total_steps:
        if deadline is not None and time.time() >= deadline:
          log("time budget of %s min reached", max_minutes)
          break
        if should_stop is not None and should_stop():
          log("stop requested")
          break
        state, metrics = train_step(state, prefetch.next(), host_step=step)
        step += 1
        means.add(metrics)
        if step == start_step + 1:  # rate excludes compilation
          jax.block_until_ready(metrics)
          t_log, step_log = time.time(), step
        # Keep at most two steps in flight: bounded memory, honest time checks.
        if prev_metrics is not None:
          jax.block_until_ready(prev_metrics)
        prev_metrics = metrics
        now = time.time()
        if now - t_log >= log_every_s or step == total_steps:
          jax.block_until_ready(metrics)
          now = time.time()
          rec = {
            "step": step,
            "kimg": step * cfg.batch_size / 1000.0,
            "images_per_s": (step - step_log) * cfg.batch_size / max(now - t_log, 1e-9),
            "train_seconds": train_seconds0 + now - t_start,
          }
          rec.update(means.pop())
          jobs.check_finite(rec, f"training at step {step}")  # stop, keep the last checkpoint
          metrics_file.write(json.dumps(rec) + "\n")
          metrics_file.flush()
          log(
            "step %d kimg %.2f img/s %.1f G %.3f D %.3f D(real) %.2f D(fake) %.2f R1 %s",
            step,
            rec["kimg"],
            rec["images_per_s"],
            rec["g_loss"],
            rec["d_loss"],
            rec["d_real"],
            rec["d_fake"],
            f"{rec['r1']:.4f}" if "r1" in rec else "-",
          )
          t_log, step_log = now, step
        if next_sample_kimg is not None and step * cfg.batch_size / 1000.0 >= next_sample_kimg:
          write_samples()
          next_sample_kimg += sample_every_kimg
        if (ckpt_every_steps and step % ckpt_every_steps == 0) or (
          ckpt_every_minutes and now - t_ckpt >= 60.0 * ckpt_every_minutes
        ):
          checkpoint()
          t_ckpt = now
    if saved["step"] != step and (step != start_step or manager.latest_step() is None):
      checkpoint()
    if step != start_step:
      write_samples()
    manager.wait_until_finished()
    log("stopped at step %d (%.2f kimg); checkpoint in %s", step, step * cfg.batch_size / 1000.0, workdir / CKPT_DIR)
  return state, meta


def _truncate_metrics(path, step):
  """Drop records past `step` (left by a run killed after its last checkpoint)."""
  if not path.is_file():
    return
  lines = path.read_text().splitlines()
  keep = [l for l in lines if l.strip() and json.loads(l)["step"] <= step]
  if len(keep) != len(lines):
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(l + "\n" for l in keep))
    tmp.replace(path)


def _nparams(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))
