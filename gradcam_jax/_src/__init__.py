"""The implementation: private. Everything here may change without notice; import from `gradcam_jax`
and its public namespaces (`methods`, `targets`, `metrics`, `overlay`, `models`, `toys`) instead.

The generic core knows no model: `adapters` (calling any model, tapping its layers), `patching` (the
one place anything is replaced while a model runs), `targets`, `gradients`, `maps`, `methods` (one
file per method) and `metrics`. The front ends' shared pieces (`pipeline`, `choices`, `outputs`,
`images`) sit beside them; the front ends themselves (`cli`, `app`, `dataset`, `video`) and the
models (`gradcam_jax.models`) are outside.
"""
