"""Plain-data training configurations for StyleGAN2 on ToyFaces.

A `TrainConfig` holds everything that determines the training trajectory
(networks, optimiser, losses, batch, seeds); run-time knobs (time budget,
logging and checkpoint cadence, data workers) are arguments of `loop.train`.
"""

import dataclasses
import json
import math

from ss_jax.stylegan2.config import GeneratorConfig
from ss_jax.train.discriminator import DiscriminatorConfig

# Fields that may differ between a checkpoint and the run resuming it.
RESUMABLE_OVERRIDES = ("total_kimg",)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """StyleGAN2 training hyper-parameters (stylegan2-ada-pytorch names in comments).

  Attributes:
    generator, discriminator: network configs (same img_resolution).
    batch_size: global batch, split over the devices of the data mesh.
    g_lr, d_lr, betas, eps: Adam (glr, dlr; betas (0, 0.99), eps 1e-8).
    lazy_reg_adjust: scale D's lr and betas by r1_interval / (r1_interval + 1),
      as StyleGAN2 does for lazily regularised networks.
    r1_gamma: R1 weight; the penalty is applied every r1_interval D steps,
      multiplied by r1_interval (lazy regularisation).
    style_mixing_prob: probability that a batch mixes two z's ws at a random
      crossover row.
    ema_kimg, ema_rampup: G EMA half-life in kimg, capped at ema_rampup * kimg
      seen so far (0 disables the ramp-up).
    total_kimg: training target in thousands of real images shown to D.
    seed: network initialisation and per-step noise.
    data_seed_offset: step t trains on ToyFaces seeds offset + t * batch + [0, batch):
      a fixed function of the step, so resumed runs see the same data.
  """

  generator: GeneratorConfig
  discriminator: DiscriminatorConfig
  batch_size: int = 32
  g_lr: float = 0.0025
  d_lr: float = 0.0025
  betas: tuple = (0.0, 0.99)
  eps: float = 1e-8
  lazy_reg_adjust: bool = True
  r1_gamma: float = 0.1
  r1_interval: int = 16
  style_mixing_prob: float = 0.9
  ema_kimg: float = 10.0
  ema_rampup: float = 0.05
  total_kimg: float = 3000.0
  seed: int = 0
  data_seed_offset: int = 1_000_000_000

  def __post_init__(self):
    if self.generator.img_resolution != self.discriminator.img_resolution:
      raise ValueError(
        "generator and discriminator resolutions differ: "
        f"{self.generator.img_resolution} vs {self.discriminator.img_resolution}"
      )
    if self.generator.img_channels != self.discriminator.img_channels:
      raise ValueError("generator and discriminator image channels differ")
    if self.generator.c_dim:
      raise ValueError("conditional training is not supported")
    if self.r1_interval < 1:
      raise ValueError(f"r1_interval must be >= 1, got {self.r1_interval}")
    object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))

  @property
  def resolution(self):
    return self.generator.img_resolution

  @property
  def total_steps(self):
    """Steps needed to show total_kimg real images (rounded up)."""
    return int(math.ceil(self.total_kimg * 1000 / self.batch_size))

  def replace(self, **kw):
    return dataclasses.replace(self, **kw)

  def to_dict(self):
    d = dataclasses.asdict(self)
    d["generator"] = self.generator.to_dict()
    d["discriminator"] = self.discriminator.to_dict()
    return d

  @classmethod
  def from_dict(cls, d):
    d = dict(d)
    d["generator"] = GeneratorConfig.from_dict(d["generator"])
    d["discriminator"] = DiscriminatorConfig.from_dict(d["discriminator"])
    d["betas"] = tuple(d["betas"])
    return cls(**d)

  def to_json(self):
    return json.dumps(self.to_dict(), indent=2, sort_keys=True)

  @classmethod
  def from_json(cls, text):
    return cls.from_dict(json.loads(text))


def toyfaces_default() -> TrainConfig:
  """64 px ToyFaces: 1.13M generator params (4.5 MB float32), resnet D of 1.2M.

  Widths 128 at 4-16 px, 64 at 32 px, 32 at 64 px keep the exported generator
  under 5 MB (a 256-wide 4-8 px stack alone would be 12 MB) and the 64 px
  layers, which dominate the FLOPs, narrow enough for the CPU.
  gamma 0.1: about 5x stylegan2-ada's heuristic 2e-4 R^2 / batch (0.026),
  the same ratio as its paper256 config.
  """
  channels = (128, 128, 128, 64, 32)
  return TrainConfig(
    generator=GeneratorConfig(
      z_dim=128, w_dim=128, img_resolution=64, channels=channels, mapping_layers=4, architecture="skip"
    ),
    discriminator=DiscriminatorConfig(img_resolution=64, channels=channels),
    batch_size=32,
    r1_gamma=0.1,
    r1_interval=16,
    style_mixing_prob=0.9,
    ema_kimg=10.0,
    ema_rampup=0.05,
    total_kimg=3000.0,
  )


def smoke() -> TrainConfig:
  """Tiny 16 px config for tests: compiles and steps in seconds on a CPU.

  R1 every 2 steps so short runs exercise both step variants.
  """
  channels = (32, 32, 16)
  return TrainConfig(
    generator=GeneratorConfig(
      z_dim=32, w_dim=32, img_resolution=16, channels=channels, mapping_layers=2, architecture="skip"
    ),
    discriminator=DiscriminatorConfig(img_resolution=16, channels=channels),
    batch_size=8,
    r1_gamma=0.1,
    r1_interval=2,
    style_mixing_prob=0.9,
    ema_kimg=0.05,
    ema_rampup=0.05,
    total_kimg=0.1,
  )


CONFIGS = {"toyfaces_default": toyfaces_default, "smoke": smoke}


def get_config(name: str) -> TrainConfig:
  if name not in CONFIGS:
    raise ValueError(f"unknown config {name!r}; choose from {sorted(CONFIGS)}")
  return CONFIGS[name]()
