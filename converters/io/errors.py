"""Exceptions raised by the checkpoint readers.

Every failure to read a checkpoint surfaces as a `CheckpointError` with a one-line
message naming the file, what was expected and what was found, so a user can tell a
corrupt download from an unsupported format without reading a traceback.
"""


def one_line(text: str) -> str:
  """Collapses whitespace runs (newlines included) so messages stay on one line."""
  return " ".join(str(text).split())


class CheckpointError(ValueError):
  """A checkpoint file is malformed, truncated or of an unsupported format."""

  def __init__(self, message: str):
    super().__init__(one_line(message))


class UnsafePickleError(CheckpointError):
  """A pickle references a global that is not in the reader's allow-list.

  Attributes:
    module: module part of the refused global, e.g. 'os'.
    name: qualified name part of the refused global, e.g. 'system'.
    path: the file being read.
  """

  def __init__(self, module: str, name: str, path: str):
    self.module = module
    self.name = name
    self.path = str(path)
    super().__init__(
      f"refused to load global '{module}.{name}' from {path}: not in the allow-list "
      "(checkpoints are read as data only; no code is imported or executed)"
    )
