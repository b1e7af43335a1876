"""The explorer's Flask application and its local server.

Routes (JSON in and out; every POST must carry the header `X-Explorer: 1`, which a
cross-site form cannot send, so another web page cannot drive the explorer):

  GET  /                    the page (static/index.html; script and style from static/)
  GET  /api/info            model, limits, whether uploads work (and why not)
  GET  /api/catalogue       channels by category and layer (status "measuring" while the
                            on-the-fly measurement runs)
  POST /api/render          {"images": [...sources], "edits": [...], "delta": bool, "outline": bool}
  POST /api/channel         {"name": "6_113", "image": source}
  POST /api/export          {"images": [...], "edits": [...]} -> {"spec": edit file, "images": [PNG]}
  POST /api/upload          multipart: file, mode (encoder|hybrid), steps

Safety: the server binds 127.0.0.1 by default; no route reads a file named by the
request (static files come from a fixed list); uploads are limited in bytes, type and
pixels (ss_jax.explorer.uploads); the Host header must name this server (DNS
rebinding); errors are one-line JSON messages, tracebacks only go to the server log.
"""

import ipaddress
import logging
import pathlib

from ss_jax.explorer import uploads

STATIC = pathlib.Path(__file__).resolve().parent / "static"
_STATIC_FILES = {"explorer.js": "text/javascript", "explorer.css": "text/css"}
_CSP = (
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
  "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)
log = logging.getLogger("ss_jax.explorer")


def is_loopback(host):
  if host == "localhost":
    return True
  try:
    return ipaddress.ip_address(host).is_loopback
  except ValueError:
    return False


def create_app(explorer, allowed_hosts=None):
  """Flask app serving `explorer` (an ss_jax.explorer.state.Explorer).

  allowed_hosts: host names (without port) accepted in the Host header besides localhost,
  127.0.0.1 and [::1]; "*" accepts any (a server bound to a public address).
  """
  import flask
  from werkzeug import exceptions

  app = flask.Flask("ss_jax.explorer", static_folder=None)
  app.config["MAX_CONTENT_LENGTH"] = uploads.MAX_BYTES + 64 * 1024
  any_host = allowed_hosts == "*"
  hosts = (set() if any_host else set(allowed_hosts or ())) | {"localhost", "127.0.0.1", "[::1]", "::1"}

  @app.before_request
  def _guard():
    host = (
      (flask.request.host or "").rsplit(":", 1)[0]
      if not (flask.request.host or "").startswith("[")
      else flask.request.host.split("]")[0] + "]"
    )
    if not any_host and host not in hosts:
      return _error(f"host {host!r} not allowed", 403)
    if flask.request.method == "POST" and flask.request.headers.get("X-Explorer") != "1":
      return _error("missing X-Explorer header", 403)
    return None

  @app.after_request
  def _headers(resp):
    resp.headers["Content-Security-Policy"] = _CSP
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Referrer-Policy"] = "no-referrer"
    resp.headers["Cache-Control"] = "no-store"
    return resp

  def _error(msg, code):
    return flask.jsonify({"error": str(msg)}), code

  def _json():
    d = flask.request.get_json(silent=True)
    if not isinstance(d, dict):
      raise ValueError("expected a JSON object")
    return d

  @app.errorhandler(ValueError)
  def _bad(e):
    return _error(str(e).splitlines()[0] if str(e) else "bad request", 400)

  @app.errorhandler(exceptions.RequestEntityTooLarge)
  def _too_large(_):
    return _error(f"upload too large: the limit is {uploads.MAX_BYTES / 1e6:.0f} MB", 413)

  @app.errorhandler(exceptions.HTTPException)
  def _http(e):
    return _error(e.name, e.code)

  @app.errorhandler(Exception)
  def _internal(e):
    log.exception("explorer request failed: %s", e)
    return _error("internal error (details are in the server log)", 500)

  @app.get("/")
  def index():
    return flask.Response((STATIC / "index.html").read_bytes(), mimetype="text/html")

  @app.get("/favicon.ico")
  def favicon():
    return flask.Response(status=204)

  @app.get("/static/<name>")
  def static_file(name):
    if name not in _STATIC_FILES:
      return _error("not found", 404)
    return flask.Response((STATIC / name).read_bytes(), mimetype=_STATIC_FILES[name])

  @app.get("/api/info")
  def info():
    return flask.jsonify(explorer.info())

  @app.get("/api/catalogue")
  def catalogue():
    return flask.jsonify(explorer.get_catalogue())

  @app.post("/api/render")
  def render():
    d = _json()
    return flask.jsonify(
      explorer.render(d.get("images"), d.get("edits", []), bool(d.get("delta")), bool(d.get("outline")))
    )

  @app.post("/api/channel")
  def channel():
    d = _json()
    return flask.jsonify(explorer.channel(str(d.get("name", "")), d.get("image")))

  @app.post("/api/export")
  def export():
    d = _json()
    return flask.jsonify(explorer.export(d.get("images"), d.get("edits", [])))

  @app.post("/api/upload")
  def upload():
    f = flask.request.files.get("file")
    if f is None:
      raise ValueError("no file in the upload")
    data = f.stream.read(uploads.MAX_BYTES + 1)
    try:
      steps = int(flask.request.form.get("steps", uploads.DEFAULT_HYBRID_STEPS))
    except ValueError:
      raise ValueError("steps must be an integer") from None
    return flask.jsonify(explorer.upload(data, flask.request.form.get("mode", "encoder"), steps, f.filename or ""))

  return app


def make_server(explorer, host="127.0.0.1", port=8000):
  """A threaded WSGI server (werkzeug) for the app; .serve_forever(), .shutdown(), .server_port."""
  from werkzeug import serving

  logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request (a slider sends many)
  allowed = None if is_loopback(host) else "*"
  if not is_loopback(host):
    log.warning("binding %s: the explorer has no authentication; anyone who can reach this address can use it", host)
  return serving.make_server(host, port, create_app(explorer, allowed), threaded=True)
