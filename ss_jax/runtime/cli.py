"""The one wrapper of every command-line binary: flags checked up front, one-line errors.

  from ss_jax.runtime import cli
  cli.positive("batch_size", "num_samples")
  cli.seed("seed")
  cli.finite("psi")
  cli.needs_module("method", "gbt", "sklearn", "scikit-learn (pip install 'ss-jax[dci]')")
  ...
  if __name__ == "__main__":
    cli.run(main)

`run(main)` is `absl.app.run(main)` plus:
  * flag errors (unknown flag, bad value, a failed validator, a missing required flag)
    are one `error: ...` line, exit status 2, before any work starts;
  * any exception escaping `main` is one `error: ...` line and exit status 1 (OS errors
    name the file and the reason, e.g. "No space left on device"); Ctrl-C is
    `error: interrupted` and exit status 130. `--debug` or SS_JAX_DEBUG=1 shows the
    traceback instead;
  * library logging (absl, orbax, JAX) below WARNING, and JAX's note about backends it
    could not initialise, are hidden unless `--verbosity` is given (absl's own flag:
    0 shows INFO, 1 DEBUG).
The validators are absl flag validators, so they run while the flags are parsed.

Two helpers keep the binaries thin: `config_from_flags(Settings)` fills a library's settings
dataclass from the flags of the same names, and `with exit_on(ValueError, ...):` turns the
listed errors into one `error: <message>` line (exit status 1), the message as raised.
"""

import contextlib
import dataclasses
import importlib.util
import logging
import math
import os
import signal
import sys
import traceback

from absl import app, flags
from absl import logging as absl_logging

from ss_jax.runtime import seeds
from ss_jax.runtime.seeds import SEED_MAX

FLAGS = flags.FLAGS
DEBUG_ENV = "SS_JAX_DEBUG"
# Loggers that chat at INFO on every run (orbax on each save, JAX on backend set-up).
_NOISY_LOGGERS = ("absl", "orbax", "jax")
# JAX logs backends it could not initialise (e.g. TPU) as WARNING on some versions.
_BACKEND_LOGGER = "jax._src.xla_bridge"

if "debug" not in FLAGS:
  flags.DEFINE_bool("debug", False, f"Show the Python traceback of an error (also: {DEBUG_ENV}=1).")


# ----------------------------------------------------------------------------- validators


def _validator(names, ok, rule):
  for name in names:
    flags.register_validator(name, ok, message=f"--{name} must be {rule}")


def positive(*names):
  """Integer / float flags that must be > 0 (None, i.e. 'default', passes)."""
  _validator(names, lambda v: v is None or (v > 0 and math.isfinite(v)), "> 0")


def non_negative(*names):
  """Flags that must be >= 0 (None passes)."""
  _validator(names, lambda v: v is None or (v >= 0 and math.isfinite(v)), ">= 0")


def finite(*names):
  """Float flags that must be finite numbers (not nan / inf; None passes)."""
  _validator(names, lambda v: v is None or math.isfinite(v), "a finite number")


def seed(*names):
  """Integer seed flags: 0 .. 2**32 - 1 (what numpy's RandomState accepts)."""
  _validator(names, lambda v: v is None or 0 <= v <= SEED_MAX, f"an integer in 0..{SEED_MAX}")


def seed_span(seed_name, count_name):
  """Seeds seed .. seed + count - 1 (one per sample) must all be valid seeds."""
  flags.register_multi_flags_validator(
    [seed_name, count_name],
    lambda d: d[seed_name] is None or d[count_name] is None or d[seed_name] + d[count_name] - 1 <= SEED_MAX,
    message=f"--{seed_name} + --{count_name} - 1 must be at most {SEED_MAX} (sample i uses seed + i)",
  )


def seed_list(*names):
  """Seed-list flags such as '0-7,10': parsed with runtime.seeds.parse_seeds."""

  def ok(v):
    if v is None:
      return True
    try:
      seeds.parse_seeds(v)
    except ValueError as e:
      raise flags.ValidationError(str(e)) from None
    return True

  for name in names:
    flags.register_validator(name, ok)


def needs_module(name, value, module, what):
  """--name=value needs the importable `module` (an optional extra), checked up front."""

  def installed():
    try:
      return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # e.g. a module blocked with sys.modules[name] = None
      return False

  flags.register_validator(
    name, lambda v: v != value or installed(), message=f"--{name}={value} needs {what}, which is not installed"
  )


# ----------------------------------------------------------------------------- settings


def config_from_flags(cls, flag_values=None, **given):
  """An instance of the dataclass `cls` whose fields are the flags of the same names.

  given: values of fields that are not flags (or replace them). A field without a flag of its
  name is an error of the binary (KeyError), never silently left at a default.
  flag_values: default the binary's (absl's global FLAGS).
  """
  fv = FLAGS if flag_values is None else flag_values
  names = [f.name for f in dataclasses.fields(cls) if f.init and f.name not in given]
  return cls(**{name: fv[name].value for name in names}, **given)


# ----------------------------------------------------------------------------- errors


@contextlib.contextmanager
def exit_on(*errors):
  """`with exit_on(ValueError, ...):` one of `errors` ends the binary with `error: <message>` (status 1).

  For the errors a binary expects (bad input, a refused resume): the message as raised, without
  the traceback even under --debug.
  """
  try:
    yield
  except errors as e:
    sys.exit(f"error: {e}")


def one_line(text) -> str:
  """Collapses whitespace runs (newlines included) so a message stays on one line."""
  return " ".join(str(text).split())


def describe(e: BaseException) -> str:
  """One line for an exception: OS errors as 'reason: file', others as their message."""
  if isinstance(e, OSError) and e.strerror:
    files = [str(f) for f in (e.filename, e.filename2) if f is not None]
    return one_line(f"{e.strerror}: {' -> '.join(files)}" if files else e.strerror)
  if isinstance(e, MemoryError):
    return "out of memory"
  text = one_line(str(e)) or type(e).__name__
  if isinstance(e, (ValueError, OSError, RuntimeError)):  # our errors: the message says it all
    return text
  return f"{type(e).__name__}: {text} (run with --debug for the traceback)"


def debugging() -> bool:
  try:
    flag = bool(FLAGS.debug)
  except flags.UnparsedFlagAccessError:
    flag = False
  return flag or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def quiet_logging():
  """Hides library logging below WARNING unless --verbosity was given."""
  if "verbosity" in FLAGS and FLAGS["verbosity"].present:
    return
  absl_logging.set_verbosity(absl_logging.WARNING)
  for name in _NOISY_LOGGERS:
    logging.getLogger(name).setLevel(logging.WARNING)
  logging.getLogger(_BACKEND_LOGGER).setLevel(logging.ERROR)


class StopRequest:
  """Ctrl-C / SIGTERM set a flag instead of raising, so a trainer can checkpoint and stop.

  stop = cli.StopRequest()
  train(..., should_stop=stop)  # polled between steps
  stop.exit_if_interrupted()     # after Ctrl-C: one line, exit status 130
  """

  def __init__(self, signals=(signal.SIGINT, signal.SIGTERM)):
    self.signal = None
    for sig in signals:
      signal.signal(sig, self._handle)

  def _handle(self, signum, frame):
    del frame
    self.signal = signum

  def __call__(self) -> bool:
    return self.signal is not None

  def exit_if_interrupted(self):
    if self.signal == signal.SIGINT:
      print("error: interrupted (the state is saved: rerun the same command to continue)", file=sys.stderr)
      sys.exit(130)


def _parse_flags(argv):
  try:
    return FLAGS(argv)
  except flags.Error as e:
    if debugging():
      traceback.print_exc()
    print(f"error: {one_line(str(e))}", file=sys.stderr)
    sys.exit(2)


def call(main, argv):
  """Runs main(argv) with the one-line error handling of `run` (flags already parsed)."""
  quiet_logging()
  try:
    return main(argv)
  except KeyboardInterrupt:
    if debugging():
      traceback.print_exc()
    print("error: interrupted", file=sys.stderr)
    sys.exit(130)
  except Exception as e:  # pylint: disable=broad-except
    if debugging():
      raise
    print(f"error: {describe(e)}", file=sys.stderr)
    sys.exit(1)


def run(main):
  """absl.app.run(main) with flag errors and failures as one line (see module doc)."""
  try:
    app.run(lambda argv: call(main, argv), flags_parser=_parse_flags)
  except KeyboardInterrupt:  # during start-up, outside main
    print("error: interrupted", file=sys.stderr)
    sys.exit(130)
