"""The shipped ToyFaces generator: loads, varies (not collapsed), and is closer to renders than noise."""

import jax
import numpy as np
import pytest

from ss_jax.runtime import defaults
from ss_jax.stylegan2.checkpoint import load_generator
from ss_jax.stylegan2.generator import Generator
from ss_jax.toyfaces import models
from ss_jax.toyfaces.eval import quality


@pytest.fixture(scope="module")
def shipped():
  return load_generator(defaults.default_checkpoint()), models.load_classifier(), models.load_segmenter()


def test_generated_attributes_vary(shipped):
  g, classifier, _ = shipped
  imgs = quality.generated_uint8(g, 128, psi=1.0)
  assert imgs.shape == (128, 64, 64, 3) and imgs.std(axis=0).mean() > 20
  logits = classifier.classify(imgs)
  reliable = classifier.reliable()
  rates = (logits[:, reliable] > 0).mean(axis=0)
  # Every reliably-read attribute takes both values among 128 samples: no mode collapse.
  assert ((rates > 0.03) & (rates < 0.97)).all(), dict(zip(np.array(classifier.attribute_names)[reliable], rates))


def test_quality_orders_generated_between_renders_and_random(shipped):
  g, classifier, segmenter = shipped
  rep = quality.quality_report(g, Generator.random(g.config, jax.random.PRNGKey(0)), classifier, segmenter, num=192)
  fd = rep["frechet_distance"]
  assert fd["renders_b vs renders_a"] < fd["generated vs renders_a"] < fd["random_init vs renders_a"]
  areas = rep["part_areas"]
  assert abs(areas["background"]["diff"]) < 0.05 and abs(areas["hair"]["diff"]) < 0.05
  assert "| generated |" in quality.format_report(rep)
