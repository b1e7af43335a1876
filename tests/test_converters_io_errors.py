"""Truncated, garbage and empty files give one CheckpointError naming the file."""

import pickle

import pytest

from converters import io as sio

_FIXTURES = {
  "n1": ("stylegan2/n1/n1.pkl", sio.read_nvidia_pickle),
  "n2": ("stylegan2/n2/n2.pkl", sio.read_nvidia_pickle),
  "t1": ("stylegan2/t1/t1.pkl", sio.read_tf_pickle),
  "r1": ("stylegan2/r1/r1.pt", sio.read_torch_file),
  "bisenet": ("bisenet/bisenet_random.pth", sio.read_torch_file),
  "cudatag": ("bisenet/bisenet_random_conv_out32_cudatag.pth", sio.read_torch_file),
}
_READERS = [sio.read_nvidia_pickle, sio.read_tf_pickle, sio.read_torch_file, sio.sniff_format]


def _assert_checkpoint_error(read, path):
  with pytest.raises(sio.CheckpointError) as info:
    read(path)
  message = str(info.value)
  assert str(path) in message and "\n" not in message, message
  return message


@pytest.mark.parametrize("name", sorted(_FIXTURES))
def test_truncated_fixture(fixtures_dir, tmp_path, name):
  rel, read = _FIXTURES[name]
  data = (fixtures_dir / rel).read_bytes()
  path = tmp_path / ("half_" + rel.rsplit("/", 1)[1])
  path.write_bytes(data[: len(data) // 2])
  _assert_checkpoint_error(read, path)


@pytest.mark.parametrize("name", ["cudatag", "bisenet"])
def test_legacy_truncated_inside_storage_records(fixtures_dir, tmp_path, name):
  data = (fixtures_dir / _FIXTURES[name][0]).read_bytes()
  path = tmp_path / "short.pth"
  path.write_bytes(data[:-3])
  assert "truncated" in _assert_checkpoint_error(sio.read_torch_file, path)


@pytest.mark.parametrize("read", _READERS, ids=lambda f: f.__name__)
def test_garbage_and_empty(tmp_path, read):
  garbage = tmp_path / "garbage.pkl"
  garbage.write_bytes(bytes(range(256)) * 4)
  _assert_checkpoint_error(read, garbage)
  empty = tmp_path / "empty.pkl"
  empty.write_bytes(b"")
  _assert_checkpoint_error(read, empty)
  # A valid pickle header followed by junk.
  junk = tmp_path / "junk.pkl"
  junk.write_bytes(b"\x80\x04\x95\xff\xff\xff\xff\x00\x00\x00\x00}\x94(")
  _assert_checkpoint_error(read, junk)


def test_wrong_kind_of_checkpoint(fixtures_dir, tmp_path):
  tf_pkl = fixtures_dir / "stylegan2/t1/t1.pkl"
  assert "expected a dict of persistent networks" in _assert_checkpoint_error(sio.read_nvidia_pickle, tf_pkl)
  assert "expected a tuple of dnnlib.tflib.network.Network" in _assert_checkpoint_error(
    sio.read_tf_pickle, fixtures_dir / "stylegan2/n1/n1.pkl"
  )
  assert "is not a torch.save file" in _assert_checkpoint_error(sio.read_torch_file, tf_pkl)
  plain = tmp_path / "plain.pkl"
  plain.write_bytes(pickle.dumps({"a": [1, 2]}, 4))
  message = _assert_checkpoint_error(sio.sniff_format, plain)
  for fmt in ("nvidia_pkl", "tf_pkl", "torch_zip", "torch_legacy"):
    assert fmt in message
