"""The explorer page in a real browser: headless Chromium driven by Selenium.

Loads the page served by a real (threaded werkzeug) server on a tiny generator with a
hand-made workdir, picks the verified channel, moves its slider with the keyboard, checks
the new image against ss_jax.stylespace.manipulate's own edit, exports, and replays the exported JSON
with `experiments.manipulate --edit` to the same pixels.

Needs Debian's `chromium` and `chromium-driver` (no browser download happens) and the
`selenium` package (test extra). Skipped with the reason when they are missing, except in
CI (CI=true), where a missing browser fails the test.
"""

import base64
import io
import json
import os
import shutil
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from ss_jax.runtime import images
from ss_jax.stylespace import manipulate, stats, channels as stylespace
from ss_jax import save_generator
from ss_jax.explorer import app as app_lib
from ss_jax.explorer import catalogue, renderer, state

import tiny

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHANNEL = "6_2"
ALPHA = 5.0  # 10 presses of the right arrow, step 0.5


def _browser_paths():
  chromium = shutil.which("chromium") or shutil.which("chromium-browser")
  driver = shutil.which("chromedriver")
  missing = [n for n, p in (("chromium", chromium), ("chromium-driver", driver)) if not p]
  try:
    import selenium  # noqa: F401  pylint: disable=unused-import,g-import-not-at-top
  except ImportError:
    missing.append("selenium (pip install -e '.[test]')")
  if missing:
    msg = f"browser test needs {', '.join(missing)} (apt-get install -y chromium chromium-driver)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
      pytest.fail(msg)
    pytest.skip(msg)
  return chromium, driver


def _decode(data_url):
  from PIL import Image

  assert data_url.startswith("data:image/png;base64,")
  return np.asarray(Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("explore")
  g = tiny.tiny_generator()
  std = renderer.seed_styles(g, range(64), 0.7).astype(np.float64).std(0)  # the server's compiled program
  stats.save(tmp / "work" / "stats.npz", {"mean": std * 0, "std": std, "count": 64}, g.layout)
  (tmp / "work" / "verified.json").write_text(
    json.dumps({"categories": [{"category": "hair", "verified": [{"name": CHANNEL, "locality": 0.9}]}]})
  )
  (tmp / "work" / "local").mkdir()
  (tmp / "work" / "local" / "detections.json").write_text(
    json.dumps({"categories": [{"category": "mouth", "detected": [{"name": "3_5", "fraction": 0.6}]}]})
  )
  save_generator(g, tmp / "gen")
  res = catalogue.load_workdir(g.layout, tmp / "work")
  ex = state.Explorer(
    g,
    name="tiny",
    sigma=res["std"],
    sigma_source=res["sigma_source"],
    workdir_results=res,
    encoder_reason="no encoder for this generator",
    max_batch=2,
  )  # 2 compiled shapes
  srv = app_lib.make_server(ex, "127.0.0.1", 0)
  t = threading.Thread(target=srv.serve_forever, daemon=True)
  t.start()
  yield {"url": f"http://127.0.0.1:{srv.server_port}/", "g": g, "std": std, "tmp": tmp}
  srv.shutdown()
  ex.close()


@pytest.fixture(scope="module")
def browser():
  chromium, driver_path = _browser_paths()
  from selenium import webdriver
  from selenium.webdriver.chrome.service import Service

  opts = webdriver.ChromeOptions()
  opts.binary_location = chromium
  for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1300,900"):
    opts.add_argument(a)
  d = webdriver.Chrome(service=Service(driver_path), options=opts)
  yield d
  d.quit()


def test_pick_slide_export_replay(browser, server):  # browser first: a missing one skips before any work
  from selenium.webdriver.common.by import By
  from selenium.webdriver.common.keys import Keys
  from selenium.webdriver.support.ui import WebDriverWait

  t0 = time.perf_counter()
  g, std, tmp = server["g"], server["std"], server["tmp"]
  wait = WebDriverWait(browser, 60)
  browser.get(server["url"])
  # Catalogue: the verified channel comes first, with its badge and measure.
  first = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#channel-list .channel-item"))[0]
  assert first.get_attribute("data-name") == CHANNEL and "✓ hair" in first.text and "locality 0.9" in first.text
  img = wait.until(
    lambda d: [
      e for e in d.find_elements(By.CSS_SELECTOR, "img.base") if (e.get_attribute("src") or "").startswith("data:")
    ]
  )[0]
  before = _decode(img.get_attribute("src"))
  # Search by name, pick, slide with the keyboard.
  browser.find_element(By.ID, "search").send_keys(CHANNEL)
  wait.until(lambda d: d.find_element(By.CSS_SELECTOR, f'.channel-item[data-name="{CHANNEL}"]')).click()
  slider = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, f'input[type=range][data-name="{CHANNEL}"]'))
  for _ in range(int(ALPHA / 0.5)):
    slider.send_keys(Keys.RIGHT)
  want_tag = json.dumps([{"channel": CHANNEL, "alpha": ALPHA}], separators=(",", ":")).replace("5.0", "5")
  wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "img.base").get_attribute("data-edits") == want_tag)
  after = _decode(browser.find_element(By.CSS_SELECTOR, "img.base").get_attribute("src"))
  # Expected pixels: ss_jax.stylespace.manipulate's edit of seed 0 (psi 0.7) by ALPHA sigma of the channel
  # (seed -> S is checked against ss_jax.stylespace.stats in test_explorer_app.py).
  s0 = renderer.seed_styles(g, [0], 0.7)
  ref = images.to_uint8(manipulate.edited_images(g, s0, CHANNEL, [0.0, ALPHA], std))[:, 0]
  assert np.abs(before.astype(int) - ref[0]).max() <= 1
  assert np.abs(after.astype(int) - ref[1]).max() <= 1
  moved, moved_ref = np.abs(after.astype(int) - before).sum(-1) > 3, np.abs(ref[1].astype(int) - ref[0]).sum(-1) > 3
  assert moved_ref.any() and (moved == moved_ref).mean() > 0.99  # changed where the edit changes the image
  # Channel details and the |delta| map.
  wait.until(lambda d: d.find_elements(By.ID, "thumbnail"))
  browser.find_element(By.ID, "show-delta").click()
  wait.until(
    lambda d: (
      (d.find_element(By.CSS_SELECTOR, "img.layer-delta").get_attribute("src") or "").startswith("data:")
      and d.find_element(By.CSS_SELECTOR, "img.layer-delta").is_displayed()
    )
  )
  # Export, then replay the JSON with the manipulate binary in a fresh process.
  browser.find_element(By.ID, "export").click()
  wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#export-links a.export-png"))
  spec = json.loads(browser.execute_script("return document.getElementById('export-out').textContent"))
  exported = [_decode(a.get_attribute("href")) for a in browser.find_elements(By.CSS_SELECTOR, "a.export-png")]
  assert [e["channel"] for e in spec["edits"]] == [CHANNEL] and spec["edits"][0]["alpha"] == ALPHA
  assert [im["seed"] for im in spec["images"]] == [0, 1]
  np.testing.assert_array_equal(exported[0], after)  # the live image is the exported one
  (tmp / "edit.json").write_text(json.dumps(spec))
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # 1 device there, 4 fake ones here
  env["PYTHONPATH"] = REPO
  r = subprocess.run(
    [
      sys.executable,
      "-m",
      "experiments.manipulate",
      f"--edit={tmp / 'edit.json'}",
      f"--checkpoint={tmp / 'gen'}",
      f"--outdir={tmp / 'replay'}",
    ],
    cwd=REPO,
    capture_output=True,
    text=True,
    env=env,
    timeout=300,
  )
  assert r.returncode == 0, r.stderr[-2000:]
  from PIL import Image

  for i, x in enumerate(exported):
    np.testing.assert_array_equal(np.asarray(Image.open(tmp / "replay" / f"edit_{i}.png")), x)
  assert stylespace.parse_name(g.layout, CHANNEL) is not None
  print(f"browser test: {time.perf_counter() - t0:.1f} s")
