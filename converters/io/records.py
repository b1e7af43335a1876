"""Plain records for the network objects stored in NVIDIA pickles.

`TorchModule` stands for a `torch_utils.persistence` module of a stylegan2-ada-pytorch /
stylegan3 pickle and `TFNetwork` for a `dnnlib.tflib.network.Network` of a StyleGAN2
TensorFlow pickle. Both hold numpy arrays and plain Python values only; the module
source stored next to them is dropped, never executed.
"""

import dataclasses

import numpy as np

from converters.io import limits
from converters.io.errors import CheckpointError
from converters.io.standins import StandIn

# Keys of a torch module `__dict__` that are not plain attributes.
_MODULE_INTERNALS = frozenset(
  [
    "_parameters",
    "_buffers",
    "_modules",
    "_non_persistent_buffers_set",
    "_init_args",
    "_init_kwargs",
    "_is_full_backward_hook",
  ]
)


def _pythonize(value, memo=None, depth=0):
  """numpy scalars -> Python scalars, recursively through dicts, lists and tuples.

  Shared containers are converted once and stay shared (memo by id), so a value that
  references one list twice at each of many levels costs linear, not exponential,
  work; nesting deeper than limits.MAX_DEPTH is refused.
  """
  if isinstance(value, np.generic):
    return value.item()
  if not isinstance(value, (dict, list, tuple)):
    return value
  memo = {} if memo is None else memo
  if id(value) in memo:
    return memo[id(value)][1]
  if depth > limits.MAX_DEPTH:
    raise CheckpointError(f"refused: attributes nested deeper than {limits.MAX_DEPTH} levels")
  fn = lambda v: _pythonize(v, memo, depth + 1)
  if isinstance(value, dict):
    out = {k: fn(v) for k, v in value.items()}
  else:
    out = type(value)(fn(v) for v in value)
  memo[id(value)] = (value, out)  # keeps value alive so its id is not reused meanwhile
  return out


def _summary(items: dict) -> str:
  names = list(items)
  return ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")


@dataclasses.dataclass(eq=False, slots=True)
class TorchModule:
  """One `torch.nn.Module` of an NVIDIA network pickle, as data.

  Attributes:
    class_name: e.g. 'Generator', 'SynthesisLayer'.
    params: own `_parameters` then `_buffers` (None entries skipped), name -> array
      (float32 for NVIDIA weights; shapes as in torch, e.g. conv weight [out, in, k, k]).
    children: submodules from `_modules`, in registration order.
    attrs: other attributes of the module `__dict__` (numpy scalars as Python scalars,
      e.g. weight_gain, conv_clamp, up, architecture, in_channels, is_last, use_fp16,
      training); hook dicts are skipped.
    init_args: positional constructor arguments (`_init_args`).
    init_kwargs: keyword constructor arguments (`_init_kwargs`, EasyDicts as dicts).
    non_persistent_buffers: buffer names torch leaves out of `state_dict()`.
  """

  class_name: str
  params: dict
  children: dict
  attrs: dict
  init_args: tuple = ()
  init_kwargs: dict = dataclasses.field(default_factory=dict)
  non_persistent_buffers: frozenset = frozenset()

  def state_dict(self, prefix: str = "") -> dict:
    """Flat `{dotted_name: array}` in torch order (own tensors, then children)."""
    out = {prefix + k: v for k, v in self.params.items() if k not in self.non_persistent_buffers}
    for name, child in self.children.items():
      out.update(child.state_dict(f"{prefix}{name}."))
    return out

  def submodule(self, path: str) -> "TorchModule":
    """The module at a dotted path such as 'synthesis.b4.conv1' ('' is self)."""
    module = self
    for part in path.split(".") if path else ():
      if part not in module.children:
        raise KeyError(
          f"{module.class_name} has no submodule {part!r} (path {path!r}); children: {_summary(module.children)}"
        )
      module = module.children[part]
    return module

  def named_modules(self, prefix: str = ""):
    """Yields (dotted_path, module) for self and all descendants, depth first."""
    yield prefix, self
    for name, child in self.children.items():
      yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

  def __repr__(self):
    return f"TorchModule({self.class_name}, params=[{_summary(self.params)}], children=[{_summary(self.children)}])"


def torch_module_from_meta(meta) -> TorchModule:
  """Builds a TorchModule from the finalized `_reconstruct_persistent_obj` meta dict."""
  class_name = meta.get("class_name")
  state = meta.get("state")
  if not isinstance(class_name, str) or not isinstance(state, dict):
    raise CheckpointError(
      "persistent object meta needs a str 'class_name' and a dict "
      f"'state', found {type(class_name).__name__} and "
      f"{type(state).__name__}"
    )
  params = {}
  for group in ("_parameters", "_buffers"):
    tensors = state.get(group) or {}
    if not isinstance(tensors, dict):
      raise CheckpointError(f"{class_name}.{group} is a {type(tensors).__name__}, not a dict")
    for name, value in tensors.items():
      if value is None:
        continue
      if not isinstance(value, np.ndarray):
        raise CheckpointError(f"{class_name}.{group}[{name!r}] is a {type(value).__name__}, not a tensor")
      params[name] = value
  children = {}
  for name, child in (state.get("_modules") or {}).items():
    if child is None:
      continue
    if not isinstance(child, TorchModule):
      raise CheckpointError(f"submodule {name!r} of {class_name} is a {type(child).__name__}, not a persistent module")
    children[name] = child
  memo = {}
  attrs = {k: _pythonize(v, memo) for k, v in state.items() if k not in _MODULE_INTERNALS and "hook" not in k}
  init_args = state.get("_init_args", ())
  init_kwargs = state.get("_init_kwargs", {})
  if not isinstance(init_args, (tuple, list)) or not isinstance(init_kwargs, dict):
    raise CheckpointError(f"{class_name}: _init_args / _init_kwargs are not a tuple / dict")
  return TorchModule(
    class_name=class_name,
    params=params,
    children=children,
    attrs=attrs,
    init_args=tuple(_pythonize(list(init_args), memo)),
    init_kwargs=_pythonize(init_kwargs, memo),
    non_persistent_buffers=frozenset(state.get("_non_persistent_buffers_set") or ()),
  )


class PersistentObjStandIn(StandIn):
  """Result of `_reconstruct_persistent_obj(meta)`; finalizes to a TorchModule."""

  __slots__ = ("meta",)

  def __init__(self, meta):
    self.meta = meta

  def finalize(self, fn):
    return torch_module_from_meta(fn(self.meta))


def reconstruct_persistent_obj(meta):
  """Stand-in for `torch_utils.persistence._reconstruct_persistent_obj`.

  `meta['module_src']` is ignored: the checkpoint's code is never executed.
  """
  if not isinstance(meta, dict):
    raise CheckpointError(f"persistent object meta is a {type(meta).__name__}, not a dict")
  if meta.get("type") != "class":
    raise CheckpointError(f"persistent object of type {meta.get('type')!r:.40}: only 'class' objects are supported")
  return PersistentObjStandIn(meta)


@dataclasses.dataclass(eq=False, slots=True)
class TFNetwork:
  """One `dnnlib.tflib.network.Network` of a StyleGAN2 TensorFlow pickle, as data.

  Attributes:
    name: network name, e.g. 'Gs', 'G_synthesis', 'G_mapping'.
    static_kwargs: keyword arguments of the build function.
    components: sub-networks by key ('synthesis', 'mapping' for generators).
    variables: own variables in TF creation order, name -> array (float32; 0-d numpy
      scalars such as `lod` or `noise_strength` as 0-d arrays). TF layouts: conv
      [k, k, in, out], dense [in, out].
    build_func_name: module-relative name of the build function, e.g. 'G_main'.
    version: pickle format version of the network state (4 for StyleGAN2).
  """

  name: str
  static_kwargs: dict
  components: dict
  variables: dict
  build_func_name: str
  version: int

  def all_variables(self, prefix: str = "") -> dict:
    """Own variables, then each component's as '<component key>/<name>'."""
    out = {prefix + k: v for k, v in self.variables.items()}
    for key, component in self.components.items():
      out.update(component.all_variables(f"{prefix}{key}/"))
    return out

  def __repr__(self):
    return (
      f"TFNetwork({self.name}, build_func_name={self.build_func_name!r}, "
      f"variables=[{_summary(self.variables)}], "
      f"components=[{_summary(self.components)}])"
    )


def tf_network_from_state(state) -> TFNetwork:
  """Builds a TFNetwork from a finalized `Network.__getstate__` dict (versions 2-4)."""
  version = state.get("version")
  if type(version) is not int or not 2 <= version <= 4:
    raise CheckpointError(f"unsupported TF network state version {version!r:.20} (expected 2, 3 or 4)")
  name = state.get("name")
  static_kwargs = state.get("static_kwargs", {})
  components = state.get("components", {})
  build_func_name = state.get("build_func_name", "")
  if not (
    isinstance(name, str)
    and isinstance(static_kwargs, dict)
    and isinstance(components, dict)
    and isinstance(build_func_name, str)
  ):
    raise CheckpointError("TF network state has malformed name / static_kwargs / components / build_func_name")
  for key, comp in components.items():
    if not isinstance(comp, TFNetwork):
      raise CheckpointError(f"component {key!r} of TF network {name!r} is a {type(comp).__name__}, not a network")
  variables = {}
  for item in state.get("variables", []):
    if not (
      isinstance(item, (tuple, list))
      and len(item) == 2
      and isinstance(item[0], str)
      and isinstance(item[1], (np.ndarray, np.generic))
    ):
      raise CheckpointError(f"TF network {name!r}: variables must be (name, array) pairs")
    if item[0] in variables:
      raise CheckpointError(f"TF network {name!r}: duplicate variable {item[0]!r}")
    variables[item[0]] = np.asarray(item[1]) if isinstance(item[1], np.generic) else item[1]
  return TFNetwork(
    name=name,
    static_kwargs=_pythonize(static_kwargs),
    components=dict(components),
    variables=variables,
    build_func_name=build_func_name,
    version=version,
  )


class TFNetworkStandIn(StandIn):
  """`dnnlib.tflib.network.Network`: NEWOBJ with no arguments, then BUILD(state)."""

  __slots__ = ("state",)

  def __setstate__(self, state):
    if not isinstance(state, dict):
      raise CheckpointError(f"TF network state is a {type(state).__name__}, not a dict")
    self.state = state

  def finalize(self, fn):
    if not hasattr(self, "state"):
      raise CheckpointError("TF network pickled without its state (missing BUILD)")
    return tf_network_from_state(fn(self.state))
