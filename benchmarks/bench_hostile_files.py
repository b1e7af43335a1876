"""Time and peak memory of the readers on two small hostile checkpoints (issue 15).

  python -m benchmarks.bench_hostile_files                       # this checkout
  python -m benchmarks.bench_hostile_files --pythonpath=/tmp/old # another checkout, to compare

Files (built here, in a temporary folder):
  memo.pkl  ~460 bytes: an NVIDIA-style pickle whose module state nests a shared list
            `[x, x]` forty levels deep (2**40 leaves if expanded instead of shared);
  bomb.pt   ~1 MB: a torch zip whose data.pkl inflates to 1 GiB of zeros.
Each is given to `ss_jax.stylegan2.checkpoint.load_checkpoint` in a fresh process (limited to --timeout
seconds and --max_gb of address space); the row shows the wall time, the peak resident
memory (ru_maxrss) and the first 120 characters of the outcome.
"""

import argparse
import contextlib
import json
import os
import pathlib
import pickle
import struct
import subprocess
import sys
import tempfile
import types
import zlib

REPO = pathlib.Path(__file__).resolve().parents[1]
PROBE = """
import json, resource, sys, time
from ss_jax.stylegan2.checkpoint import load_checkpoint
t = time.time()
try:
  load_checkpoint(sys.argv[1])
  out = "loaded"
except Exception as e:
  out = type(e).__name__ + ": " + str(e)
print(json.dumps({"result": out, "seconds": time.time() - t,
                  "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


@contextlib.contextmanager
def persistence_module():
  """Registers a stand-in `torch_utils.persistence` so pickle can name its function."""
  pkg, mod = types.ModuleType("torch_utils"), types.ModuleType("torch_utils.persistence")

  def _reconstruct_persistent_obj(meta):  # only pickled by name, never called
    raise AssertionError(meta)

  _reconstruct_persistent_obj.__module__ = mod.__name__
  _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
  mod._reconstruct_persistent_obj = _reconstruct_persistent_obj
  pkg.persistence = mod
  saved = {k: sys.modules.get(k) for k in (pkg.__name__, mod.__name__)}
  sys.modules.update({pkg.__name__: pkg, mod.__name__: mod})
  try:
    yield _reconstruct_persistent_obj
  finally:
    for k, v in saved.items():
      if v is None:
        sys.modules.pop(k, None)
      else:
        sys.modules[k] = v


def nested_module_pickle(levels=40, shared=True) -> bytes:
  """An NVIDIA-style pickle {'G_ema': module} whose state nests lists `levels` deep.

  shared: each level is [x, x] (the same list twice, a memo reference); else [x].
  """
  with persistence_module() as fn:

    class Persistent:
      def __reduce__(self):
        x = []
        for _ in range(levels):
          x = [x, x] if shared else [x]
        meta = {
          "type": "class",
          "version": 6,
          "module_src": "",
          "class_name": "Generator",
          "state": {"_parameters": {}, "_buffers": {}, "_modules": {}, "payload": x},
        }
        return fn, (meta,)

    return pickle.dumps({"G_ema": Persistent()}, 4)


def zip_bytes(members) -> bytes:
  """A zip of (name, raw deflate data, declared size, crc) members, written field by field."""
  out, central = bytearray(), bytearray()
  for name, data, size, crc in members:
    n = name.encode()
    offset = len(out)
    out += struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 8, 0, 0x21, crc, len(data), size, len(n), 0)
    out += n + data
    central += (
      struct.pack(
        "<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 8, 0, 0x21, crc, len(data), size, len(n), 0, 0, 0, 0, 0, offset
      )
      + n
    )
  start = len(out)
  out += central + struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(members), len(members), len(central), start, 0)
  return bytes(out)


def zeros_deflate(gib=1):
  """(raw deflate of `gib` GiB of zeros, size, crc32), ~1 MB per GiB, built in about a second.

  Each 1 MiB piece ends with a full flush (no back-references), so pieces repeat exactly.
  """
  c = zlib.compressobj(9, zlib.DEFLATED, -15)
  mib = b"\0" * (1 << 20)
  piece = c.compress(mib) + c.flush(zlib.Z_FULL_FLUSH)
  crc = 0
  for _ in range(1024 * gib):
    crc = zlib.crc32(mib, crc)
  return piece * (1024 * gib) + c.flush(), (1 << 30) * gib, crc


def zip_bomb(gib=1) -> bytes:
  data, size, crc = zeros_deflate(gib)
  return zip_bytes([("archive/data.pkl", data, size, crc)])


def probe(path, pythonpath, timeout, max_gb):
  env = dict(os.environ, PYTHONPATH=str(pythonpath))
  limit = int(max_gb * (1 << 30))

  def cap():
    import resource  # pylint: disable=g-import-not-at-top

    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

  try:
    p = subprocess.run(
      [sys.executable, "-c", PROBE, str(path)],
      capture_output=True,
      text=True,
      timeout=timeout,
      env=env,
      cwd=pythonpath,
      preexec_fn=cap,
    )
  except subprocess.TimeoutExpired:
    return {"result": f"still running after {timeout} s (killed)", "seconds": timeout, "max_rss_mb": None}
  lines = p.stdout.strip().splitlines()
  if p.returncode or not lines:
    return {
      "result": f"exit status {p.returncode}: {p.stderr.strip().splitlines()[-1:]}",
      "seconds": None,
      "max_rss_mb": None,
    }
  return json.loads(lines[-1])


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--pythonpath", default=str(REPO), help="checkout whose readers are measured")
  ap.add_argument("--timeout", type=float, default=40.0)
  ap.add_argument("--max_gb", type=float, default=4.0, help="address-space limit of each probe")
  args = ap.parse_args()
  with tempfile.TemporaryDirectory() as d:
    files = {"memo.pkl": nested_module_pickle(), "bomb.pt": zip_bomb()}
    print(f"{'file':9} {'bytes':>9} {'seconds':>8} {'peak MB':>8}  outcome")
    for name, data in files.items():
      path = pathlib.Path(d) / name
      path.write_bytes(data)
      r = probe(path, args.pythonpath, args.timeout, args.max_gb)
      sec = "-" if r["seconds"] is None else f"{r['seconds']:.2f}"
      mem = "-" if r["max_rss_mb"] is None else f"{r['max_rss_mb']:.0f}"
      print(f"{name:9} {len(data):>9,} {sec:>8} {mem:>8}  {r['result'][:120]}")


if __name__ == "__main__":
  main()
