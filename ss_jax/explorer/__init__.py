"""Channel explorer: a local web app to browse StyleSpace channels and edit images live.

  python -m experiments.explore [--checkpoint=...] [--workdir=ANALYSIS_DIR]

Modules:
  edit_spec   the edit JSON (channels, alphas, sigmas, seeds or codes) and its exact replay
  renderer    jitted programs (render, seed -> S, one channel's gradient map) and the
              RenderService that batches requests from several browser tabs
  catalogue   channels by category and layer from a workdir's analysis outputs, or measured
              on the fly
  views       per-image pictures: |delta| heat map, region outline, overlays, locality
  uploads     safe decoding of uploaded images and their inversion (encoder / hybrid)
  app         the Flask application (JSON API + the static page in static/)
"""
