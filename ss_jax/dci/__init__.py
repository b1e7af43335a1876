"""What an attribute classifier measures: DCI (metric, regressors, controls, code/attribute sampling
jobs, results), attribute dependency (attribute_dependency, ad_edits, ad_population, ad_comparison),
attribute banks (attribute_bank, attribute_summary), and the pipelines of the binaries dci,
attribute_dependency, ad_comparison and attribute_channels (dci_run, ad_run, ad_comparison_run,
attribute_channels_run).

May import: ss_jax.stylegan2, ss_jax.stylespace, ss_jax.runtime; the ToyFaces attribute function,
classifier and its reliable attributes are loaded lazily through the toyfaces package only when
asked for.
"""
