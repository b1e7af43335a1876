"""Output folders never destroy user files; one writer per workdir; files honour the umask."""

import json
import os
import pathlib
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from ss_jax.runtime import jobs
from ss_jax.runtime import lock, outputs

REPO = pathlib.Path(__file__).resolve().parents[1]


def user_folder(path):
  """A folder of the user's own files (what a wrong OUT argument points at)."""
  path.mkdir(parents=True, exist_ok=True)
  (path / "notes.txt").write_text("my notes")
  (path / "results").mkdir(exist_ok=True)
  (path / "results" / "table.csv").write_text("a,b\n1,2\n")
  return path


def intact(path):
  return (path / "notes.txt").read_text() == "my notes" and (path / "results" / "table.csv").read_text() == "a,b\n1,2\n"


def env():
  return dict(os.environ, PYTHONPATH=str(REPO))


# ----------------------------------------------------------------------------- atomic_directory


def test_atomic_directory_refuses_user_files_and_needs_overwrite(tmp_path):
  user = user_folder(tmp_path / "user")
  with pytest.raises(outputs.OutputError, match="did not write"):
    with jobs.atomic_directory(user) as tmp:
      (tmp / "x").write_text("new")
  with pytest.raises(outputs.OutputError, match="did not write"):
    with jobs.atomic_directory(user, overwrite=True):
      pass
  assert intact(user) and sorted(p.name for p in tmp_path.iterdir()) == ["user"]  # no temp left

  out = tmp_path / "out"
  with jobs.atomic_directory(out) as tmp:
    (tmp / "x").write_text("1")
  assert outputs.has_marker(out) and (out / "x").read_text() == "1"
  with pytest.raises(outputs.OutputError, match="pass --overwrite"):
    with jobs.atomic_directory(out) as tmp:
      (tmp / "x").write_text("2")
  assert (out / "x").read_text() == "1"
  with jobs.atomic_directory(out, overwrite=True) as tmp:
    (tmp / "y").write_text("2")
  assert not (out / "x").exists() and (out / "y").read_text() == "2"
  assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "user"]

  (tmp_path / "empty").mkdir()
  with jobs.atomic_directory(tmp_path / "empty") as tmp:
    (tmp / "z").write_text("3")
  assert (tmp_path / "empty" / "z").read_text() == "3"


def test_atomic_directory_refuses_file_and_symlink(tmp_path):
  (tmp_path / "f").write_text("a file")
  with pytest.raises(outputs.OutputError, match="is a file"):
    with jobs.atomic_directory(tmp_path / "f"):
      pass
  user_folder(tmp_path / "target")
  (tmp_path / "link").symlink_to(tmp_path / "target")
  with pytest.raises(outputs.OutputError, match="symbolic link"):
    with jobs.atomic_directory(tmp_path / "link", overwrite=True):
      pass
  assert (tmp_path / "f").read_text() == "a file" and intact(tmp_path / "target")


def test_claim_workdirs(tmp_path):
  user = user_folder(tmp_path / "user")
  with pytest.raises(outputs.OutputError, match="did not write"):
    jobs.ShardedJob(user, "j", {}, 1, process_index=0, process_count=1)
  with pytest.raises(outputs.OutputError, match="did not write"):
    jobs.open_workdir(user)
  assert intact(user) and not (user / "j").exists() and not (user / lock.LOCK_NAME).exists()
  job = jobs.ShardedJob(tmp_path / "w", "j", {}, 1, process_index=0, process_count=1)
  job.write(0, x=np.zeros(2))
  assert outputs.has_marker(tmp_path / "w")
  lock.release()
  jobs.ShardedJob(tmp_path / "w", "j", {}, 1, process_index=0, process_count=1)  # resume: fine


def test_every_writer_refuses_user_folder(tmp_path):
  """Library writers: generator, face-parser and encoder directories, exports, reports."""
  import jax
  from ss_jax.parser import checkpoint
  from ss_jax import Generator, GeneratorConfig, save_generator
  from ss_jax.parser import bisenet
  from ss_jax.inversion import encoder
  from ss_jax.stylespace import report
  from ss_jax.inversion import encoder_trainer
  from ss_jax.train import loop

  user = user_folder(tmp_path / "user")
  g = Generator.random(
    GeneratorConfig(z_dim=8, w_dim=8, img_resolution=8, channels=(8, 8), mapping_layers=1), jax.random.PRNGKey(0)
  )
  writers = {
    "save_generator": lambda: save_generator(g, user),
    "bisenet": lambda: checkpoint.save_converted({}, bisenet.BiSeNetConfig(), user),
    "encoder": lambda: encoder.save_encoder(user, None, {}, None, "x"),
    "export generator": lambda: loop.export_latest(tmp_path / "no_run", user),
    "export encoder": lambda: encoder_trainer.export(tmp_path / "no_run", user, g),
    "report": lambda: report.write_report(user, {}, {}),
  }
  for name, write in writers.items():
    with pytest.raises(outputs.OutputError, match="did not write"):
      write()
    assert intact(user), name
  assert sorted(p.name for p in tmp_path.iterdir()) == ["user"]


def test_converter_cli_never_wipes_the_cwd(tmp_path, fixtures_dir):
  src = fixtures_dir / "stylegan2" / "n1" / "n1.pkl"
  user = user_folder(tmp_path / "cwd")
  run = lambda *a: subprocess.run(
    [sys.executable, "-m", "converters", *map(str, a)], cwd=user, capture_output=True, text=True, timeout=300, env=env()
  )
  p = run(src, ".")
  assert p.returncode == 1 and p.stderr.count("\n") == 1 and "did not write" in p.stderr
  assert intact(user) and sorted(x.name for x in user.iterdir()) == ["notes.txt", "results"]
  bis = fixtures_dir / "bisenet" / "bisenet_random_conv_out32_cudatag.pth"
  p = run(bis, "results")
  assert p.returncode == 1 and p.stderr.startswith("error: output folder results") and intact(user)


@pytest.mark.slow
def test_converter_cli_overwrite(tmp_path, fixtures_dir):
  """A previous converted directory is replaced only with --overwrite."""
  src = fixtures_dir / "stylegan2" / "n1" / "n1.pkl"
  run = lambda *a: subprocess.run(
    [sys.executable, "-m", "converters", *map(str, a)],
    cwd=tmp_path,
    capture_output=True,
    text=True,
    timeout=300,
    env=env(),
  )
  assert run(src, "conv").returncode == 0
  p = run(src, "conv")
  assert p.returncode == 1 and "pass --overwrite" in p.stderr
  assert run(src, "conv", "--overwrite").returncode == 0 and outputs.has_marker(tmp_path / "conv")


# ----------------------------------------------------------------------------- permissions


def test_files_honour_the_umask(tmp_path):
  old = os.umask(0o022)
  try:
    jobs.atomic_write_text(tmp_path / "a.txt", "x")
    from ss_jax.runtime import images

    images.save_png(tmp_path / "a.png", np.zeros((4, 4, 3), np.uint8))
    with jobs.atomic_directory(tmp_path / "d") as tmp:
      (tmp / "f").write_text("y")
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "a.png").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755
    os.umask(0o077)
    jobs.atomic_write_text(tmp_path / "b.txt", "x")
    assert (tmp_path / "b.txt").stat().st_mode & 0o777 == 0o600
  finally:
    os.umask(old)


# ----------------------------------------------------------------------------- locks


def test_lock_is_exclusive_and_stale_locks_are_reported(tmp_path, capsys):
  w = tmp_path / "w"
  path = lock.acquire(w)
  info = json.loads(path.read_text())
  assert info["pid"] == os.getpid() and info["host"] == socket.gethostname()
  assert lock.acquire(w) == path  # re-entrant in one process
  lock.release(w)
  assert not path.exists()
  # A live process elsewhere holds it.
  sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
  try:
    path.write_text(json.dumps({"pid": sleeper.pid, "host": socket.gethostname(), "started": "t"}))
    with pytest.raises(lock.WorkdirBusy, match=f"in use by process {sleeper.pid} on host"):
      lock.acquire(w)
  finally:
    sleeper.kill()
    sleeper.wait()
  # Its process is gone: stale, reported and taken over.
  lock.acquire(w)
  assert f"removed a stale lock left by process {sleeper.pid}" in capsys.readouterr().err
  assert json.loads(path.read_text())["pid"] == os.getpid()
  lock.release(w)
  path.write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": "t"}))
  with pytest.raises(lock.WorkdirBusy, match="on another host"):
    lock.acquire(w)


def test_claim_sees_a_marker_that_a_concurrent_claim_writes(tmp_path, monkeypatch):
  # Another run claiming the same new folder writes its marker just after this run looked for one:
  # the folder is then ss-jax's, not the user's (this once failed the race test below).
  d = tmp_path / "w"
  d.mkdir()
  real = outputs.has_marker

  def marker_written_after_the_check(directory):
    seen = real(directory)
    outputs.write_marker(directory, "workdir")
    return seen

  monkeypatch.setattr(outputs, "has_marker", marker_written_after_the_check)
  assert outputs.claim(d) == d
  (d / "user.txt").write_text("x")
  (d / outputs.MARKER).unlink()
  with pytest.raises(outputs.OutputError, match="did not write"):
    outputs.claim(d)


RACER = textwrap.dedent("""
    import sys, time
    import numpy as np
    from ss_jax.runtime import jobs
    workdir, value, start = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    while time.time() < start:
      time.sleep(0.001)
    try:
      job = jobs.ShardedJob(workdir, "j", {"value": value}, 1, process_index=0, process_count=1)
      time.sleep(0.3)  # the window in which the other run checks the settings
      job.write(0, x=np.full(3, value))
      assert job.read_all()["x"][0] == value
    except (jobs.SettingsMismatch, RuntimeError) as e:
      print(type(e).__name__)
      sys.exit(3)
    print("ok")
""")


def test_two_runs_with_different_settings_cannot_both_succeed(tmp_path):
  import time

  for trial in range(1):
    w = tmp_path / f"w{trial}"
    start = time.time() + 2.0
    procs = [
      subprocess.Popen(
        [sys.executable, "-c", RACER, str(w), str(v), str(start)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
      )
      for v in (1.0, 2.0)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 3], outs
    winner = [float(v) for v, p in zip((1.0, 2.0), procs) if p.returncode == 0][0]
    loser_said = [o[0].strip() for o, p in zip(outs, procs) if p.returncode == 3][0]
    assert loser_said in ("WorkdirBusy", "SettingsMismatch")
    assert json.loads((w / "j" / "spec.json").read_text())["value"] == winner
    assert jobs.load_npz(w / "j" / "shard_00000.npz")["x"][0] == winner
    assert not (w / lock.LOCK_NAME).exists()  # released at exit


# ----------------------------------------------------------------------------- settings and values


def test_nan_settings_compare_equal_and_nonfinite_shards_refused(tmp_path):
  jobs.ShardedJob(tmp_path, "j", {"psi": float("nan")}, 1, process_index=0, process_count=1)
  job = jobs.ShardedJob(tmp_path, "j", {"psi": float("nan")}, 1, process_index=0, process_count=1)
  with pytest.raises(jobs.NonFiniteError, match="'x' holds 1 NaN or infinite"):
    job.write(0, x=np.array([1.0, np.inf]), n=np.arange(2))
  assert not job.done(0)
  job.write(0, x=np.array([1.0, 2.0]))


def test_npz_with_pickles_is_one_clean_line(tmp_path):
  np.savez(tmp_path / "obj.npz", a=np.array([{"k": 1}], dtype=object))
  with pytest.raises(ValueError) as e:
    jobs.load_npz(tmp_path / "obj.npz")
  assert "pickled Python objects" in str(e.value) and "unsafely" not in str(e.value)
  import pickle

  (tmp_path / "p.npy").write_bytes(pickle.dumps([1, 2]))
  with pytest.raises(ValueError) as e:
    jobs.load_npz(tmp_path / "p.npy")
  assert "pickled Python objects" in str(e.value) and "unsafely" not in str(e.value)
  assert e.value.__context__ is None or e.value.__suppress_context__


def test_binaries_refuse_user_folders(tmp_path):
  """Image grids (generate --outdir) and exports (train_toyfaces --export) leave user files alone."""
  user = user_folder(tmp_path / "user")
  for args in (
    ["-m", "experiments.generate", "--seeds=0", f"--outdir={user}"],
    ["-m", "experiments.train_toyfaces", f"--workdir={tmp_path / 'run'}", f"--export={user}"],
  ):
    p = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=300, env=env())
    assert p.returncode == 1 and p.stderr.count("\n") == 1 and "did not write" in p.stderr, p.stderr[-2000:]
    assert intact(user) and sorted(x.name for x in user.iterdir()) == ["notes.txt", "results"]
  assert sorted(x.name for x in tmp_path.iterdir()) == ["user"]


def test_lock_copied_with_the_folder_is_stale(tmp_path, capsys):
  import shutil

  sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
  try:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / lock.LOCK_NAME).write_text(
      json.dumps(
        {"pid": sleeper.pid, "host": socket.gethostname(), "started": "t", "workdir": str((tmp_path / "a").resolve())}
      )
    )
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    with pytest.raises(lock.WorkdirBusy):
      lock.acquire(tmp_path / "a")  # the original: its live holder keeps it
    lock.acquire(tmp_path / "b")  # the copy: not that process's folder
    assert "copied with the folder from" in capsys.readouterr().err
  finally:
    sleeper.kill()
    sleeper.wait()
