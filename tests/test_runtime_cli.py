"""ss_jax.runtime.cli: every failure of a binary is one `error:` line and a non-zero status.

Flag problems are refused while parsing (status 2, before any work), failures inside
main are one line (status 1), Ctrl-C is status 130; --debug / SS_JAX_DEBUG=1 show the
traceback. Library logging is quiet unless --verbosity asks for it.
"""

import dataclasses
import errno
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


def run(args, cwd=REPO, env_extra=None, timeout=300):
  env = dict(os.environ, PYTHONPATH=str(REPO))
  env.pop("SS_JAX_DEBUG", None)
  env.update(env_extra or {})
  return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def one_error_line(p, status, *fragments):
  assert p.returncode == status, (p.returncode, p.stderr[-3000:])
  lines = p.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr[-3000:]
  assert "Traceback" not in p.stderr
  for f in fragments:
    assert f in lines[0], lines[0]
  return lines[0]


# Runs cli.run on a main given as source; argv after '--'.
SCRIPT = """
import sys
from absl import flags
from ss_jax.runtime import cli
{body}
if __name__ == "__main__":
  cli.run(main)
"""


def run_main(tmp_path, body, *argv, env_extra=None):
  script = tmp_path / "prog.py"
  script.write_text(SCRIPT.format(body=textwrap.dedent(body)))
  return run([str(script), *argv], env_extra=env_extra)


SLOW = pytest.mark.slow
BAD_FLAGS = [
  (["-m", "experiments.generate", "--psi=nan"], "--psi must be a finite number"),
  (["-m", "experiments.style_stats", "--workdir=x", "--seed=4294967296"], "0..4294967295"),
  (["-m", "experiments.attribute_channels", "--stats=s", "--workdir=x", "--draws=0"], "--draws must be > 0"),
  pytest.param(["-m", "experiments.generate", "--seeds=0-4294967296"], "seeds are 0..4294967295", marks=SLOW),
  pytest.param(["-m", "experiments.generate", "--batch_size=0"], "--batch_size must be > 0", marks=SLOW),
  pytest.param(["-m", "experiments.style_stats", "--workdir=x", "--seed=-1"], "0..4294967295", marks=SLOW),
  pytest.param(
    ["-m", "experiments.report", "--workdir=x", "--outdir=y", "--num_images=0"], "--num_images must be > 0", marks=SLOW
  ),
  pytest.param(
    ["-m", "experiments.train_toyfaces", "--workdir=x", "--batch_size=0"], "--batch_size must be > 0", marks=SLOW
  ),
  pytest.param(["-m", "experiments.invert", "--images=x", "--workdir=y", "--seed=-3"], "--seed must be", marks=SLOW),
  pytest.param(["-m", "experiments.dci", "--workdir=x", "--num_samples=0"], "--num_samples must be > 0", marks=SLOW),
  pytest.param(
    ["-m", "experiments.dci", "--workdir=x", "--seed=4294967290", "--num_samples=10"],
    "--seed + --num_samples - 1 must be at most 4294967295",
    marks=SLOW,
  ),
  pytest.param(
    ["-m", "experiments.generate", "--no_such_flag"], "Unknown command line flag 'no_such_flag'", marks=SLOW
  ),
  pytest.param(["-m", "experiments.invert", "--images=x"], "--workdir", marks=SLOW),
]


@pytest.mark.parametrize("args,fragment", BAD_FLAGS)
def test_bad_flags_one_line_before_any_work(tmp_path, args, fragment):
  p = run(args, cwd=tmp_path)
  one_error_line(p, 2, fragment)
  assert list(tmp_path.iterdir()) == []  # nothing created: no workdir, no outdir


def test_poisoned_workdir_impossible(tmp_path):
  """--batch_size=0 is refused before the trainer records its settings."""
  p = run(["-m", "experiments.train_encoder", f"--workdir={tmp_path / 'w'}", "--batch_size=0"])
  one_error_line(p, 2, "--batch_size")
  assert not (tmp_path / "w").exists()


def test_optional_dependency_checked_up_front(tmp_path):
  script = tmp_path / "no_sklearn.py"
  script.write_text(
    textwrap.dedent("""
      import runpy, sys
      sys.modules["sklearn"] = None  # as if scikit-learn were not installed
      sys.argv = ["dci", "--workdir=" + sys.argv[1], "--method=gbt"]
      runpy.run_module("experiments.dci", run_name="__main__")
  """)
  )
  p = run([str(script), str(tmp_path / "w")])
  one_error_line(p, 2, "--method=gbt needs scikit-learn")
  assert not (tmp_path / "w").exists()


def call(capsys, main, *argv):
  """cli.call in this process: (exit status, stderr)."""
  from ss_jax.runtime import cli

  with pytest.raises(SystemExit) as e:
    cli.call(main, ["prog", *argv])
  return e.value.code, capsys.readouterr().err


def test_os_errors_one_line(tmp_path, capsys, monkeypatch):
  from ss_jax.runtime import jobs

  target = tmp_path / "out.txt"

  def read_only(argv):
    raise PermissionError(errno.EACCES, "Permission denied", str(target))

  assert call(capsys, read_only) == (1, f"error: Permission denied: {target}\n")

  def full(fd):
    raise OSError(errno.ENOSPC, "No space left on device")

  monkeypatch.setattr(os, "fsync", full)  # the disk fills up while writing
  assert call(capsys, lambda argv: jobs.atomic_write_text(target, "data")) == (
    1,
    f"error: No space left on device: {target}\n",
  )
  assert list(tmp_path.iterdir()) == []  # no temporary file left


def test_interrupt_and_unexpected_errors(capsys, monkeypatch):
  def interrupted(argv):
    raise KeyboardInterrupt

  assert call(capsys, interrupted) == (130, "error: interrupted\n")

  def bug(argv):
    return {}["missing"]

  status, err = call(capsys, bug)
  assert status == 1 and err == "error: KeyError: 'missing' (run with --debug for the traceback)\n"
  monkeypatch.setenv("SS_JAX_DEBUG", "1")
  with pytest.raises(KeyError):
    from ss_jax.runtime import cli

    cli.call(bug, ["prog"])


def test_converter_disk_full_is_one_line(tmp_path, fixtures_dir):
  script = tmp_path / "full.py"
  script.write_text(
    textwrap.dedent("""
      import errno, os, runpy, sys
      def full(src, dst, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(src), None, str(dst))
      os.replace = full
      sys.argv = ["converters"] + sys.argv[1:]
      runpy.run_module("converters", run_name="__main__")
  """)
  )
  out = tmp_path / "conv"
  p = run([str(script), str(fixtures_dir / "stylegan2/n1/n1.pkl"), str(out)])
  one_error_line(p, 1, "No space left on device")
  assert sorted(x.name for x in tmp_path.iterdir()) == ["full.py"]  # temporary folder removed


def test_output_path_is_file_or_symlink(tmp_path, fixtures_dir):
  src = str(fixtures_dir / "stylegan2/n1/n1.pkl")
  (tmp_path / "file").write_text("mine")
  one_error_line(run(["-m", "converters", src, str(tmp_path / "file")]), 1, "is a file")
  (tmp_path / "dir").mkdir()
  (tmp_path / "link").symlink_to(tmp_path / "dir")
  one_error_line(run(["-m", "converters", src, str(tmp_path / "link")]), 1, "symbolic link")
  assert (tmp_path / "file").read_text() == "mine" and list((tmp_path / "dir").iterdir()) == []


@pytest.mark.slow
def test_interrupt_signal_is_exit_130(tmp_path):
  body = """
      import os, signal, time
      def main(argv):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)
  """
  one_error_line(run_main(tmp_path, body), 130, "interrupted")


@pytest.mark.slow
def test_debug_flag_shows_traceback(tmp_path):
  body = """
      def main(argv):
        {}["missing"]
  """
  one_error_line(run_main(tmp_path, body), 1, "KeyError", "--debug")
  p = run_main(tmp_path, body, "--debug")
  assert p.returncode != 0 and "Traceback" in p.stderr and "KeyError" in p.stderr


def test_logging_quiet_unless_verbosity(tmp_path):
  body = """
      import logging
      from absl import logging as absl_logging
      def main(argv):
        absl_logging.info("absl info line")
        logging.getLogger("orbax").info("orbax info line")
        logging.getLogger("jax._src.xla_bridge").warning("Unable to initialize backend 'tpu'")
        absl_logging.warning("a real warning")
        print("done")
  """
  p = run_main(tmp_path, body)
  assert p.returncode == 0 and p.stdout == "done\n"
  assert "info line" not in p.stderr and "tpu" not in p.stderr and "a real warning" in p.stderr
  p = run_main(tmp_path, body, "--verbosity=0")
  assert "absl info line" in p.stderr and "orbax info line" in p.stderr


def test_generate_run_is_quiet_and_writes_readable_files(tmp_path):
  out = tmp_path / "gen"
  p = run(["-m", "experiments.generate", "--seeds=0-1", "--batch_size=2", f"--outdir={out}"])
  assert p.returncode == 0, p.stderr
  assert p.stderr == "", p.stderr  # no orbax / absl INFO lines, no TPU backend line
  assert sorted(x.name for x in out.iterdir()) == [".ss-jax-output", "grid.png", "seed0000.png", "seed0001.png"]
  umask = os.umask(0)
  os.umask(umask)
  assert (out / "grid.png").stat().st_mode & 0o777 == 0o666 & ~umask


def test_nan_weights_refused_naming_the_tensor():
  from converters.common import TensorSource
  from converters.io import CheckpointError

  src = TensorSource({"a.weight": np.array([1.0, np.inf])}, "ckpt.pkl")
  with pytest.raises(CheckpointError, match="ckpt.pkl: tensor 'a.weight' holds 1 NaN or infinite"):
    src.get("a.weight")


@pytest.mark.slow
def test_nan_weights_in_converted_directory_refused(tmp_path):
  import jax

  from ss_jax import Generator, GeneratorConfig, load_generator, save_generator

  g = Generator.random(
    GeneratorConfig(z_dim=8, w_dim=8, img_resolution=8, channels=(8, 8), mapping_layers=1), jax.random.PRNGKey(0)
  )
  params = jax.tree.map(np.asarray, g.params)
  leaves, treedef = jax.tree_util.tree_flatten(params)
  leaves[3] = leaves[3].copy()
  leaves[3].flat[0] = np.nan
  bad = Generator(jax.tree_util.tree_unflatten(treedef, leaves), g.buffers, g.config)
  save_generator(bad, tmp_path / "bad")
  with pytest.raises(ValueError, match=r"tensor \[.*\] holds NaN or infinite values"):
    load_generator(tmp_path / "bad")


def test_images_refuse_nan():
  from ss_jax.runtime import images

  with pytest.raises(ValueError, match="NaN or infinite"):
    images.to_uint8(np.full((1, 2, 2, 3), np.nan))


def test_oserror_description():
  from ss_jax.runtime import cli

  e = OSError(errno.ENOSPC, "No space left on device", "/x/out.npz")
  assert cli.describe(e) == "No space left on device: /x/out.npz"
  assert cli.describe(ValueError("bad\nthing")) == "bad thing"
  assert cli.describe(MemoryError()) == "out of memory"


def test_stop_request_checkpoints_then_exits_130(capsys):
  import signal

  from ss_jax.runtime import cli

  saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
  try:
    stop = cli.StopRequest()
    assert not stop()
    stop.exit_if_interrupted()  # not interrupted: nothing happens
    os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C: no KeyboardInterrupt, the trainer polls stop()
    assert stop()
    with pytest.raises(SystemExit) as e:
      stop.exit_if_interrupted()
    assert e.value.code == 130 and capsys.readouterr().err.startswith("error: interrupted (the state is saved")
  finally:
    for s, h in saved.items():
      signal.signal(s, h)


def test_exit_on_gives_the_raised_message_and_lets_others_through(capsys):
  from ss_jax.runtime import cli, jobs

  def missing(argv):
    with cli.exit_on(ValueError, jobs.ShardsMissing):
      raise jobs.ShardsMissing("wd/job: 2 shard(s) not done")

  with pytest.raises(SystemExit) as e:
    cli.call(missing, ["prog"])
  assert e.value.code == "error: wd/job: 2 shard(s) not done"  # sys.exit(text): status 1, text on stderr

  def other(argv):
    with cli.exit_on(ValueError):
      raise KeyError("k")

  assert call(capsys, other) == (1, "error: KeyError: 'k' (run with --debug for the traceback)\n")


def test_config_from_flags_fills_fields_from_flags_of_their_names():
  from absl import flags
  from ss_jax.runtime import cli

  fv = flags.FlagValues()
  flags.DEFINE_integer("num", 3, "n", flag_values=fv)
  flags.DEFINE_list("alphas", ["1", "2"], "a", flag_values=fv)
  fv(["prog", "--num=5"])

  @dataclasses.dataclass(frozen=True)
  class Settings:
    num: int
    alphas: list
    extra: str

  assert cli.config_from_flags(Settings, fv, extra="x") == Settings(5, ["1", "2"], "x")
  assert cli.config_from_flags(Settings, fv, extra="x", num=7).num == 7
  with pytest.raises(KeyError):  # a field without its flag is the binary's bug, not a silent default
    cli.config_from_flags(Settings, fv)
