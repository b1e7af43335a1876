"""GAN inversion: optimisation in W / W+ / S (optimise), LPIPS, the image encoder and its training,
batch jobs over image folders and edit grids (batch).

May import: ss_jax.stylegan2, ss_jax.stylespace.channels, ss_jax.runtime, converters.io (LPIPS weights);
encoder training renders its real-image check set with the ToyFaces world.
"""
