"""What a media file is: the one list of image and video suffixes, a content-vs-name check, and
the image reader. Used by ``runtime.sources`` (what ``--source`` accepts, and how an image is
decoded), ``training.dataspec`` (which files a crops or videos spec holds, and the crop decoder,
so training, calibration and evaluation decode crops as the runtime decodes images) and
``training.extract`` (which files are videos).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np

from runtime.errors import UserError
from runtime.preprocess import as_bgr8

# what OpenCV's image decoders read (a format its build left out is a file skipped with a reason)
IMAGE_EXTS = (".avif", ".bmp", ".dib", ".exr", ".hdr", ".jp2", ".jpe", ".jpeg", ".jpg", ".pbm", ".pfm", ".pgm",
              ".png", ".pnm", ".ppm", ".ras", ".tif", ".tiff", ".webp")
VIDEO_EXTS = (".3gp", ".avi", ".flv", ".m4v", ".mkv", ".mov", ".mp4", ".mpeg", ".mpg", ".ts", ".webm", ".wmv")
# images that may hold several frames, read as a video (every frame of an animation; one for a
# still), by the image decoder when FFmpeg cannot open them
ANIMATION_EXTS = (".gif",)
MEDIA_EXTS = IMAGE_EXTS + VIDEO_EXTS + ANIMATION_EXTS

# Leading bytes of common formats: (offset, bytes, kind, name). Enough to tell an image from a video.
_SIGNATURES = [
    (0, b"\x89PNG\r\n\x1a\n", "image", "PNG"), (0, b"\xff\xd8\xff", "image", "JPEG"),
    (0, b"GIF8", "image", "GIF"), (0, b"II*\x00", "image", "TIFF"), (0, b"MM\x00*", "image", "TIFF"),
    (8, b"WEBP", "image", "WebP"), (8, b"avif", "image", "AVIF"), (8, b"avis", "image", "AVIF"),
    (4, b"ftyp", "video", "MP4/MOV"), (8, b"AVI ", "video", "AVI"),
    (0, b"\x1a\x45\xdf\xa3", "video", "Matroska/WebM"), (0, b"FLV", "video", "FLV"),
    (0, b"\x30\x26\xb2\x75", "video", "ASF/WMV"), (0, b"\x00\x00\x01\xba", "video", "MPEG-PS"),
]


def check_content_matches_name(path: str) -> None:
    """Refuse an image named like a video or a video named like an image (a PNG called .mp4).

    Decoders pick a format by content, so such a file would be read as something its name does
    not announce: a mistake or a trick, either way not something to process silently.
    """
    suffix = Path(path).suffix.lower()
    expected = "image" if suffix in IMAGE_EXTS else "video" if suffix in VIDEO_EXTS else None
    if expected is None:
        return
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as e:
        raise UserError(f"{path}: cannot be read ({e.strerror or e}); check the path and permissions") from None
    for offset, magic, kind, name in _SIGNATURES:
        if head[offset: offset + len(magic)] == magic:
            if kind != expected:
                raise UserError(f"{path}: the content is a {name} {kind} but the name ends in {suffix} (a "
                                f"{expected}); rename it to match its content")
            return


def read_image(path: str) -> np.ndarray | None:
    """An image file as uint8 BGR, or None if undecodable: the one image reader (runtime sources,
    training crops, extraction, calibration). :func:`decode_image` says why."""
    try:
        return decode_image(path)
    except UserError:
        return None


def decode_image(path: str) -> np.ndarray:
    """An image file as uint8 BGR; a UserError naming the file and why when it cannot be decoded
    (unreadable, empty, damaged, refused by OpenCV: too many pixels, a codec left out of its build).

    Decoded as OpenCV's ``imread`` does by default in one respect that matters: the EXIF
    orientation is applied (a phone photo tagged "rotate 90°" comes out upright). Any depth and
    channel count is kept until :func:`runtime.preprocess.as_bgr8` converts it (alpha is dropped,
    as it would be there); a float image's NaN and infinite pixels become 0 and its largest
    finite value instead of turning the whole frame black.
    """
    try:
        data = np.fromfile(path, np.uint8)
    except OSError as e:
        raise UserError(f"{path}: cannot be read ({e.strerror or e}); check the path and permissions") from None
    if not data.size:
        raise UserError(f"{path}: the file is empty (0 bytes); nothing to decode")
    # IMREAD_UNCHANGED would ignore the EXIF orientation; ANYDEPTH | ANYCOLOR keeps 16-bit and
    # float pixels and gray or colour, and rotates as the orientation tag says
    try:
        img = cv2.imdecode(data, cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR)
    except cv2.error as e:
        raise UserError(f"{path}: not a decodable image: {decoder_refusal(e)}") from None
    if img is None or img.size == 0:
        raise UserError(f"{path}: not a decodable image (unsupported format, damaged, or not an image); "
                        "convert it to PNG or JPEG")
    if img.dtype.kind == "f" and not np.isfinite(img).all():
        finite = img[np.isfinite(img)]
        top = float(finite.max()) if finite.size else 0.0
        img = np.nan_to_num(img, nan=0.0, posinf=top, neginf=min(0.0, top))
    return as_bgr8(img)


def decoder_refusal(e: cv2.error) -> str:
    """Why OpenCV's decoder refused a file and what to do, for a one-line error (OpenCV raises
    where a corrupt file only fails: a header declaring too many pixels, a codec disabled)."""
    said = str(getattr(e, "err", "") or e).strip()
    if "CV_IO_MAX_IMAGE_PIXELS" in said:
        return ("its header declares more pixels than OpenCV decodes (2^30, about 1.07 gigapixels): damaged, "
                "or too large; check the file or resize it")
    lines = said.splitlines()
    return f"OpenCV refused it ({lines[-1] if lines else type(e).__name__}); check the file or re-encode it"


def container_complete(path: str) -> bool | None:
    """Whether a video file holds all its container says it holds: True when the top-level boxes
    (MP4/MOV) or RIFF chunks (AVI) end exactly at the file's end, False when they declare more
    than the file has (truncated), None when the format or the layout does not tell."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(12)
            if head[4:8] == b"ftyp":
                return _chunks_end(f, size, big_endian=True)
            if head[:4] == b"RIFF":
                return _chunks_end(f, size, big_endian=False)
    except OSError:
        return None
    return None


def _chunks_end(f: BinaryIO, size: int, big_endian: bool) -> bool | None:
    """Walk the top-level chunks from the start: ISO-BMFF boxes (32-bit big-endian size including
    the header, 1: a 64-bit size follows, 0: to the end of the file) or RIFF chunks (little-endian
    size of the payload, padded to even)."""
    pos = 0
    for _ in range(100_000):
        if pos == size:
            return True
        if pos + 8 > size:
            return False if pos > size else None
        f.seek(pos)
        header = f.read(16)
        if big_endian:
            n = int.from_bytes(header[:4], "big")
            if n == 0:
                return True
            if n == 1:
                n = int.from_bytes(header[8:16], "big")
            if n < 8:
                return None
        else:
            n = 8 + int.from_bytes(header[4:8], "little")
            n += n % 2
        pos += n
    return None
