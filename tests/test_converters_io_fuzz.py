"""Fuzzing the checkpoint readers with mutated shared fixtures (deterministic seeds).

Each case mutates one fixture file (bit flips, truncation, spliced pickle opcodes,
copied segments, altered zip directory fields) and feeds it to format detection, the
matching reader and, for some cases, the full converter. Every call must either load
or raise the project's `CheckpointError`, within a few seconds and without growing the
process's peak memory by a gigabyte. The default suite runs a few hundred cases; the
slow marker runs thousands.
"""

import pathlib
import resource
import struct
import time

import numpy as np
import pytest

from converters import io as sio

SEED = 15
MAX_SECONDS = 5.0
MAX_EXTRA_RSS_MB = 1024

# (fixture path, reader) with the number of default cases per fixture.
FIXTURES = [
  ("bisenet/bisenet_random_conv_out32_cudatag.pth", "read_torch_file", 100),
  ("stylegan2/t1/t1.pkl", "read_tf_pickle", 50),
  ("stylegan2/r1/r1.pt", "read_torch_file", 70),
  ("stylegan2/n1/n1.pkl", "read_nvidia_pickle", 40),
  ("stylegan3/s1/s1.pkl", "read_nvidia_pickle", 40),
]
# Pickle opcodes worth splicing in (containers, memo, globals, reduce/build, big lengths).
_OPCODES = [
  b"(",
  b"t",
  b"l",
  b"d",
  b"}",
  b"]",
  b")",
  b"R",
  b"b",
  b"s",
  b"u",
  b"a",
  b"e",
  b"0",
  b"2",
  b"\x85",
  b"\x86",
  b"\x87",
  b"\x81",
  b"\x92",
  b"\x93",
  b"\x94",
  b"h\x00",
  b"j\xff\xff\xff\x7f",
  b"q\x00",
  b"r\xff\xff\xff\xff",
  b"\x8c\x05numpy",
  b"\x8c\x05dtype",
  b"cos\nsystem\n",
  b"X\xff\xff\xff\x7f",
  b"B\xff\xff\xff\x7f",
  b"\x8e" + b"\xff" * 8,
  b"\x95" + b"\xff" * 8,
  b"J\xff\xff\xff\xff",
  b"\x8a\x08" + b"\xff" * 8,
  b"N",
  b"\x88",
  b".",
  b"P",
  b"Q",
]


def _zip_directory(data):
  """Offsets of the central-directory records of a zip (empty for other files)."""
  out, pos = [], data.find(b"PK\x01\x02")
  while pos >= 0:
    out.append(pos)
    pos = data.find(b"PK\x01\x02", pos + 4)
  return out


def _alter_zip(data, rng):
  """Rewrites one field of a central-directory record or of the end record."""
  records = _zip_directory(data)
  buf = bytearray(data)
  if not records or rng.random() < 0.2:
    end = data.rfind(b"PK\x05\x06")
    if end < 0:
      return bytes(buf)
    field = int(rng.choice([8, 10, 12, 16]))  # entries on disk, entries, cd size, cd offset
    width = 2 if field < 12 else 4
    value = int(rng.choice([0, 1, 0xFFFF if width == 2 else 0xFFFFFFFF, rng.integers(0, 1 << (8 * width))]))
    buf[end + field : end + field + width] = value.to_bytes(width, "little")
    return bytes(buf)
  rec = int(rng.choice(records))
  # method, crc, compressed size, uncompressed size, name length, extra length, local header offset
  field, width = [(10, 2), (16, 4), (20, 4), (24, 4), (28, 2), (30, 2), (42, 4)][rng.integers(7)]
  old = int.from_bytes(buf[rec + field : rec + field + width], "little")
  value = int(rng.choice([0, 8, 12, 14, 99, old + 1, max(old - 1, 0), old * 1000, (1 << (8 * width)) - 1]))
  buf[rec + field : rec + field + width] = (value % (1 << (8 * width))).to_bytes(width, "little")
  return bytes(buf)


def mutate(data: bytes, rng) -> tuple:
  """(kind, mutated bytes): one random mutation of `data`."""
  n = len(data)
  # Structure sits at the ends (pickle header / zip directory); tensor bytes in between.
  pos = lambda: (
    int(rng.integers(0, n))
    if rng.random() < 0.4
    else int(rng.choice([rng.integers(0, min(n, 4096)), rng.integers(max(0, n - 4096), n)]))
  )
  kind = str(rng.choice(["flip", "truncate", "splice", "copy", "zipdir"]))
  if kind == "flip":
    buf = bytearray(data)
    for _ in range(int(rng.integers(1, 9))):
      i = pos()
      buf[i] ^= 1 << int(rng.integers(8))
    return kind, bytes(buf)
  if kind == "truncate":
    return kind, data[: pos()]
  if kind == "splice":
    i = pos()
    op = _OPCODES[int(rng.integers(len(_OPCODES)))]
    drop = int(rng.integers(0, 3))
    return kind, data[:i] + op + data[i + drop :]
  if kind == "copy":
    a, b = sorted((pos(), pos()))
    i = pos()
    return kind, data[:i] + data[a:b][:65536] + data[i:]
  return kind, _alter_zip(data, rng)


def _max_rss_mb():
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_cases(fixtures_dir, tmp_path, counts, seed, convert_every=5):
  from ss_jax.stylegan2.checkpoint import load_checkpoint  # the full path: detection, reader, converter

  rng = np.random.default_rng(seed)
  rss0 = _max_rss_mb()
  outcomes = {"loaded": 0, "refused": 0}
  slowest = (0.0, None)
  case = 0
  for (rel, reader, _), count in zip(FIXTURES, counts):
    data = (fixtures_dir / rel).read_bytes()
    for _ in range(count):
      kind, bad = mutate(data, rng)
      path = tmp_path / f"case{case % 4}{pathlib.Path(rel).suffix}"
      path.write_bytes(bad)
      calls = [sio.sniff_format, getattr(sio, reader)]
      if case % convert_every == 0:
        calls.append(load_checkpoint)
      for fn in calls:
        t = time.time()
        try:
          fn(path)
          outcomes["loaded"] += 1
        except sio.CheckpointError as e:
          assert "\n" not in str(e)
          outcomes["refused"] += 1
        except Exception as e:  # pylint: disable=broad-except
          raise AssertionError(
            f"case {case} ({rel}, {kind}, seed {seed}): {fn.__name__} raised {type(e).__name__}: {e}"
          ) from e
        dt = time.time() - t
        slowest = max(slowest, (dt, f"case {case} {rel} {kind} {fn.__name__}"), key=lambda x: x[0])
        assert dt < MAX_SECONDS, f"case {case} ({rel}, {kind}): {fn.__name__} took {dt:.1f}s"
      case += 1
  assert _max_rss_mb() - rss0 < MAX_EXTRA_RSS_MB
  return outcomes, slowest


def test_fuzz_readers(fixtures_dir, tmp_path):
  outcomes, slowest = run_cases(fixtures_dir, tmp_path, [c for _, _, c in FIXTURES], SEED)
  assert outcomes["refused"] > 100 and outcomes["loaded"] > 50, outcomes  # both paths exercised
  print(outcomes, slowest)


@pytest.mark.slow
def test_fuzz_readers_thousands(fixtures_dir, tmp_path):
  outcomes, slowest = run_cases(fixtures_dir, tmp_path, [10 * c for _, _, c in FIXTURES], SEED + 1, convert_every=3)
  print(outcomes, slowest)


def test_zip_directory_mutation_changes_the_directory(fixtures_dir):
  """The zip mutator really alters directory fields of the torch zip fixture."""
  data = (fixtures_dir / "stylegan2/r1/r1.pt").read_bytes()
  rng = np.random.default_rng(SEED)
  assert len(_zip_directory(data)) > 10
  changed = [_alter_zip(data, rng) != data for _ in range(20)]
  assert sum(changed) >= 15
  end = data.rfind(b"PK\x05\x06")
  assert struct.unpack("<H", data[end + 10 : end + 12])[0] == len(_zip_directory(data))
