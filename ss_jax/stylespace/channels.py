"""Addressing S: flat index <-> "layer_channel" names <-> (layer, channel), channel masks.

A channel is named as in the paper, "L_C": L is the style layer's index in
generator order (toRGB layers counted), C the channel within that layer, e.g.
"6_202". Flat S is the concatenation of all layers' styles in that order.
"""

import re

import numpy as np

_NAME = re.compile(r"^\s*(\d+)_(\d+)\s*$")


def num_channels(layout):
  return layout[-1].offset + layout[-1].channels


def layer_of_flat(layout):
  """(C,) int32: style layer index of every flat S channel."""
  return np.concatenate([np.full(L.channels, L.index, np.int32) for L in layout])


def kind_mask(layout, include_torgb=False):
  """(C,) bool over flat S: True for the channels an analysis considers (conv, + toRGB if asked).

  StyleGAN3's input-layer style (kind "input", 4 values) is never considered.
  """
  return np.concatenate(
    [np.full(L.channels, L.kind == "conv" or (include_torgb and L.kind == "torgb")) for L in layout]
  )


def considered_indices(layout, include_torgb=False):
  """Flat S indices of the considered channels, in flat order (conv-only by default)."""
  return np.flatnonzero(kind_mask(layout, include_torgb))


def to_layer_channel(layout, flat):
  """Flat index (int or array) -> (layer, channel)."""
  flat = np.asarray(flat)
  total = num_channels(layout)
  if np.any(flat < 0) or np.any(flat >= total):
    raise ValueError(f"flat S index out of range [0, {total}): {flat}")
  offsets = np.array([L.offset for L in layout])
  layer = np.searchsorted(offsets, flat, side="right") - 1
  return layer, flat - offsets[layer]


def to_flat(layout, layer, channel):
  """(layer, channel) -> flat S index; a clear error for out-of-range values."""
  if not 0 <= layer < len(layout):
    raise ValueError(f"style layer {layer} out of range: this model has layers 0..{len(layout) - 1}")
  L = layout[layer]
  if not 0 <= channel < L.channels:
    raise ValueError(f"channel {channel} out of range for layer {layer} ({L.name}, {L.channels} channels)")
  return L.offset + channel


def parse_name(layout, name):
  """'6_202' -> flat S index."""
  m = _NAME.match(str(name))
  if not m:
    raise ValueError(f"bad channel name {name!r}: expected 'layer_channel', e.g. '6_202'")
  return to_flat(layout, int(m.group(1)), int(m.group(2)))


def parse_names(layout, names):
  """'6_202,9_11' or a list of names -> (K,) int flat indices."""
  if isinstance(names, str):
    names = [n for n in names.split(",") if n.strip()]
  if not names:
    raise ValueError("no channel names given")
  return np.array([parse_name(layout, n) for n in names], np.int64)


def name_of(layout, flat):
  """Flat index -> 'L_C'."""
  layer, ch = to_layer_channel(layout, int(flat))
  return f"{int(layer)}_{int(ch)}"


def names_of(layout, flats):
  return [name_of(layout, f) for f in np.asarray(flats).ravel()]
