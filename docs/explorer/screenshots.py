"""Takes the README's explorer screenshots (headless Chromium + Selenium) from a running explorer.

python -m experiments.explore --port=8765 &          # shipped ToyFaces model, no workdir
python docs/explorer/screenshots.py http://127.0.0.1:8765/ docs/explorer
"""

import pathlib
import sys
import tempfile
import time

from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait


def shot(d, path, width=1100):
  d.execute_script("window.scrollTo(0, 0)")
  time.sleep(0.5)
  d.save_screenshot(str(path))
  im = Image.open(path).convert("RGB")
  im = im.resize((width, round(im.height * width / im.width)), Image.LANCZOS)
  im.quantize(colors=192, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


def main(url, outdir):
  out = pathlib.Path(outdir)
  o = webdriver.ChromeOptions()
  o.binary_location = "/usr/bin/chromium"
  for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,820", "--disable-dev-shm-usage"):
    o.add_argument(a)
  d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=o)
  wait = WebDriverWait(d, 300)
  d.get(url)
  wait.until(
    lambda d: (
      "measuring" not in d.find_element(By.ID, "catalogue-note").text
      and d.find_elements(By.CSS_SELECTOR, ".channel-item")
    )
  )
  seeds = d.find_element(By.ID, "seeds")
  seeds.clear()
  seeds.send_keys("0,1,2")
  d.find_element(By.ID, "load-seeds").click()
  Select(d.find_element(By.ID, "category")).select_by_value("hair")
  item = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".channel-item"))[0]
  name = item.get_attribute("data-name")
  item.click()
  slider = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, f'input[type=range][data-name="{name}"]'))
  for _ in range(16):
    slider.send_keys(Keys.RIGHT)
  d.find_element(By.ID, "show-outline").click()
  wait.until(lambda d: d.find_element(By.ID, "thumbnail"))
  time.sleep(4)
  shot(d, out / "overview.png")
  d.find_element(By.ID, "show-delta").click()
  d.find_element(By.ID, "search").send_keys("6_113")
  wait.until(lambda d: d.find_element(By.CSS_SELECTOR, '.channel-item[data-name="6_113"]')).click()
  s2 = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, 'input[type=range][data-name="6_113"]'))
  for _ in range(12):
    s2.send_keys(Keys.LEFT)
  time.sleep(5)
  shot(d, out / "delta_outline.png")
  d.find_element(By.ID, "show-delta").click()
  from ss_jax.toyfaces import render  # an unseen render to upload

  img = render.render([40_000_123])[0][0]
  with tempfile.TemporaryDirectory() as tmp:
    p = pathlib.Path(tmp) / "face.png"
    Image.fromarray(img).save(p)
    d.find_element(By.ID, "upload-file").send_keys(str(p))
    d.find_element(By.ID, "upload-btn").click()
    wait.until(lambda d: "inverted" in d.find_element(By.ID, "upload-msg").text)
  time.sleep(5)
  shot(d, out / "upload.png")
  d.quit()


if __name__ == "__main__":
  main(sys.argv[1], sys.argv[2])
