"""Building the explorer from command-line choices and serving it (used by experiments.explore)."""

import logging

from ss_jax.stylespace import segmentation
from ss_jax.explorer import app as app_lib
from ss_jax.explorer import catalogue, state, uploads

log = logging.getLogger("ss_jax.explorer")


def pick_segmenter(spec, default_model):
  """'auto' (the ToyFaces segmenter for the shipped model, else none), 'none', or a registered
  segmenter name / 'module:function' -> (segmenter or None, CategoryTable or None)."""
  if spec == "none" or (spec == "auto" and not default_model):
    return None, None
  seg, table = segmentation.get_segmenter("toyfaces" if spec == "auto" else spec)
  if table is None:
    raise ValueError(f"segmenter {spec!r} has no category table; use a registered segmenter")
  return seg, segmentation.get_table(table)


def build_explorer(
  g,
  name,
  *,
  default_model,
  workdir=None,
  stats_path=None,
  detections_path=None,
  verified_path=None,
  segmenter="auto",
  encoder="auto",
  max_batch=8,
  sigma_samples=catalogue.ON_THE_FLY_SAMPLES,
  measure=True,
):
  """An Explorer for generator g with whatever analysis outputs exist (see catalogue)."""
  res = catalogue.load_workdir(g.layout, workdir, stats_path, detections_path, verified_path)
  seg, table = pick_segmenter(segmenter, default_model)
  if encoder == "none":
    enc, reason = None, "uploads disabled (--encoder=none)"
  else:
    enc, reason = uploads.load_encoder_for(g, None if encoder == "auto" else encoder)
  return state.Explorer(
    g,
    name=name,
    sigma=res["std"],
    sigma_source=res["sigma_source"],
    workdir_results=res,
    segmenter=seg,
    table=table,
    encoder=enc,
    encoder_reason=reason,
    max_batch=max_batch,
    sigma_samples=sigma_samples,
    measure=measure,
  )


def serve(explorer, host="127.0.0.1", port=8000, warm_up=True):
  """Serves until interrupted; prints the address first."""
  server = app_lib.make_server(explorer, host, port)
  if warm_up:
    print("compiling the render program for every batch size ...", flush=True)
    explorer.service.warm_up()
  shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
  print(f"ss-jax explorer: http://{shown}:{server.server_port}/  (Ctrl-C to stop)", flush=True)
  try:
    server.serve_forever()
  except KeyboardInterrupt:
    pass
  finally:
    server.server_close()
    explorer.close()
