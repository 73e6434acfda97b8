"""Regenerate ``src/ablation_paths/data/imagenet_classes.txt``, the 1000 ImageNet-1k class names
in index order, from the WordNet files that the ``timm`` wheel ships as package data.

    pip download timm==1.0.31 --no-deps -d /tmp/timm
    python scripts/imagenet_classes.py /tmp/timm/timm-1.0.31-py3-none-any.whl

Without an argument the files of an installed ``timm`` are read. ``timm`` is only the source of
the data, not a dependency of ablation-paths. The rule: class ``i`` is the ``i``-th synset of
``timm/data/_info/imagenet_synsets.txt`` (the standard ImageNet-1k order, sorted synset ids), its
name the first lemma in ``imagenet_synset_to_lemma.txt``; the two first lemmas that occur twice
("crane": bird and machine, "maillot") get their synset id appended, so every name is unique and
``--target NAME`` is never ambiguous.
"""

from __future__ import annotations

import argparse
import zipfile
from collections import Counter
from importlib import resources
from pathlib import Path

SYNSETS = "timm/data/_info/imagenet_synsets.txt"
LEMMAS = "timm/data/_info/imagenet_synset_to_lemma.txt"
OUT = (
    Path(__file__).resolve().parents[1] / "src" / "ablation_paths" / "data" / "imagenet_classes.txt"
)
HEADER = """\
# ImageNet-1k class names, one per line in class-index order: the first line that is not a
# comment is class 0, the last class 999.
# Source: the WordNet synsets and lemmas shipped in the timm {version} wheel (PyPI), files
#   timm/data/_info/imagenet_synsets.txt and timm/data/_info/imagenet_synset_to_lemma.txt;
#   timm is licensed Apache-2.0; the lemmas come from WordNet 3.0 (Princeton University,
#   WordNet 3.0 licence, a permissive BSD-style licence).
# Name = the synset's first lemma; the duplicated first lemmas get the synset id appended.
# Regenerate with: python scripts/imagenet_classes.py TIMM_WHEEL
"""


def read_sources(source: str | None) -> tuple[str, str, str]:
    """The synset file, the lemma file and the timm version, from a wheel or an installed timm."""
    if source is None:
        import timm

        root = resources.files("timm")
        synsets = (root / "data" / "_info" / "imagenet_synsets.txt").read_text("utf-8")
        lemmas = (root / "data" / "_info" / "imagenet_synset_to_lemma.txt").read_text("utf-8")
        return synsets, lemmas, str(timm.__version__)
    with zipfile.ZipFile(source) as wheel:
        version = Path(source).name.split("-")[1]
        return wheel.read(SYNSETS).decode(), wheel.read(LEMMAS).decode(), version


def class_names(synsets_text: str, lemmas_text: str) -> list[str]:
    """The 1000 unique class names in index order (see the module docstring for the rule)."""
    synsets = [s.strip() for s in synsets_text.splitlines() if s.strip()]
    lemmas = dict(line.split("\t", 1) for line in lemmas_text.splitlines() if "\t" in line)
    if len(synsets) != 1000:
        raise SystemExit(f"expected 1000 ImageNet-1k synsets, found {len(synsets)}")
    first = [lemmas[s].split(",")[0].strip() for s in synsets]
    count = Counter(first)
    names = [f"{n} ({s})" if count[n] > 1 else n for n, s in zip(first, synsets, strict=True)]
    assert len(set(names)) == 1000
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("wheel", nargs="?", help="a timm wheel (default: the installed timm)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    synsets, lemmas, version = read_sources(args.wheel)
    names = class_names(synsets, lemmas)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(HEADER.format(version=version) + "\n".join(names) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
