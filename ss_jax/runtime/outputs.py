"""Output folders that never destroy a user's files.

Every folder ss-jax writes (converted checkpoints, exports, workdirs, reports, image
grids) carries a marker file, `.ss-jax-output`, written when ss-jax created or first
claimed the folder. A folder without that marker that holds anything is the user's:
ss-jax refuses to write into it. Replacing a previous ss-jax output as a whole (a
converted directory, an export) needs `overwrite=True` (the binaries' `--overwrite`);
adding to one (resuming a workdir, rewriting a report) does not.

Files are published with the permissions the umask allows (0666 & ~umask for files,
0777 & ~umask for folders), like any other program's output.
"""

import json
import os
import pathlib
import socket
import time

MARKER = ".ss-jax-output"


class OutputError(ValueError):
  """An output path cannot be used (user files, a file or link in the way, ...)."""


def _umask() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return mask


def file_mode() -> int:
  """Mode of a newly published file: 0666 less the process umask."""
  return 0o666 & ~_umask()


def dir_mode() -> int:
  """Mode of a newly published folder: 0777 less the process umask."""
  return 0o777 & ~_umask()


def has_marker(directory) -> bool:
  return (pathlib.Path(directory) / MARKER).is_file()


def write_marker(directory, kind="output"):
  """Marks `directory` as written by ss-jax (kind: 'output', 'workdir', 'report', ...)."""
  info = {
    "tool": "ss-jax",
    "kind": kind,
    "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    "host": socket.gethostname(),
    "pid": os.getpid(),
  }
  path = pathlib.Path(directory) / MARKER
  with open(path, "w") as f:
    f.write(json.dumps(info) + "\n")


def check_target(directory, overwrite=False, flag="--overwrite"):
  """Raises OutputError unless `directory` may be replaced by a new ss-jax output.

  Allowed: a missing path, an empty folder, or (with overwrite) a folder holding the
  ss-jax marker. Refused with one line: a file or symbolic link at the path, a folder
  with the user's files, a previous ss-jax output without overwrite.
  """
  d = pathlib.Path(directory)
  if d.is_symlink():
    raise OutputError(f"output {d} is a symbolic link; give a real folder path")
  if not d.exists():
    return
  if not d.is_dir():
    raise OutputError(f"output {d} exists and is a file, not a folder")
  if not any(d.iterdir()):
    return
  if not has_marker(d):
    raise OutputError(
      f"output folder {d} already holds files that ss-jax did not write; "
      "refusing to touch them (choose a new or empty folder)"
    )
  if not overwrite:
    raise OutputError(f"output folder {d} holds a previous ss-jax output; pass {flag} to replace it")


def claim(directory, kind="workdir"):
  """Creates or reuses `directory` for ss-jax files added over time (workdirs, reports).

  A missing or empty folder is created and marked; a folder that carries the marker is
  reused (a resumed job, a rewritten report); anything else raises OutputError.
  Returns the path.
  """
  d = pathlib.Path(directory)
  if d.is_symlink() and not d.is_dir():
    raise OutputError(f"{d} is a symbolic link to nothing usable")
  if d.exists() and not d.is_dir():
    raise OutputError(f"{d} exists and is a file, not a folder")
  # One listing decides: checking the marker and then the contents apart would refuse a folder whose
  # marker another run claiming it at the same moment wrote between the two checks.
  names = {p.name for p in d.iterdir()} if d.is_dir() else set()
  if MARKER in names:
    return d
  if names:
    raise OutputError(
      f"folder {d} already holds files that ss-jax did not write; refusing to "
      "write into it (choose a new or empty folder; a workdir of an older ss-jax "
      f"can be marked with: touch {d / MARKER})"
    )
  d.mkdir(parents=True, exist_ok=True)
  write_marker(d, kind)
  return d
