"""S addressing: names, flat indices, masks and their errors."""

import numpy as np
import pytest

from ss_jax.stylespace import channels as stylespace
from ss_jax.stylegan2.generator import config_f
from ss_jax.stylegan2.config import style_layout

LAYOUT = style_layout(config_f(1024))


def test_roundtrip_and_paper_names():
  assert stylespace.num_channels(LAYOUT) == 9088
  flat = stylespace.parse_name(LAYOUT, "6_202")
  assert flat == LAYOUT[6].offset + 202
  assert stylespace.name_of(LAYOUT, flat) == "6_202"
  idx = np.arange(0, 9088, 97)
  layer, ch = stylespace.to_layer_channel(LAYOUT, idx)
  assert [stylespace.to_flat(LAYOUT, int(l), int(c)) for l, c in zip(layer, ch)] == idx.tolist()
  np.testing.assert_array_equal(stylespace.parse_names(LAYOUT, "6_202, 9_11"), [flat, LAYOUT[9].offset + 11])


def test_masks():
  conv = stylespace.considered_indices(LAYOUT)
  assert len(conv) == 6048
  assert len(stylespace.considered_indices(LAYOUT, include_torgb=True)) == 9088
  layers = stylespace.layer_of_flat(LAYOUT)[conv]
  assert all(LAYOUT[l].kind == "conv" for l in np.unique(layers))


@pytest.mark.parametrize(
  "name,match",
  [
    ("6-202", "bad channel name"),
    ("26_0", "layer 26 out of range"),
    ("6_512", "channel 512 out of range"),
    ("", "no channel names"),
  ],
)
def test_bad_names(name, match):
  with pytest.raises(ValueError, match=match):
    stylespace.parse_names(LAYOUT, name)
