"""The 1000 ImageNet classes (from Caffe's synset_words.txt: class i is line i) and lookup by name."""

from __future__ import annotations

import difflib
import functools
import importlib.resources
from collections.abc import Sequence


@functools.cache
def synonyms() -> tuple[tuple[str, ...], ...]:
    """For each class index, its names: `synonyms()[207] == ("golden retriever",)`."""
    text = importlib.resources.files("gradcam_jax").joinpath("data/synset_words.txt").read_text()
    return tuple(tuple(n.strip() for n in line.split(" ", 1)[1].split(",")) for line in text.splitlines())


def label(index: int, names: Sequence[str] | None = None) -> str:
    """The display name of class `index`: ImageNet's first name (`label(207) == "golden retriever"`),
    or `names[index]` for a model with classes of its own."""
    return synonyms()[index][0] if names is None else names[index]


def class_index(spec: int | str, num_classes: int = 1000, names: Sequence[str] | None = None) -> int:
    """A class given by index (`207`, `"207"`) or by any of its names, case-insensitive: ImageNet's,
    or `names` (one per class) for a model with classes of its own.

    Raises ValueError for an index out of range, an unknown name (suggesting the closest labels),
    or a name that several classes share (listing their indices).
    """
    table = synonyms() if names is None else tuple((name,) for name in names)
    num_classes = num_classes if names is None else len(names)
    if isinstance(spec, int) or str(spec).strip().lstrip("-").isdigit():
        index = int(spec)
        if not 0 <= index < num_classes:
            raise ValueError(f"class index {index} is out of range 0..{num_classes - 1}")
        return index
    wanted = str(spec).strip().lower()
    matches = [i for i, aliases in enumerate(table) if wanted in (n.lower() for n in aliases)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        listed = ", ".join(f"{i} ({table[i][0]})" for i in matches)
        raise ValueError(f"class name {spec!r} is ambiguous: {listed}; pass the index")
    every = {n.lower(): n for aliases in table for n in aliases}
    close = difflib.get_close_matches(wanted, every, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(repr(every[c]) for c in close)}?" if close else ""
    raise ValueError(f"unknown class {spec!r}{hint}")
