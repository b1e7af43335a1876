"""ss-jax: StyleGAN2 and StyleSpace analysis in JAX."""
