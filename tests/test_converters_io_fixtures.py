"""converters.io readers on the shared reference checkpoints (keys, shapes, dtypes, values)."""

import json
import zipfile

import numpy as np
import pytest

from converters import io as sio


def _meta(fixtures_dir, name):
  return json.loads((fixtures_dir / "stylegan2" / name / "meta.json").read_text())


@pytest.fixture(scope="module")
def nvidia(fixtures_dir):
  return {name: sio.read_nvidia_pickle(fixtures_dir / "stylegan2" / name / f"{name}.pkl") for name in ("n1", "n2")}


@pytest.mark.parametrize("name", ["n1", "n2"])
def test_nvidia_g_ema_matches_meta(nvidia, fixtures_dir, name):
  meta = _meta(fixtures_dir, name)
  ckpt = nvidia[name]
  assert list(ckpt) == ["training_set_kwargs", "G", "D", "G_ema", "augment_pipe"]
  g_ema = ckpt["G_ema"]
  assert isinstance(g_ema, sio.TorchModule)
  assert g_ema.class_name == "Generator"
  state = g_ema.state_dict()
  # Same keys in the same (torch) order, same shapes.
  assert list(state) == list(meta["g_ema_tensors"])
  assert {k: list(v.shape) for k, v in state.items()} == meta["g_ema_tensors"]
  assert all(v.dtype == np.float32 and v.flags.c_contiguous for v in state.values())
  assert g_ema.init_kwargs == meta["G_kwargs"]
  assert g_ema.init_args == ()
  ref = np.load(fixtures_dir / "stylegan2" / name / "ref.npz")
  np.testing.assert_array_equal(state["mapping.w_avg"], ref["w_avg"])


def test_nvidia_module_attrs_and_submodule(nvidia):
  g_ema = nvidia["n1"]["G_ema"]
  conv1 = g_ema.submodule("synthesis.b4.conv1")
  assert conv1.class_name == "SynthesisLayer"
  assert conv1 is g_ema.children["synthesis"].children["b4"].children["conv1"]
  assert conv1.attrs["resolution"] == 4 and conv1.attrs["conv_clamp"] == 256
  assert set(conv1.params) == {"weight", "noise_strength", "bias", "resample_filter", "noise_const"}
  assert conv1.params["noise_strength"].shape == ()
  affine = conv1.submodule("affine")
  assert type(affine.attrs["weight_gain"]) is float  # numpy float64 scalar in the file.
  assert affine.attrs["weight_gain"] == pytest.approx(1 / np.sqrt(64))
  assert not any("hook" in k for _, m in g_ema.named_modules() for k in m.attrs)
  assert g_ema.submodule("") is g_ema
  with pytest.raises(KeyError, match="b1024"):
    g_ema.submodule("synthesis.b1024")
  # The non-EMA generator differs (it is G_ema plus noise).
  g = nvidia["n1"]["G"]
  assert not np.array_equal(g.state_dict()["mapping.fc0.weight"], g_ema.state_dict()["mapping.fc0.weight"])
  assert nvidia["n1"]["D"].class_name == "Discriminator"
  assert nvidia["n2"]["G_ema"].init_kwargs["c_dim"] == 3


def test_rosinality_zip(fixtures_dir):
  path = fixtures_dir / "stylegan2" / "r1" / "r1.pt"
  meta = _meta(fixtures_dir, "r1")
  ckpt = sio.read_torch_file(path)
  assert list(ckpt) == meta["checkpoint_keys"]
  assert type(ckpt["g_ema"]) is dict  # OrderedDict state dicts become plain dicts.
  assert list(ckpt["g_ema"]) == list(meta["g_ema_tensors"])
  assert {k: list(v.shape) for k, v in ckpt["g_ema"].items()} == meta["g_ema_tensors"]
  ref = np.load(fixtures_dir / "stylegan2" / "r1" / "ref.npz")
  np.testing.assert_array_equal(ckpt["latent_avg"], ref["w_avg"])
  # Independent path: the raw storage members, read with np.frombuffer.
  with zipfile.ZipFile(path) as zf:
    assert sorted(zf.namelist()) == sorted(meta["zip_members"])
    members = {zf.read(n): n for n in zf.namelist() if n.startswith("r1/data/")}
  raw = ckpt["latent_avg"].tobytes()
  assert raw in members
  np.testing.assert_array_equal(np.frombuffer(raw, "<f4"), ref["w_avg"])
  assert all(v.tobytes() in members for v in ckpt["g_ema"].values())


def test_tf_pickle(fixtures_dir):
  meta = _meta(fixtures_dir, "t1")
  nets = sio.read_tf_pickle(fixtures_dir / "stylegan2" / "t1" / "t1.pkl")
  assert [n.name for n in nets] == ["G", "D", "Gs"]
  gs = nets[2]
  assert (gs.version, gs.build_func_name) == (4, "G_main")
  assert list(gs.components) == ["synthesis", "mapping"]
  assert gs.components["synthesis"].build_func_name == "G_synthesis_stylegan2"
  assert gs.static_kwargs == meta["networks"]["Gs"]["static_kwargs"]
  variables = gs.all_variables()
  assert list(variables) == list(meta["tf_variables"]["Gs"])
  assert {k: list(v.shape) for k, v in variables.items()} == meta["tf_variables"]["Gs"]
  assert all(isinstance(v, np.ndarray) and v.dtype == np.float32 for v in variables.values())
  for name in meta["tf_scalar_variables"]:
    assert variables[name].shape == ()
  assert variables["lod"] == 0
  ref = np.load(fixtures_dir / "stylegan2" / "t1" / "ref.npz")
  np.testing.assert_array_equal(gs.variables["dlatent_avg"], ref["w_avg"])
  assert list(nets[1].components) == []


def test_bisenet_legacy_and_cuda_tagged(fixtures_dir):
  bisenet = fixtures_dir / "bisenet"
  keys = json.loads((bisenet / "keys.json").read_text())
  full = sio.read_torch_file(bisenet / "bisenet_random.pth")
  assert [(k, list(v.shape), str(v.dtype)) for k, v in full.items()] == [
    (e["key"], e["shape"], e["dtype"]) for e in keys
  ]
  nbt = full["cp.resnet.bn1.num_batches_tracked"]
  assert nbt.shape == () and nbt.dtype == np.int64 and int(nbt) == 80000
  assert sum(v.size for v in full.values()) == 13313119
  cuda = sio.read_torch_file(bisenet / "bisenet_random_conv_out32_cudatag.pth")
  meta = json.loads((bisenet / "meta.json").read_text())
  assert list(cuda) == meta["cuda_tagged_subset"]["keys"]
  for key, value in cuda.items():
    assert value.dtype == full[key].dtype
    np.testing.assert_array_equal(value, full[key])


@pytest.mark.parametrize(
  "rel,fmt",
  [
    ("stylegan2/n1/n1.pkl", "nvidia_pkl"),
    ("stylegan2/n2/n2.pkl", "nvidia_pkl"),
    ("stylegan2/t1/t1.pkl", "tf_pkl"),
    ("stylegan2/r1/r1.pt", "torch_zip"),
    ("bisenet/bisenet_random.pth", "torch_legacy"),
    ("bisenet/bisenet_random_conv_out32_cudatag.pth", "torch_legacy"),
  ],
)
def test_sniff_format(fixtures_dir, rel, fmt):
  assert sio.sniff_format(fixtures_dir / rel) == fmt
