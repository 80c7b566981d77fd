"""The 1000 ImageNet classes (from Caffe's synset_words.txt: class i is line i) and lookup by name."""

from __future__ import annotations

import difflib
import functools
import importlib.resources


@functools.cache
def synonyms() -> tuple[tuple[str, ...], ...]:
    """For each class index, its names: `synonyms()[207] == ("golden retriever",)`."""
    text = importlib.resources.files("gradcam_jax").joinpath("data/synset_words.txt").read_text()
    return tuple(tuple(n.strip() for n in line.split(" ", 1)[1].split(",")) for line in text.splitlines())


def label(index: int) -> str:
    """The first (display) name of class `index`, e.g. `label(207) == "golden retriever"`."""
    return synonyms()[index][0]


def class_index(spec: int | str, num_classes: int = 1000) -> int:
    """A class given by index (`207`, `"207"`) or by any of its names, case-insensitive.

    Raises ValueError for an index out of range, an unknown name (suggesting the closest labels),
    or a name that several classes share (listing their indices).
    """
    if isinstance(spec, int) or str(spec).strip().lstrip("-").isdigit():
        index = int(spec)
        if not 0 <= index < num_classes:
            raise ValueError(f"class index {index} is out of range 0..{num_classes - 1}")
        return index
    wanted = str(spec).strip().lower()
    matches = [i for i, names in enumerate(synonyms()) if wanted in (n.lower() for n in names)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        listed = ", ".join(f"{i} ({label(i)})" for i in matches)
        raise ValueError(f"class name {spec!r} is ambiguous: {listed}; pass the index")
    every = {n.lower(): n for names in synonyms() for n in names}
    close = difflib.get_close_matches(wanted, every, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(repr(every[c]) for c in close)}?" if close else ""
    raise ValueError(f"unknown class {spec!r}{hint}")
