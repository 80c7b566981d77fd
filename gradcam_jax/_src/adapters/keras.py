"""Keras 3 models on the JAX backend, explained like any other (`pip install gradcam-jax[keras]`).

Any `keras.Model` (Sequential, Functional, subclassed, models nested in models) is passed as the
model itself, with its own weights (`variables=None`) or with weight values of the same layout,
`(trainable_values, non_trainable_values)`:

    grad_cam(model, None, images, layer="conv5_block3_out")

It is run through `model.stateless_call(trainable, non_trainable, images, training=False)`: the
weights are traced arrays, nothing is assigned, so every method stays one jitted pure function, in
inference mode (BatchNorm's moving statistics, no dropout). The model is hashed by identity, so it
is a static argument under `jit`; `variables=None` is read at each public call (`weights`), so a
model trained further is explained with its new weights.

Layers are tapped by their Keras names (`"conv1"`), a layer of a nested model, or a layer inside a
layer (keras-hub's blocks: `"vit_encoder/transformer_block_1/mha"`), by its path, through
`hooks.hooked_calls` on each layer's `__call__`. A name Keras made up, the class's snake-case name
with a per-instance number (`vi_t_backbone_1`, `softmax_3`), may also be written without the number
(`vi_t_backbone`, `softmax`; `aliases`), when that names one layer. Their outputs are
read in `keras.config.image_data_format()` (channels-last by default). Keras must run on JAX
(`KERAS_BACKEND=jax`, set before keras is imported); it is imported only by code that already holds
a Keras model.
"""

from __future__ import annotations

import inspect
import re
import sys
from collections.abc import Callable, Sequence

from gradcam_jax._src.adapters.hooks import hooked_calls


def is_model(model) -> bool:
    """Whether `model` is a Keras model (without importing keras when nobody has)."""
    keras = sys.modules.get("keras")
    return keras is not None and isinstance(model, keras.Model)


def check_backend() -> None:
    """A clear ValueError when Keras runs on another backend than JAX."""
    backend = sys.modules["keras"].backend.backend()
    if backend != "jax":
        raise ValueError(
            f"the Keras model runs on the {backend!r} backend; gradcam-jax needs JAX: set the environment "
            "variable KERAS_BACKEND=jax before keras is imported"
        )


def channel_first() -> bool:
    """Whether Keras lays images out channel-first (`keras.config.image_data_format()`)."""
    return sys.modules["keras"].config.image_data_format() == "channels_first"


def weights(model) -> tuple[list, list]:
    """The model's own (trainable, non-trainable) weight values, in `stateless_call`'s order."""
    return [v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables]


def check_variables(model, variables) -> None:
    """A clear TypeError for variables that are neither None nor (trainable, non_trainable) value
    lists of the model's lengths."""
    want = (len(model.trainable_variables), len(model.non_trainable_variables))
    if variables is None:
        return
    if not (isinstance(variables, (tuple, list)) and len(variables) == 2):
        raise TypeError(
            f"variables of a Keras model must be None (its own weights) or (trainable_values, "
            f"non_trainable_values); got {type(variables).__name__}"
        )
    got = tuple(len(v) if isinstance(v, (tuple, list)) else None for v in variables)
    if got != want:
        raise TypeError(
            f"variables of the Keras model {model.name!r} must be lists of {want[0]} trainable and {want[1]} "
            f"non-trainable values (model.trainable_variables, model.non_trainable_variables); got {got}"
        )


def prepare(model, variables):
    """Checked `(trainable, non_trainable)` values for `model`: its own weights for None."""
    check_backend()
    if not model.built:
        raise ValueError(f"the Keras model {model.name!r} is not built; call it once on a batch, or build() it")
    check_variables(model, variables)
    return weights(model) if variables is None else variables


def sublayers(layer) -> list:
    """The layers directly inside `layer`: a model's `layers`, a layer's tracked sublayers."""
    keras = sys.modules["keras"]
    if isinstance(layer, keras.Model):
        children = list(layer.layers)
    else:
        flatten = getattr(layer, "_flatten_layers", None)  # Keras 3's own walk of tracked sublayers
        children = list(flatten(include_self=False, recursive=False)) if flatten is not None else []
    return [child for child in children if not isinstance(child, keras.layers.InputLayer)]


def layers(model, prefix: tuple[str, ...] = (), seen: set[int] | None = None) -> list[tuple[str, object]]:
    """(path, layer) for every layer of `model`, in nested models and inside layers, by path
    ("backbone/conv5", "vit_encoder/transformer_block_1/mha"); a shared layer at its first path."""
    seen = set() if seen is None else seen
    found = []
    for layer in sublayers(model):
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        path = (*prefix, layer.name)
        found.append(("/".join(path), layer))
        found += layers(layer, path, seen)
    return found


def snake_case(name: str) -> str:
    """The name Keras derives from a class name (`keras.src.utils.naming.to_snake_case`): ViTBackbone ->
    vi_t_backbone."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def stable_name(layer) -> str:
    """`layer.name` without the per-instance number Keras appends to the names it makes up
    (`vi_t_backbone_1` -> `vi_t_backbone`); a name given by the author stays as it is."""
    auto = snake_case(type(layer).__name__)
    return auto if re.fullmatch(re.escape(auto) + r"(_\d+)?", layer.name) else layer.name


def aliases(model) -> dict[str, list[str]]:
    """{path with made-up names unnumbered (`stable_name`): the paths it may denote}, where it differs."""
    found: dict[str, list[str]] = {}
    stable: dict[str, str] = {}
    for path, layer in layers(model):
        parent, _, _ = path.rpartition("/")
        alias = "/".join(p for p in (stable.get(parent, parent), stable_name(layer)) if p)
        stable[path] = alias
        if alias != path:
            found.setdefault(alias, []).append(path)
    return found


def takes_training(model) -> bool:
    """Whether the model's `call` accepts `training=` (a subclassed model's may not)."""
    parameters = inspect.signature(model.call).parameters.values()
    return any(p.name == "training" or p.kind is p.VAR_KEYWORD for p in parameters)


def call(model, variables, images, hooks: Sequence[Callable]):
    """`model.stateless_call(trainable, non_trainable, images, training=False)`'s outputs, every
    layer's output passed through `hooks`; the updated state it returns is dropped."""
    trainable, non_trainable = prepare(model, variables)
    options = {"training": False} if takes_training(model) else {}
    with hooked_calls(layers(model), hooks):
        outputs, _ = model.stateless_call(list(trainable), list(non_trainable), images, **options)
    return outputs
