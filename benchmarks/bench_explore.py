"""Explorer responsiveness: slider change -> new image, and requests/s with concurrent clients.

  python -m benchmarks.bench_explore                        # shipped ToyFaces generator
  python -m benchmarks.bench_explore --clients=4 --seconds=10

Starts the explorer's real server (threaded werkzeug, the same RenderService) on
127.0.0.1 with an ephemeral port, compiles its render shapes, then over loopback HTTP:

  1. latency: --requests sequential POST /api/render calls, each with a new alpha (what one
     slider step sends), for 1 image and for 4 images side by side, with and without the
     |delta| map + outline; median and 90th percentile of the round trip (JSON in, PNG data
     URLs out). The browser's own image decode is not included.
  2. throughput: --clients threads, each sending its next request as soon as the previous
     one returns (the page keeps one request in flight per tab), for --seconds; requests/s,
     latency, and the render service's mean batch (rows per jitted call), compared with
     one client over the same time.

Prints the load average before and after: on a shared machine the numbers scale with it.
"""
import argparse
import http.client
import json
import os
import statistics
import threading
import time

import numpy as np


def _post(conn, body):
  conn.request("POST", "/api/render", json.dumps(body), {"Content-Type": "application/json", "X-Explorer": "1"})
  r = conn.getresponse()
  data = r.read()
  if r.status != 200:
    raise RuntimeError(f"HTTP {r.status}: {data[:200]!r}")
  return data


def _body(seeds, alpha, extras, channel):
  return {"images": [{"seed": s, "psi": 0.7} for s in seeds], "edits": [{"channel": channel, "alpha": alpha}],
          "delta": extras, "outline": extras}


def latency(port, seeds, extras, n, channel):
  conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
  _post(conn, _body(seeds, 0.0, extras, channel))  # caches the unedited image / segmentation
  times = []
  for i in range(n):
    t = time.perf_counter()
    _post(conn, _body(seeds, round(-10 + 20 * i / max(n - 1, 1), 3), extras, channel))
    times.append(time.perf_counter() - t)
  conn.close()
  return times


def throughput(port, clients, seconds, channel, max_requests=10_000):
  done, lat, stop = [0] * clients, [[] for _ in range(clients)], time.perf_counter() + seconds

  def run(k):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    i = 0
    while time.perf_counter() < stop and done[k] < max_requests:
      t = time.perf_counter()
      _post(conn, _body([k], float(i % 40) / 2 - 10, False, channel))
      lat[k].append(time.perf_counter() - t)
      done[k] += 1
      i += 1
    conn.close()

  t0 = time.perf_counter()
  threads = [threading.Thread(target=run, args=(k,)) for k in range(clients)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  wall = time.perf_counter() - t0
  return sum(done) / wall, [x for v in lat for x in v], done


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--checkpoint", default=None, help="generator (default: shipped ToyFaces)")
  p.add_argument("--requests", type=int, default=40, help="sequential requests per latency case")
  p.add_argument("--clients", type=int, default=4)
  p.add_argument("--seconds", type=float, default=10.0, help="duration of each throughput run")
  p.add_argument("--channel", default="6_113")
  a = p.parse_args()
  from ss_jax import defaults
  from ss_jax.checkpoint import load_generator
  from ss_jax.explorer import app as app_lib, launch
  print(f"load average at start: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} "
        f"({os.cpu_count()} CPUs)")
  g = load_generator(a.checkpoint or defaults.default_checkpoint())
  ex = launch.build_explorer(g, "bench", default_model=a.checkpoint is None, encoder="none", measure=False,
                             sigma_samples=500)
  srv = app_lib.make_server(ex, "127.0.0.1", 0)
  threading.Thread(target=srv.serve_forever, daemon=True).start()
  port = srv.server_port
  t = time.perf_counter()
  ex.service.warm_up()
  print(f"model {g.config.img_resolution}px, {g.num_style_channels} style channels; render shapes compiled "
        f"in {time.perf_counter() - t:.1f} s")
  ms = lambda v: f"median {1e3 * statistics.median(v):6.1f} ms, p90 {1e3 * float(np.percentile(v, 90)):6.1f} ms"
  for seeds, extras in (([0], False), ([0], True), ([0, 1, 2, 3], False), ([0, 1, 2, 3], True)):
    v = latency(port, seeds, extras, a.requests, a.channel)
    print(f"slider step -> new image, {len(seeds)} image(s){' + |delta| map + outline' if extras else '':28s}: "
          f"{ms(v)} ({len(v)} requests)")
  for clients in (1, a.clients):
    c0 = dict(ex.service.counters)
    rps, lat, done = throughput(port, clients, a.seconds, a.channel)
    c1 = ex.service.counters
    rows = (c1["rows"] - c0["rows"]) / max(c1["batches"] - c0["batches"], 1)
    print(f"{clients} client(s): {rps:6.1f} requests/s, {ms(lat)}, requests per client {done}, "
          f"mean rows per jitted render {rows:.2f}")
  srv.shutdown()
  ex.close()
  print(f"load average at end: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")


if __name__ == "__main__":
  main()
