"""The order of a generated set's items: each real face followed by a forgery of it.

Item 2k is a face's real crop (label 0), item 2k+1 a forgery of the same face (label 1) of the
family ``families_of[2k+1]`` ("" for real items). With fewer pairs than faces the pairs are spread
evenly over the faces; with more, the faces repeat, and the families rotate over the pairs and,
when faces repeat, over each face's rounds, so no face is tied to one family. Both generated sets
(:class:`training.dataspec.SyntheticFaces`, :class:`training.blend_set.FrameFaceSet`) use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class Pairs:
    face_of: list[int]  # item -> index of its face
    labels: list[int]  # item -> 0 real, 1 fake
    families_of: list[str]  # item -> forgery family ("" for a real item)


def pair_items(faces: int, families: Sequence[str], n: int | None = None) -> Pairs:
    """``n`` items (default: a real and a forgery of every face) over ``faces`` faces."""
    f, nf = faces, len(families)
    n = 2 * f if n is None else int(n)
    pairs = (n + 1) // 2
    face_of = [((i // 2) * f // pairs) if pairs <= f else (i // 2) % f for i in range(n)]
    rounds = [0 if pairs <= f else (i // 2) // f for i in range(n)]
    families_of = ["" if i % 2 == 0 else families[((i // 2) if pairs <= f else face_of[i] + rounds[i]) % nf]
                   for i in range(n)]
    return Pairs(face_of, [i % 2 for i in range(n)], families_of)
