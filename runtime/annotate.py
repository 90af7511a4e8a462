"""What a frame looks like annotated: boxes coloured from green (real) to red (fake) by p(fake), the
track and verdict, and reconstruction-error maps beside faces; what ``--save``, ``--show``, the live
view and event snapshots draw."""

from __future__ import annotations

import math

import cv2
import numpy as np

from runtime.pipeline import Result


def score_color(prob: float) -> tuple[int, int, int]:
    """BGR from green (real, 0) through yellow to red (fake, 1)."""
    p = 0.0 if math.isnan(prob) else min(1.0, max(0.0, prob))
    return (0, int(round(255 * min(1.0, 2 * (1 - p)))), int(round(255 * min(1.0, 2 * p))))


def error_heatmap(err: np.ndarray, side: int, full_scale: float = 1.0) -> np.ndarray:
    """A reconstruction-error map (S×S, squared error) as a side×side BGR heat image.

    Fixed scale (RMS error ``full_scale`` in normalised units is the hottest colour) so maps
    of different faces and frames compare.
    """
    level = np.clip(np.sqrt(np.maximum(err, 0)) / full_scale, 0, 1)
    heat = cv2.applyColorMap((level * 255).astype(np.uint8), cv2.COLORMAP_JET)
    return cv2.resize(heat, (side, side), interpolation=cv2.INTER_LINEAR)


def annotate(r: Result, threshold: float) -> np.ndarray:
    """The frame with boxes coloured by score, labels, and error maps beside faces."""
    img = r.frame.image.copy()  # type: ignore[union-attr]
    h, w = img.shape[:2]
    thick = max(1, int(round(min(h, w) / 360)))
    scale = max(0.4, min(h, w) / 720)
    for f in r.faces:
        x, y, bw, bh = f.box
        if not getattr(f, "scored", True):  # carried by the tracker, no face confirmed here: not scored
            cv2.rectangle(img, (x, y), (x + bw, y + bh), (128, 128, 128), 1)
            cv2.putText(img, f"#{f.track} lost", (x, max(12, y - 6)), cv2.FONT_HERSHEY_SIMPLEX, scale * 0.6,
                        (128, 128, 128), 1, cv2.LINE_AA)
            continue
        color = score_color(f.prob)
        cv2.rectangle(img, (x, y), (x + bw, y + bh), color, thick)
        label = f"#{f.track} {'FAKE' if f.prob >= threshold else 'real'} {f.prob:.2f}"
        cv2.putText(img, label, (x, max(12, y - 6)), cv2.FONT_HERSHEY_SIMPLEX, scale * 0.6, color, thick,
                    cv2.LINE_AA)
        if f.error_map is not None:
            side = max(16, min(bh, w // 3, h))
            left = x + bw + 4 if x + bw + 4 + side <= w else max(0, x - 4 - side)
            top = min(max(0, y), h - side)
            img[top: top + side, left: left + side] = error_heatmap(f.error_map, side)
            cv2.rectangle(img, (left, top), (left + side - 1, top + side - 1), color, 1)
    if not r.faces:
        cv2.putText(img, "no face", (10, int(30 * scale)), cv2.FONT_HERSHEY_SIMPLEX, scale * 0.8,
                    (200, 200, 200), thick, cv2.LINE_AA)
    return img
