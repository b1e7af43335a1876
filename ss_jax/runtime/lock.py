"""One writer per workdir: a lock file holding the writer's process id and host.

`acquire(workdir)` creates WORKDIR/.ss-jax.lock with O_EXCL, so of two runs started
together on one workdir exactly one gets it; the other is refused with one line naming
the holder. The lock is held until the process exits (or `release`). A lock left by a
process that is no longer running on this host, or copied along with the folder from
another path, is stale: it is reported on stderr and taken over. A lock from another host cannot be checked from here; the message says
which host and process to look for, and to delete the file if that run is gone.
Within one process the lock is re-entrant (several jobs may share a workdir).
"""

import atexit
import json
import os
import pathlib
import socket
import sys
import time

LOCK_NAME = ".ss-jax.lock"
_held = {}  # resolved workdir -> lock path, for this process


class WorkdirBusy(RuntimeError):
  """Another live run holds the workdir's lock."""


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # exists, owned by someone else
    return True
  return True


def _read(path):
  try:
    return json.loads(pathlib.Path(path).read_text())
  except (OSError, ValueError):
    return None


def _describe(info):
  if not isinstance(info, dict):
    return "an unreadable lock"
  return f"process {info.get('pid')} on host {info.get('host')} (since {info.get('started')})"


def acquire(workdir, stream=None):
  """Takes WORKDIR's lock for this process (re-entrant); raises WorkdirBusy if held."""
  stream = stream or sys.stderr
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  key = str(workdir.resolve())
  if key in _held:
    return _held[key]
  path = workdir / LOCK_NAME
  host = socket.gethostname()
  me = {"pid": os.getpid(), "host": host, "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "workdir": key}
  for _ in range(5):
    try:
      fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError:
      info = _read(path)
      if info is None:  # being written this instant, or garbage: look again shortly
        time.sleep(0.05)
        info = _read(path)
      ours = isinstance(info, dict) and info.get("host") == host
      copied = isinstance(info, dict) and info.get("workdir") not in (None, key)
      if ours and info.get("pid") == os.getpid():  # this process's own lock
        pathlib.Path(path).write_text(json.dumps(me) + "\n")
        _held[key] = path
        return path
      if copied or (ours and isinstance(info.get("pid"), int) and not _alive(info["pid"])):
        # Stale: move it aside atomically (only one contender wins the rename), retry.
        aside = path.with_name(f"{LOCK_NAME}.stale-{os.getpid()}")
        try:
          os.replace(path, aside)
        except FileNotFoundError:
          continue
        if _read(aside) != info:  # a live lock taken meanwhile: put it back, look again
          try:
            os.link(aside, path)
          except FileExistsError:
            pass
          os.remove(aside)
          continue
        os.remove(aside)
        why = f"copied with the folder from {info.get('workdir')}" if copied else "which is no longer running"
        print(f"warning: {workdir}: removed a stale lock left by {_describe(info)}, {why}", file=stream)
        continue
      where = "" if ours else " (on another host: if that run is gone, delete the lock file)"
      raise WorkdirBusy(f"{workdir} is in use by {_describe(info)}{where}; lock file {path}")
    with os.fdopen(fd, "w") as f:
      f.write(json.dumps(me) + "\n")
    _held[key] = path
    return path
  raise WorkdirBusy(f"{workdir}: could not take the lock {path} (contended)")


def release(workdir=None):
  """Releases this process's lock on `workdir` (all of them when None)."""
  keys = list(_held) if workdir is None else [str(pathlib.Path(workdir).resolve())]
  for key in keys:
    path = _held.pop(key, None)
    if path is None:
      continue
    info = _read(path)
    if isinstance(info, dict) and info.get("pid") == os.getpid():
      try:
        os.remove(path)
      except FileNotFoundError:
        pass


atexit.register(release)
