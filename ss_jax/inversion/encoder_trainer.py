"""The encoder's resumable training loop: run settings guard, orbax checkpoints, metrics log, export.

A workdir holds run.json (settings, generator fingerprint), normaliser.npz, checkpoints/ (orbax,
latest 2) and metrics.jsonl; a killed `train` resumes from the latest checkpoint with the same
result. Data, losses and evaluation are in encoder_training.py.
"""

import json
import pathlib
import time
from typing import Callable

import jax
import jax.numpy as jnp
import optax

from ss_jax.runtime import fingerprints
from ss_jax.inversion import encoder as enc_lib
from ss_jax.inversion.encoder_training import (
  HELDOUT_MIX_OFFSET,
  HELDOUT_Z_OFFSET,
  NORMALISER_SEED,
  RENDER_HELDOUT_OFFSET,
  TRAIN_MIX_OFFSET,
  TRAIN_Z_OFFSET,
  TrainSettings,
  _make_pairs_jit,
  compute_normaliser,
  generated_metrics,
  heldout_renders,
  image_metrics,
  init_state,
  load_normaliser,
  save_normaliser,
  step_latents,
  train_step,
)
from ss_jax.runtime import jobs, outputs

RUN_FILE = "run.json"


NORMALISER_FILE = "normaliser.npz"


CKPT_DIR = "checkpoints"


METRICS_FILE = "metrics.jsonl"


def _manager(workdir, read_only=False):
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

  if read_only:
    options = ocp.CheckpointManagerOptions(create=False, read_only=True, max_to_keep=None, save_interval_steps=0)
  else:
    options = ocp.CheckpointManagerOptions(max_to_keep=2, create=True)
  return ocp.CheckpointManager(
    pathlib.Path(workdir).absolute() / CKPT_DIR, options=options, item_names=("state", "meta")
  )


def _restore(manager, config, settings):
  """(state, meta) of the latest checkpoint, or (None, None)."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

  step = manager.latest_step()
  if step is None:
    return None, None
  # Restored onto the default device (committed, as train() commits a fresh state), so the
  # jitted step hits its compilation cache instead of recompiling for another placement.
  sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  abstract = jax.tree.map(
    lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
    jax.eval_shape(lambda: init_state(config, settings)),
  )
  out = manager.restore(
    step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore())
  )
  return out["state"], out["meta"]


def _run_spec(g, config, settings):
  return {
    "settings": settings.to_dict(),
    "encoder": config.to_dict(),
    "generator_fingerprint": fingerprints.model_fingerprint(g),
    "generator_config": g.config.to_dict(),
  }


def load_run(workdir):
  """(TrainSettings, EncoderConfig, spec dict) of a training workdir."""
  path = pathlib.Path(workdir) / RUN_FILE
  if not path.is_file():
    raise FileNotFoundError(f"{workdir}: no {RUN_FILE}; not an encoder training workdir")
  spec = json.loads(path.read_text())
  return (TrainSettings(**spec["settings"]), enc_lib.EncoderConfig.from_dict(spec["encoder"]), spec)


def _check_run(workdir, spec, log=print):
  """Write the run's spec on first use; later runs must match it except settings.steps.

  A new step count is accepted (as the GAN trainer accepts a new total_kimg):
  the learning-rate schedule is recomputed for the new total from the current
  step on, so the run no longer follows the original trajectory.
  """
  path = pathlib.Path(workdir) / RUN_FILE
  spec = json.loads(json.dumps(spec))  # tuples -> lists, as read back
  if not path.is_file():
    jobs.atomic_write_json(path, spec)
    return
  old = json.loads(path.read_text())
  steps = lambda d: dict(d, settings=dict(d["settings"], steps=None))
  same = jobs.same_settings
  if not same(old, spec) and same(steps(old), steps(spec)):
    log(
      f"encoder: steps changed from {old['settings']['steps']} to {spec['settings']['steps']}: "
      "the learning-rate schedule follows the new total from here on"
    )
    jobs.atomic_write_json(path, spec)
  elif not same(old, spec):
    diff = []
    for k in sorted(set(old) | set(spec)):
      a, b = old.get(k), spec.get(k)
      if isinstance(a, dict) and isinstance(b, dict):
        diff += [f"{k}.{j}" for j in sorted(set(a) | set(b)) if a.get(j) != b.get(j)]
      elif a != b:
        diff.append(k)
    raise jobs.SettingsMismatch(
      f"{path} was written by a run with other settings ({', '.join(diff)}); use another --workdir or delete it"
    )


def _normaliser(workdir, g, settings, log):
  path = pathlib.Path(workdir) / NORMALISER_FILE
  if path.is_file():
    return load_normaliser(path)
  t0 = time.time()
  norm = compute_normaliser(g, settings.normaliser_samples)
  save_normaliser(path, norm)
  log(f"encoder: normaliser from {settings.normaliser_samples} samples ({time.time() - t0:.0f}s)")
  return load_normaliser(path)  # the float32 arrays exactly as a resumed run reads them


def train(
  g,
  workdir,
  settings: TrainSettings,
  config: enc_lib.EncoderConfig | None = None,
  *,
  max_seconds: float | None = None,
  max_steps: int | None = None,
  eval_images: int = 256,
  log_every_s: float = 30.0,
  ckpt_every_s: float = 300.0,
  should_stop: Callable[[], bool] | None = None,
  command: str | None = None,
  log: Callable = print,
):
  """Train (or resume) an encoder for generator g in workdir.

  Stops at settings.steps, max_steps, after max_seconds of this call
  (compilation included) or when should_stop() is true; then checkpoints and,
  if eval_images > 0, evaluates on held-out generated images (a metrics.jsonl
  "eval" record).

  Returns:
    (Encoder of the current params, meta dict: step, images_seen, train_seconds, ...).
  """
  t_start = time.time()
  if g.config.c_dim:
    raise ValueError("the encoder supports unconditional generators only (c_dim = 0)")
  config = config or enc_lib.EncoderConfig.for_generator(g)
  enc_lib.check_compatible(config, g)
  workdir = jobs.open_workdir(workdir)
  spec = _run_spec(g, config, settings)
  _check_run(workdir, spec, log)
  norm = _normaliser(workdir, g, settings, log)
  total = settings.steps if max_steps is None else min(settings.steps, max_steps)
  deadline = None if max_seconds is None else t_start + max_seconds
  with _manager(workdir) as manager:
    state, meta = _restore(manager, config, settings)
    if state is None:  # committed like a restored state: one compilation of the step for both
      state = jax.device_put(init_state(config, settings), jax.devices()[0])
      meta = {"step": 0, "images_seen": 0, "train_seconds": 0.0, "commands": []}
      log(f"encoder: new run in {workdir}: {enc_lib.num_params(state['params']):,} params")
    else:
      log(f"encoder: resuming {workdir} at step {meta['step']}")
    if command:
      meta["commands"] = list(meta.get("commands", []))[-19:] + [command]
    history = [list(h) for h in meta.get("steps_history", [])]
    if not history or history[-1][1] != settings.steps:  # [[from step, total steps], ...]
      meta["steps_history"] = history + [[int(meta["step"]), settings.steps]]
    meta["device"] = f"{jax.devices()[0].platform}:{getattr(jax.devices()[0], 'device_kind', '?')}"
    step = start = int(meta["step"])
    _truncate_metrics(workdir / METRICS_FILE, step)
    seconds0 = float(meta["train_seconds"])
    params, opt_state = state["params"], state["opt_state"]
    saved = {"step": None}

    def checkpoint():
      import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

      meta.update(step=step, images_seen=step * settings.batch_size, train_seconds=seconds0 + time.time() - t_start)
      manager.save(
        step,
        args=ocp.args.Composite(
          state=ocp.args.StandardSave({"params": params, "opt_state": opt_state}), meta=ocp.args.JsonSave(dict(meta))
        ),
        force=True,
      )
      saved["step"] = step

    prev, sums, count, pairs = None, {}, 0, None
    t_log = t_ckpt = time.time()
    step_log = step
    with open(workdir / METRICS_FILE, "a") as metrics_file:
      while step < total:
        if deadline is not None and time.time() >= deadline:
          log(f"encoder: time budget of {max_seconds:.0f}s reached")
          break
        if should_stop is not None and should_stop():
          log("encoder: stop requested")
          break
        if pairs is None or step % settings.reuse == 0:
          pairs = _make_pairs_jit(g, step_latents(step, settings, g.config))
        params, opt_state, metrics = train_step(config, settings, params, opt_state, g, norm, jnp.int32(step), *pairs)
        step += 1
        if prev is not None:  # at most two steps in flight: honest time checks
          for k, v in jax.device_get(prev).items():
            sums[k] = sums.get(k, 0.0) + float(v)
          count += 1
        prev = metrics
        if step == start + 1:  # rates exclude compilation
          jax.block_until_ready(metrics)
          t_log, step_log = time.time(), step
        now = time.time()
        if (now - t_log >= log_every_s and count) or step == total:
          for k, v in jax.device_get(prev).items():
            sums[k] = sums.get(k, 0.0) + float(v)
          count += 1
          prev = None
          now = time.time()
          rate = (step - step_log) * settings.batch_size / max(now - t_log, 1e-9)
          rec = {
            "step": step,
            "images_seen": step * settings.batch_size,
            "images_per_s": rate,
            "train_seconds": seconds0 + now - t_start,
            "learning_rate": float(_schedule_value(settings, step)),
          }
          rec.update({k: v / count for k, v in sums.items()})
          jobs.check_finite(rec, f"encoder training at step {step}")  # stop, keep the last checkpoint
          metrics_file.write(json.dumps(rec) + "\n")
          metrics_file.flush()
          eta = (total - step) * settings.batch_size / rate if rate > 0 else float("nan")
          terms = " ".join(f"{k} {rec[k]:.4f}" for k in ("s_mse", "wplus_mse", "image_mse") if k in rec)
          log(
            f"encoder: step {step}/{settings.steps} loss {rec['loss']:.4f} ({terms}) {rate:.1f} img/s, ETA {eta:.0f}s"
          )
          sums, count, t_log, step_log = {}, 0, now, step
        if ckpt_every_s and now - t_ckpt >= ckpt_every_s:
          checkpoint()
          t_ckpt = now
      if saved["step"] != step and (step != start or manager.latest_step() is None):
        checkpoint()
      manager.wait_until_finished()
      meta.update(step=step, images_seen=step * settings.batch_size, train_seconds=seconds0 + time.time() - t_start)
      encoder = enc_lib.Encoder(
        config, jax.device_get(params), norm, spec["generator_fingerprint"], {"training": dict(meta)}
      )
      if eval_images and step != start:
        m = generated_metrics(encoder, g, eval_images, settings)
        metrics_file.write(json.dumps({"step": step, "eval": m}) + "\n")
        log(
          f"encoder: held-out ({eval_images} generated) S nMSE {m['s_nmse']:.4f} W+ nMSE "
          f"{m['wplus_nmse']:.4f}; image MSE G(S) {m['recon_mse_s']:.4f} G(W+) "
          f"{m['recon_mse_wplus']:.4f} G(w_avg) {m['recon_mse_wavg']:.4f}"
        )
  log(f"encoder: stopped at step {step}/{settings.steps} ({step * settings.batch_size:,} images)")
  return encoder, dict(meta)


def _truncate_metrics(path, step):
  """Drop records past `step` (left by a run killed after its last checkpoint)."""
  if not path.is_file():
    return
  lines = [l for l in path.read_text().splitlines() if l.strip()]
  keep = [l for l in lines if json.loads(l)["step"] <= step]
  if len(keep) != len(lines):
    jobs.atomic_write_text(path, "".join(l + "\n" for l in keep))


def _schedule_value(settings, step):
  warmup = min(settings.warmup_steps, settings.steps // 2)
  return optax.warmup_cosine_decay_schedule(
    0.0,
    settings.learning_rate,
    warmup,
    max(settings.steps, warmup + 1),
    end_value=settings.end_lr_fraction * settings.learning_rate,
  )(step)


def load_latest(workdir, g=None):
  """(Encoder, meta, settings) from workdir's latest checkpoint; g is checked if given."""
  settings, config, spec = load_run(workdir)
  with _manager(workdir, read_only=True) as manager:
    state, meta = _restore(manager, config, settings)
  if state is None:
    raise FileNotFoundError(f"{workdir}: no checkpoint yet")
  norm = load_normaliser(pathlib.Path(workdir) / NORMALISER_FILE)
  encoder = enc_lib.Encoder(config, jax.device_get(state["params"]), norm, spec["generator_fingerprint"], {})
  if g is not None:
    encoder.check_generator(g)
  return encoder, meta, settings


def export(
  workdir,
  directory,
  g,
  eval_images: int = 1024,
  render_images: int = 256,
  command: str | None = None,
  log: Callable = print,
  overwrite: bool = False,
) -> dict:
  """Evaluate workdir's latest checkpoint and save it as an encoder directory.

  config.json's "extra" records the training (commands, steps, images seen,
  train seconds, settings) and the metrics: held-out generated images (the
  training recipe, and plain psi-1 samples without mixing) and held-out
  ToyFaces renders (seeds RENDER_HELDOUT_OFFSET + [0, render_images), skipped
  if 0).

  Returns:
    The metrics dict.
  """
  outputs.check_target(directory, overwrite)  # before the evaluation
  encoder, meta, settings = load_latest(workdir, g)
  t0 = time.time()
  metrics = {}
  if eval_images:
    metrics["generated"] = generated_metrics(encoder, g, eval_images, settings)
    metrics["generated_unmixed"] = generated_metrics(encoder, g, eval_images, settings, 0.0)
  if render_images:
    metrics["toyfaces_renders"] = dict(
      image_metrics(encoder, g, heldout_renders(render_images, g.config.img_resolution)),
      seeds=[RENDER_HELDOUT_OFFSET, RENDER_HELDOUT_OFFSET + render_images],
    )
  log(f"encoder: evaluated in {time.time() - t0:.0f}s: {json.dumps(metrics, indent=1)}")
  training = {
    k: meta.get(k) for k in ("step", "images_seen", "train_seconds", "commands", "device", "steps_history") if k in meta
  }
  training.update(
    steps=settings.steps,
    settings=settings.to_dict(),
    seeds={
      "train_z": TRAIN_Z_OFFSET,
      "train_mix": TRAIN_MIX_OFFSET,
      "heldout_z": HELDOUT_Z_OFFSET,
      "heldout_mix": HELDOUT_MIX_OFFSET,
      "normaliser": NORMALISER_SEED,
    },
  )
  if command:
    training["export_command"] = command
  enc_lib.save_encoder(
    directory,
    encoder.config,
    encoder.params,
    encoder.normaliser,
    encoder.generator_fingerprint,
    extra={"training": training, "metrics": metrics},
    generator_config=g.config,
    overwrite=overwrite,
  )
  log(f"encoder: exported step {meta['step']} to {directory}")
  return metrics
