"""Class names: the bundled ImageNet-1k names and user files of one name per line.

>>> from ablation_paths.labels import load_class_names
>>> names = load_class_names("imagenet")   # 1000 names, index order: names[0] == "tench"
>>> names = load_class_names("my_classes.txt")

The ImageNet names (``data/imagenet_classes.txt``, package data) are the first WordNet lemma of
each ImageNet-1k synset, from the files the ``timm`` wheel ships (Apache-2.0; lemmas from WordNet
3.0); the two duplicated lemmas carry their synset id ("crane (n02012849)"). Provenance and the
rule are in the file's header; ``scripts/imagenet_classes.py`` regenerates it.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

__all__ = ["LABEL_SETS", "IMAGENET_CLASSES", "imagenet_class_names", "load_class_names"]

#: Number of ImageNet-1k classes.
IMAGENET_CLASSES = 1000
#: Bundled label sets, by the name ``--labels`` takes.
LABEL_SETS = ("imagenet",)


def _names_from_text(text: str, *, comments: bool) -> list[str]:
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not (comments and line.startswith("#"))]


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet-1k class names in class-index order (``[0] == "tench"``)."""
    text = (resources.files("ablation_paths") / "data" / "imagenet_classes.txt").read_text("utf-8")
    names = _names_from_text(text, comments=True)
    if len(names) != IMAGENET_CLASSES or len(set(names)) != IMAGENET_CLASSES:
        raise RuntimeError(
            f"the bundled imagenet_classes.txt holds {len(names)} names ({len(set(names))} "
            f"unique), not {IMAGENET_CLASSES}: the installation is damaged"
        )
    return names


def load_class_names(spec: str | os.PathLike[str]) -> list[str]:
    """Class names from a bundled set (``"imagenet"``) or a UTF-8 text file with one name per
    line (blank lines skipped; line order = class index).

    Raises:
        FileNotFoundError: ``spec`` is neither a bundled set nor an existing file.
        ValueError: the file holds no names.
    """
    if str(spec).lower() in LABEL_SETS and not Path(spec).is_file():
        return imagenet_class_names()
    path = Path(spec)
    if not path.is_file():
        raise FileNotFoundError(
            f"class names {str(spec)!r}: no such file, and not a bundled set "
            f"({', '.join(LABEL_SETS)})"
        )
    names = _names_from_text(path.read_text(encoding="utf-8"), comments=False)
    if not names:
        raise ValueError(f"class names file {path} holds no names")
    return names
