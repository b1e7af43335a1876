"""Explorer responsiveness: slider change -> new image, and requests/s with concurrent clients.

  python -m benchmarks.bench_explore                        # shipped ToyFaces generator
  python -m benchmarks.bench_explore --clients=4 --seconds=10

Starts the explorer binary (`python -m experiments.explore`, its own process: threaded werkzeug
and the RenderService) on 127.0.0.1 with an ephemeral port, once with batches of up to 8
images and once with max_batch 1 (a plain FIFO queue, the baseline), then over loopback HTTP:

  With --browser (Debian chromium + chromium-driver, selenium): the same in the real page, from
  the slider's input event to the edited image's load event (the page's own clock), per step.
  0. the jitted render program alone, median time per batch size 1, 2, 4, 8 (in this process).
  1. latency: --requests sequential POST /api/render calls, each with a new alpha (what one
     slider step sends), for 1 image and for 4 images side by side, with and without the
     |delta| map + outline; median and 90th percentile of the round trip (JSON in, PNG data
     URLs out). The browser's own image decode is not included.
  2. throughput: --clients threads, each sending its next request as soon as the previous
     one returns (the page keeps one request in flight per tab), for --seconds; requests/s,
     latency, and the render service's mean batch (rows per jitted call), compared with
     one client, for both servers.

Prints the load average before and after: on a shared machine the numbers scale with it.
"""

import argparse
import http.client
import json
import os
import pathlib
import re
import statistics
import subprocess
import sys
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
  return {
    "images": [{"seed": s, "psi": 0.7} for s in seeds],
    "edits": [{"channel": channel, "alpha": alpha}],
    "delta": extras,
    "outline": extras,
  }


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


def start_server(checkpoint, max_batch):
  """`python -m experiments.explore` in a child process (its own GIL, like a real run) -> (process, port)."""
  cmd = [
    sys.executable,
    "-m",
    "experiments.explore",
    "--port=0",
    "--encoder=none",
    "--nomeasure",
    "--sigma_samples=500",
    f"--max_batch={max_batch}",
  ] + ([f"--checkpoint={checkpoint}"] if checkpoint else [])
  proc = subprocess.Popen(
    cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=pathlib.Path(__file__).resolve().parents[1]
  )
  t = time.perf_counter()
  for line in proc.stdout:
    m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
    if m:
      print(f"server (max_batch {max_batch}) up in {time.perf_counter() - t:.1f} s (load, sigma, compile)")
      return proc, int(m.group(1))
  raise RuntimeError("the explorer did not start")


def counters(port):
  conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
  conn.request("GET", "/api/info")
  c = json.loads(conn.getresponse().read())["counters"]
  conn.close()
  return c


def render_buckets(checkpoint, repeats=15):
  """Median time of the jitted render program alone per batch size (in this process)."""
  import jax
  from ss_jax.runtime import defaults
  from ss_jax.stylegan2.checkpoint import load_generator
  from ss_jax.explorer import renderer

  g = load_generator(checkpoint or defaults.default_checkpoint())
  flat = renderer.seed_styles(g, range(8), 0.7)
  parts = []
  for b in (1, 2, 4, 8):
    jax.block_until_ready(renderer._render(g, flat[:b]))  # pylint: disable=protected-access
    ts = []
    for _ in range(repeats):
      t = time.perf_counter()
      jax.block_until_ready(renderer._render(g, flat[:b]))  # pylint: disable=protected-access
      ts.append(time.perf_counter() - t)
    parts.append(f"{b}: {1e3 * statistics.median(ts):.1f} ms")
  print("jitted render alone, median per batch size: " + ", ".join(parts))


def browser_latency(port, seeds, n, channel):
  """Slider input event -> edited image loaded in headless Chromium (ms, the page's own clock)."""
  import shutil
  from selenium import webdriver
  from selenium.webdriver.chrome.service import Service
  from selenium.webdriver.common.by import By
  from selenium.webdriver.support.ui import WebDriverWait

  opts = webdriver.ChromeOptions()
  opts.binary_location = shutil.which("chromium")
  for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
    opts.add_argument(arg)
  d = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
  try:
    wait = WebDriverWait(d, 120)
    d.get(f"http://127.0.0.1:{port}/")
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "img.base"))
    box = d.find_element(By.ID, "seeds")
    box.clear()
    box.send_keys(",".join(map(str, seeds)))
    d.find_element(By.ID, "load-seeds").click()
    d.find_element(By.ID, "search").send_keys(channel)
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, f'.channel-item[data-name="{channel}"]')).click()
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, f'input[type=range][data-name="{channel}"]'))
    out = []
    for i in range(n):
      v = -10 + (i % 40) * 0.5
      v = v if v != 0 else 0.5
      d.execute_script(
        f"const r = document.querySelector('input[type=range][data-name=\"{channel}\"]');"
        f"r.value = {v}; r.dispatchEvent(new Event('input'));"
      )
      tag = json.dumps([{"channel": channel, "alpha": v}], separators=(",", ":")).replace(".0}", "}")
      wait.until(lambda d, tag=tag: d.execute_script("return document.body.dataset.latencyEdits") == tag)
      out.append(float(d.execute_script("return document.body.dataset.latencyMs")) / 1e3)
    return out
  finally:
    d.quit()


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--checkpoint", default=None, help="generator (default: shipped ToyFaces)")
  p.add_argument("--requests", type=int, default=40, help="sequential requests per latency case")
  p.add_argument("--clients", type=int, default=4)
  p.add_argument("--seconds", type=float, default=10.0, help="duration of each throughput run")
  p.add_argument("--channel", default="6_113")
  p.add_argument("--browser", action="store_true", help="also time slider -> image in headless Chromium")
  a = p.parse_args()
  print(f"load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())} ({os.cpu_count()} CPUs)")
  render_buckets(a.checkpoint)
  ms = lambda v: f"median {1e3 * statistics.median(v):6.1f} ms, p90 {1e3 * float(np.percentile(v, 90)):6.1f} ms"
  for max_batch in (8, 1):
    proc, port = start_server(a.checkpoint, max_batch)
    try:
      if max_batch == 8:
        for seeds, extras in (([0], False), ([0], True), ([0, 1, 2, 3], False), ([0, 1, 2, 3], True)):
          v = latency(port, seeds, extras, a.requests, a.channel)
          print(
            f"slider step -> new image, {len(seeds)} image(s){' + |delta| map + outline' if extras else '':28s}: "
            f"{ms(v)} ({len(v)} requests)"
          )
        if a.browser:
          for seeds in ([0], [0, 1, 2, 3]):
            v = browser_latency(port, seeds, a.requests, a.channel)
            print(f"in Chromium: slider input -> edited image loaded, {len(seeds)} image(s): {ms(v)} ({len(v)} steps)")
      for clients in (1, a.clients):
        c0 = counters(port)
        rps, lat, done = throughput(port, clients, a.seconds, a.channel)
        c1 = counters(port)
        rows = (c1["rows"] - c0["rows"]) / max(c1["batches"] - c0["batches"], 1)
        print(
          f"max_batch {max_batch}, {clients} client(s): {rps:6.1f} requests/s, {ms(lat)}, requests per client "
          f"{done}, mean rows per jitted render {rows:.2f}"
        )
    finally:
      proc.terminate()
      proc.wait(timeout=30)
  print(f"load average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
  main()
