"""Seed lists as users write them ('0-7,10'): parsing and the valid range (numpy's RandomState)."""

import re

SEED_MAX = 2**32 - 1  # numpy.random.RandomState accepts 0 .. 2**32 - 1


def parse_seeds(spec):
  """'0-7' / '1,4,10-12' -> list of ints (ranges inclusive, each seed in 0 .. SEED_MAX)."""
  seeds = []
  for part in str(spec).split(","):
    part = part.strip()
    m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
    if not m:
      raise ValueError(f"bad seed spec {spec!r}: use e.g. '0-7' or '1,4,10-12'")
    a, b = int(m.group(1)), int(m.group(2) or m.group(1))
    if b < a:
      raise ValueError(f"bad seed range {part!r}: end before start")
    if b > SEED_MAX:
      raise ValueError(f"seed {b} out of range: seeds are 0..{SEED_MAX}")
    seeds.extend(range(a, b + 1))
  return seeds
