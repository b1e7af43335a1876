"""The README's Python blocks run as written: the generator contract on the shipped ToyFaces model."""

import pathlib
import re

import numpy as np
import pytest

from ss_jax.runtime import defaults
from ss_jax.stylegan2.config import GeneratorConfig

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_readme_shows_the_contract():
  assert any("ss_jax.load_generator(path)" in b and "ss_jax.gradient_maps(" in b for b in BLOCKS)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_python_block_runs(index):
  path = defaults.default_checkpoint()
  cfg = GeneratorConfig.from_dict(__import__("json").loads((path / "config.json").read_text())["config"])
  z = np.random.RandomState(0).randn(1, cfg.z_dim).astype(np.float32)
  ns = {"path": path, "z": z}
  code = compile(BLOCKS[index], f"README.md python block {index}", "exec")  # every block is valid Python
  if BLOCKS[index].startswith("# needs "):  # says what it needs that the test cannot have (a user's file)
    return
  exec(code, ns)  # pylint: disable=exec-used
  if "x" in ns:  # the contract block: shapes from the config, not from the code under test
    convs = [L for L in ns["g"].layout if L.kind == "conv"]
    assert np.shape(ns["ws"]) == (1, cfg.num_ws, cfg.w_dim)
    assert [np.shape(v) for v in ns["s"]] == [(1, L.channels) for L in ns["g"].layout]
    assert np.shape(ns["x"]) == (1, cfg.img_resolution, cfg.img_resolution, cfg.img_channels)
    assert np.shape(ns["maps"]) == (1, sum(L.channels for L in convs), 32, 32)
    assert np.isfinite(np.asarray(ns["maps"])).all() and float(np.max(ns["maps"])) > 0
