"""StyleGAN2 training in JAX for ToyFaces.

  cfg = configs.toyfaces_default()            # or configs.smoke()
  state, meta = loop.train(cfg, workdir, max_minutes=8)   # resumes if workdir has a checkpoint
  loop.export_latest(workdir, out_dir)        # EMA G -> ss_jax converted directory

Lower level: step.init_state(cfg), step.make_train_step(cfg, mesh)(state, real_u8),
discriminator.discriminator(dcfg, params, images).
"""

from ss_jax.train import configs, data, discriminator, loop, step
from ss_jax.train.configs import TrainConfig, smoke, toyfaces_default
from ss_jax.train.discriminator import DiscriminatorConfig
from ss_jax.train.loop import export_generator, export_latest, train
from ss_jax.train.step import TrainState, init_state, make_mesh, make_train_step

__all__ = [
  "DiscriminatorConfig",
  "TrainConfig",
  "TrainState",
  "configs",
  "data",
  "discriminator",
  "export_generator",
  "export_latest",
  "init_state",
  "loop",
  "make_mesh",
  "make_train_step",
  "smoke",
  "step",
  "toyfaces_default",
  "train",
]
