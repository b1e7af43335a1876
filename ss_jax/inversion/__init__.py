"""GAN inversion: optimisation in W / W+ / S (optimise, codes), LPIPS, the image encoder (encoder,
normaliser) and its training (encoder_training, encoder_trainer, encoder_run), batch jobs over
image folders and edit grids (batch, folder).

May import: ss_jax.stylegan2, ss_jax.stylespace, ss_jax.runtime, converters.io (LPIPS weights);
encoder training renders its real-image check set with the ToyFaces world.
"""
