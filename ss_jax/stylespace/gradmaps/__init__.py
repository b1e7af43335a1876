"""Per-channel gradient maps d(pooled image)/dS: api (jacobian, gradient_maps, run_job), planning
(method and memory plan), dense (forward/reverse modes), local (cropped local mode), storage (the
resumable gradient-map job's files).

May import: ss_jax.stylegan2, ss_jax.runtime.
"""
