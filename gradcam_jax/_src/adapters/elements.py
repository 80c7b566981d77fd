"""Layers whose output is not one array: which element a tap reads, and how a perturbation goes back.

A submodule may return a tuple, a list, a dict or a dataclass (big_vision's ViT block returns
`(x, out)`, `x` the tokens and `out` a dict of intermediates). Such a layer is tapped at one array
of it:

- by default, the first array found depth-first in the output's own order: a tuple's or list's
  first array element, a dict's first array value in insertion order, a dataclass's (or named
  tuple's) first array field in field order; nested containers are searched the same way. For
  big_vision's block `(x, out)` that is `x`.
- by selectors after the layer's path, `[i]` for a position (negative counts from the end) and
  `[key]` (or `["key"]`, `['key']`) for a dict key or a field name, chained for nested outputs:
  `layer="Transformer/encoderblock_0[1][+sa]"` is `out["+sa"]` of that block.

A perturbation is added to the selected array only and the output goes on as the same kind of
container (`replaced`), so the gradient with respect to it is the gradient with respect to that
element.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

import jax

Selector = int | str
_SELECTORS = re.compile(r"(?:\[[^\[\]]*\])+")
_ONE = re.compile(r"\[([^\[\]]*)\]")


def is_array(value) -> bool:
    """Whether `value` is an array (a JAX array or tracer, or anything with a shape and a dtype)."""
    return isinstance(value, jax.Array) or (hasattr(value, "shape") and hasattr(value, "dtype"))


def split_selectors(name: str, path: str) -> tuple[Selector, ...] | None:
    """The selectors of `name` after the layer path `path` (`()` if `name` is `path` itself), or None
    when `name` does not name `path` followed only by selectors."""
    if name == path:
        return ()
    rest = name[len(path) :] if name.startswith(path) else ""
    if not rest or not _SELECTORS.fullmatch(rest):
        return None
    return tuple(_parse(raw) for raw in _ONE.findall(rest))


def _parse(raw: str) -> Selector:
    raw = raw.strip()
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        return raw[1:-1]
    try:
        return int(raw)
    except ValueError:
        return raw


def _children(value: Any) -> list[tuple[Selector, object]] | None:
    """(selector, child) of a container in its own order; None for a leaf."""
    if isinstance(value, Mapping):
        return list(value.items())
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a named tuple: by field name
        return [(f, getattr(value, f)) for f in value._fields]  # pyright: ignore[reportAttributeAccessIssue]
    if isinstance(value, (tuple, list)):
        return list(enumerate(value))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [(f.name, getattr(value, f.name)) for f in dataclasses.fields(value)]
    return None


def first_array(value) -> tuple[Selector, ...] | None:
    """The selectors of the first array in `value` (depth-first, in the container's own order);
    `()` for an array, None when there is none."""
    if is_array(value):
        return ()
    for selector, child in _children(value) or ():
        found = first_array(child)
        if found is not None:
            return (selector, *found)
    return None


def select(value: Any, selectors: tuple[Selector, ...], layer: str) -> Any:
    """The element of `value` at `selectors`; a KeyError naming `layer` and what is there otherwise."""
    for i, selector in enumerate(selectors):
        children = _children(value)
        where = f"{layer}{''.join(f'[{s}]' for s in selectors[:i])}"
        if children is None:
            raise KeyError(f"layer {where!r} outputs an array {tuple(value.shape)}, which has no element [{selector}]")
        keys = [k for k, _ in children]
        if isinstance(value, (tuple, list)) and not hasattr(value, "_fields") and isinstance(selector, int):
            if not -len(keys) <= selector < len(keys):
                raise KeyError(f"layer {where!r} outputs {len(keys)} elements; [{selector}] is out of range")
            value = value[selector]
            continue
        match = next((c for k, c in children if k == selector or str(k) == str(selector)), _MISSING)
        if match is _MISSING and isinstance(selector, int) and hasattr(value, "_fields"):
            match = value[selector] if -len(keys) <= selector < len(keys) else _MISSING
        if match is _MISSING:
            raise KeyError(f"layer {where!r} has no element [{selector}]; it has {', '.join(map(str, keys))}")
        value = match
    return value


_MISSING = object()


def replaced(value: Any, selectors: tuple[Selector, ...], new: Any) -> Any:
    """`value` with its element at `selectors` (as `select` finds it) replaced by `new`, the
    containers rebuilt as the same kinds (tuple, named tuple, list, dict, dataclass)."""
    if not selectors:
        return new
    head, rest = selectors[0], selectors[1:]
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        field = value._fields[head] if isinstance(head, int) else head  # pyright: ignore[reportAttributeAccessIssue]
        return value._replace(**{field: replaced(getattr(value, field), rest, new)})  # pyright: ignore[reportAttributeAccessIssue]
    if isinstance(value, (tuple, list)):
        items = list(value)
        items[head] = replaced(items[head], rest, new)  # pyright: ignore[reportCallIssue, reportArgumentType]
        return type(value)(items)
    if isinstance(value, Mapping):
        key = next(k for k in value if k == head or str(k) == str(head))
        items = {k: (replaced(v, rest, new) if k == key else v) for k, v in value.items()}
        try:
            return type(value)(items)  # pyright: ignore[reportCallIssue]  # dict, FrozenDict, OrderedDict
        except TypeError:
            return items
    field = str(head)
    return dataclasses.replace(value, **{field: replaced(getattr(value, field), rest, new)})


def describe(selectors: tuple[Selector, ...]) -> str:
    """`[1][+sa]` for the selectors (1, "+sa")."""
    return "".join(f"[{s}]" for s in selectors)
