"""StyleSpace analysis: channel names, population statistics, gradient maps, segmentation interface,
locally-active channels, attribute-specific channels, manipulation, reports.

May import: ss_jax.stylegan2, ss_jax.runtime. Never imports the ToyFaces world or the BiSeNet parser
(segmenters register themselves in stylespace.segmentation).
"""
