"""Model adapters: the one place models are called, and the layer taps on them.

`taps.call_model(model, variables, images)` runs any supported model and lets open `taps.tap`
contexts read, and perturb, the output of any submodule by path. One file per framework says how
its submodules' outputs are reached:

- `linen`: linen Modules and plain functions `(variables, images) -> outputs` (linen's own
  `intercept_methods`);
- `nnx`: NNX `(graphdef, state)` from `nnx.split`;
- `equinox`: Equinox `(static, params)` from `eqx.partition`;
- `keras`: Keras 3 models on the JAX backend, through `stateless_call`;
- `haiku`: Haiku `hk.transform` / `hk.transform_with_state` models (Haiku's own `intercept_methods`);
- `hooks`: submodule-call hooks for frameworks without interceptors (NNX, Equinox, Keras);
- `internals`: the per-image taps' use of JAX internals (models that vmap inside);
- `tokens`: transformer token layers laid out as grids;
- `attention`: attention taps, the post-softmax probabilities of attention submodules read and
  perturbed by path (the transformer methods).
"""
