"""Self-blends and the other forgery families made from real faces in their frames.

The items of a ``pool`` or ``selfblend:PATH`` data spec (``training.dataspec``): item 2k is a
real face, item 2k+1 a forgery of the same face, as in ``synthetic``, but each is made the way
the SBI paper makes it and the way a camera then sees it:

1. the face's frame region (:class:`training.face_pool.FrameFace`), varied in colour and
   sharpness as a whole when training (real and fake alike);
2. for a fake, the forgery made at the frame's resolution: a self-blend through a mask drawn
   from the face's landmarks (:func:`training.synthetic.self_blend`); a face swap (``i2g``:
   another person's face aligned by the landmarks, colour-matched and blended through that mask,
   :func:`swap_in`); or another family (``training.forgeries``) made on the face's square crop
   and put back into the frame;
3. the camera's trip and the runtime's crop from a jittered box (:func:`training.camera.camera_view`),
   the same for real and fake; with ``camera=off`` the runtime's crop alone. With ``ramp=N`` the
   trip grows over training's first N epochs (:meth:`training.camera.CameraConfig.at`): a network
   learning from scratch first finds the blending traces on clear faces, then learns to find them
   through the camera (without it, the full trip from the first step left BCE at chance).

Two-identity families draw their donor from this set's other people, so a split's forgeries never
show a person of another split. Everything random comes from the generator passed in.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from runtime.meta import Meta
from runtime.preprocess import face_crop, square_box
from training.camera import DEFAULT, OFF, CameraConfig, camera_view
from training.face_pool import FrameFace
from training.pairs import pair_items


def crop_view(image: np.ndarray, box: Sequence[float], margin: float) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The face's square crop at the frame's own resolution (border replicated outside it) and
    where it lies in the frame (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = square_box(tuple(box), margin)  # type: ignore[arg-type]
    return face_crop(image, tuple(box), None, margin, x1 - x0), (x0, y0, x1, y1)  # type: ignore[arg-type]


def paste(image: np.ndarray, crop: np.ndarray, where: tuple[int, int, int, int]) -> np.ndarray:
    """``image`` with the part of ``crop`` that lies inside it written back at ``where``."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = where
    cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    out = image.copy()
    out[cy0:cy1, cx0:cx1] = crop[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
    return out


def swap_in(image: np.ndarray, face: FrameFace, donor: np.ndarray, donor_landmarks: np.ndarray,
            rng: np.random.Generator) -> np.ndarray:
    """Another person's face swapped into ``image`` as face-swap tools do it: the donor's frame
    aligned onto the face by the five landmarks (a similarity), colour-matched inside a mask drawn
    from the face's landmarks, pasted through it softened (two thirds of the time) or hard-edged."""
    import cv2

    from training.face_shape import landmark_mask
    from training.forgeries import HARD_PASTE_P, match_colour
    from training.synthetic import BLEND_RATIOS, perturb_frequency, soften

    h, w = image.shape[:2]
    m, _ = cv2.estimateAffinePartial2D(np.asarray(donor_landmarks, np.float32), np.asarray(face.landmarks, np.float32),
                                       method=cv2.LMEDS)
    if m is None:  # degenerate landmarks: no alignment to be had
        m = np.float32([[1, 0, 0], [0, 1, 0]])
    warped = cv2.warpAffine(donor, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    hard = landmark_mask((h, w), face.landmarks, rng)
    source = perturb_frequency(match_colour(warped, image, hard), rng)
    side = 1.3 * max(face.box[2], face.box[3])
    if rng.random() < HARD_PASTE_P:
        mask = hard
    else:
        mask = soften(hard, rng, side) * float(rng.choice(np.asarray(BLEND_RATIOS, np.float32)))
    m3 = mask.astype(np.float32)[..., None]
    return np.clip(np.rint(m3 * source.astype(np.float32) + (1 - m3) * image.astype(np.float32)), 0, 255).astype(np.uint8)


class FrameFaceSet:
    """Real faces in frames (label 0) alternating with forgeries of them (label 1), as runtime crops."""

    def __init__(self, spec: str, faces: Sequence[FrameFace], meta: Meta, n: int | None = None,
                 families: Sequence[str] = ("sbi",), camera: CameraConfig | None = DEFAULT, ramp: int = 0) -> None:
        self.spec, self.faces, self.families = spec, list(faces), tuple(families)
        self.meta = meta
        self.camera = camera or OFF
        self.ramp = int(ramp)  # epochs over which training's camera trip grows to full strength
        self.strength = 1.0
        order = pair_items(len(self.faces), self.families, n)
        self.face_of, self.labels, self.families_of = order.face_of, order.labels, order.families_of
        self.videos = [self.faces[k].person for k in self.face_of]

    def __len__(self) -> int:
        return len(self.labels)

    def set_epoch(self, epoch: int) -> None:
        """Training's curriculum: the camera's trip at ``epoch / ramp`` of its strength (epochs count from 1)."""
        self.strength = min(1.0, epoch / self.ramp) if self.ramp > 0 else 1.0

    def default_augment(self):
        """Training's extra augmentation after the crop: a mirror image only (the camera's trip
        already degrades every face)."""
        from training.augment import Augment, RandomFlip

        return Augment(ops=[RandomFlip(0.5)])

    def crop(self, index: int, rng: np.random.Generator, vary: bool = False) -> np.ndarray:
        """Item ``index`` as the runtime's crop; ``rng`` draws everything, ``vary`` adds training's variants."""
        image, face = self.frame(index, rng, vary)
        return camera_view(image, face.box, face.landmarks, rng, self.meta.input_size, self.meta.face_margin,
                           self.camera.at(self.strength), self.meta.face_align)

    def frame(self, index: int, rng: np.random.Generator, vary: bool = False) -> tuple[np.ndarray, FrameFace]:
        """Item ``index``'s frame region (the forgery made, no camera yet) and its face."""
        from training.sample_faces import vary_face

        face = self.faces[self.face_of[index]]
        image = vary_face(face.image, rng) if vary else face.image.copy()
        if self.labels[index] == 0:
            return image, face
        return self._forge(self.families_of[index], image, face, rng, vary), face

    def _forge(self, family: str, image: np.ndarray, face: FrameFace, rng: np.random.Generator,
               vary: bool) -> np.ndarray:
        from training.forgeries import NEEDS_DONOR, forge
        from training.sample_faces import vary_face
        from training.synthetic import self_blend

        if family == "sbi":
            return self_blend(image, rng, landmarks=face.landmarks, box=face.box)[0]
        if family == "i2g":
            others = [g for g in self.faces if g.person != face.person]
            if not others:  # one person: the nearest thing is a self-blend
                return self_blend(image, rng, landmarks=face.landmarks, box=face.box)[0]
            other = others[int(rng.integers(len(others)))]
            return swap_in(image, face, vary_face(other.image, rng) if vary else other.image, other.landmarks, rng)
        margin = self.meta.face_margin
        crop, where = crop_view(image, face.box, margin)
        donor = None
        if family in NEEDS_DONOR or family == "region":
            others = [g for g in self.faces if g.person != face.person]
            if others:
                other = others[int(rng.integers(len(others)))]
                donor = crop_view(vary_face(other.image, rng) if vary else other.image, other.box, margin)[0]
        if family in NEEDS_DONOR and donor is None:  # one person: the nearest thing is a self-blend
            return self_blend(image, rng, landmarks=face.landmarks, box=face.box)[0]
        fake, _ = forge(family, crop, rng, donor)
        return paste(image, fake, where)
