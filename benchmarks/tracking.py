"""``python -m benchmarks.tracking``: does one track stay one person? Identity switches and off-face
scored boxes per 1,000 frames, on real people.

Runs ``runtime.detect`` itself (the bundled model, ``--jsonl``) on each clip, then compares every
*scored* face (a JSONL face with a probability) with the faces really there:

- **identity switches**: a track whose scored box belongs to another person than its previous
  scored box did (across a cut it always does: a new shot is new people);
- **tracks across a cut**: tracks scored in two shots;
- **off-face scored boxes**: scored boxes that overlap no real face (IoU < 0.3);
- **fragments**: extra track ids for one person within one shot (a person's track broken in two);
- **coverage**: scored boxes on a real face per real face-frame.

Clips: by default the built clips of :mod:`benchmarks.people` (real photos of three people,
licence-clear, exact ground truth): ``cuts`` (shots of different people at the same place, and
one with nobody, each shot before another background), the same with one background (only the
person changes at a cut) and ``pair`` (two people side by side). ``--clip FILE`` adds a video; its faces
are found by a reference (MTCNN at full precision on every frame, ``--reference-threshold``)
linked by overlap within each shot, its cuts given by ``--cuts`` or made by ``--splice N`` (the
video re-edited into N-frame shots of different places and moments: :func:`benchmarks.people.edited_clip`).
A video's own cuts that are not given are unknown to the reference: a cut to another person at
the same place would then count as a switch only if the tracker also missed it.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import report
from benchmarks.people import Clip, cut_clip, edited_clip, pair_clip, read_clip
from runtime.errors import Parser, UserError, run_cli
from runtime.tracking import iou

PROG = "benchmarks.tracking"
BUNDLED = Path(__file__).resolve().parents[1] / "runtime" / "assets" / "jrc_edge_detect.onnx"
MATCH_IOU = 0.3  # a scored box on a real face overlaps it at least this much


def reference(clip: Clip, threshold: float) -> list[list[tuple[str, Any]]]:
    """Faces of a clip without ground truth: MTCNN at full precision on every frame (a box that
    overlaps a surer one by IoU ≥ 0.3 is the same face, dropped), each face given an id by overlap
    (IoU ≥ 0.3, best pairs first) with the previous frames' faces of the same shot (gaps of up to 5
    frames bridged)."""
    from runtime.faces import make_detector

    det = make_detector("mtcnn", face_threshold=threshold)
    out: list[list[tuple[str, Any]]] = []
    recent: list[tuple[int, str, Any]] = []  # (frame, id, box) of the last sighting of each id
    next_id = 0
    for i, frame in enumerate(clip.frames):
        if i in clip.cuts:
            recent = []
        recent = [r for r in recent if i - r[0] <= 5]
        boxes: list[Any] = []
        for box in sorted(det.detect(frame), key=lambda b: -(b.score or 0.0)):
            if all(iou(box, k) < 0.3 for k in boxes):
                boxes.append(box)
        pairs = sorted(((iou(r[2], b), k, j) for k, r in enumerate(recent) for j, b in enumerate(boxes)), reverse=True)
        ids: dict[int, str] = {}
        taken: set[int] = set()
        for overlap, k, j in pairs:
            if overlap >= 0.3 and k not in taken and j not in ids:
                ids[j] = recent[k][1]
                taken.add(k)
        faces = []
        for j, box in enumerate(boxes):
            if j not in ids:
                ids[j], next_id = f"face{next_id}", next_id + 1
            faces.append((ids[j], tuple(box)))
        recent = [r for k, r in enumerate(recent) if k not in taken] + [(i, pid, box) for pid, box in faces]
        out.append(faces)
    return out


def run_detect(clip: Clip, tmp: Path, engine: str, args: list[str]) -> tuple[list[dict[str, Any]], float]:
    """runtime.detect on the clip (written as a video); its JSONL records and wall seconds."""
    from runtime.detect import main as detect

    video = clip.write(tmp / f"{clip.name.replace(' ', '_')}.mp4")
    jsonl = tmp / "frames.jsonl"
    t0 = time.perf_counter()
    rc = detect(["--engine", engine, "--source", str(video), "--jsonl", str(jsonl), "--quiet", *args])
    if rc != 0:
        raise UserError(f"runtime.detect on {clip.name} exited with {rc}")
    return [json.loads(line) for line in jsonl.read_text().splitlines()], time.perf_counter() - t0


def score(clip: Clip, truth: list[list[tuple[str, Any]]], records: list[dict[str, Any]]) -> dict[str, Any]:
    """The measures of the module docstring from runtime.detect's JSONL and the faces really there."""
    switches = off_face = on_face = 0
    last_person: dict[int, str] = {}
    shots_of: dict[int, set[int]] = {}
    ids_of: dict[tuple[int, str], set[int]] = {}
    for r in records:
        i = r["frame"]
        for f in r["faces"]:
            if f.get("prob") is None or f.get("scored") is False:
                continue
            shots_of.setdefault(f["track"], set()).add(clip.shot(i))
            best = max(truth[i], key=lambda pb: iou(pb[1], f["box"]), default=None)
            if best is None or iou(best[1], f["box"]) < MATCH_IOU:
                off_face += 1
                continue
            on_face += 1
            person = f"{clip.shot(i)}:{best[0]}"
            if last_person.get(f["track"], person) != person:
                switches += 1
            last_person[f["track"]] = person
            ids_of.setdefault((clip.shot(i), best[0]), set()).add(f["track"])
    frames = len(records)
    real = sum(len(truth[r["frame"]]) for r in records)  # the frames processed (every Nth with --stride)
    per_k = 1000.0 / frames if frames else 0.0
    return {"frames": frames, "real_faces": real, "scored_tracks": len(shots_of),
            "identity_switches": switches, "switches_per_1000_frames": round(switches * per_k, 2),
            "tracks_across_cuts": sum(len(s) > 1 for s in shots_of.values()),
            "off_face_scored": off_face, "off_face_per_1000_frames": round(off_face * per_k, 2),
            "fragments": sum(len(v) - 1 for v in ids_of.values()),
            "coverage": round(on_face / real, 3) if real else None}


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog=f"python -m {PROG}", description=__doc__.split("\n\n")[0].split(": ", 1)[1])
    p.add_argument("--clip", action="append", default=[], metavar="FILE",
                   help="a video to measure besides the built clips (repeatable)")
    p.add_argument("--cuts", metavar="N,N", help="with one --clip: the frames that start a new shot")
    p.add_argument("--splice", type=int, metavar="N", help="re-edit each --clip into N-frame shots with known cuts")
    p.add_argument("--no-built", action="store_true", help="skip the built clips")
    p.add_argument("--engine", default=str(BUNDLED), help="model runtime.detect runs (default: the bundled one)")
    p.add_argument("--reference-threshold", type=float, default=0.7,
                   help="--clip: the reference detector's face threshold (default 0.7: lenient, so a "
                   "doubtful real face is not counted as off-face)")
    p.add_argument("--json", metavar="FILE", help="write the results as JSON")
    return p


def clips(a: argparse.Namespace) -> list[Clip]:
    out = [] if a.no_built else [cut_clip(), cut_clip(same_background=True), pair_clip()]
    for path in a.clip:
        if not Path(path).is_file():
            raise UserError(f"--clip {path}: no such file")
        if a.splice:
            out.append(edited_clip(path, a.splice))
            continue
        out.append(read_clip(path, report.parse_list(a.cuts, int, "--cuts") if a.cuts else []))
    if not out:
        raise UserError("nothing to measure: pass --clip FILE, or drop --no-built")
    return out


def main(argv: list[str] | None = None) -> int:
    a, extra = build_parser().parse_known_args(argv)  # anything else goes to runtime.detect
    if a.cuts and len(a.clip) != 1:
        raise UserError("--cuts: give exactly one --clip")
    if a.splice is not None and a.splice < 2:
        raise UserError(f"--splice {a.splice}: must be at least 2 frames a shot")
    report.check_writable(a.json, "--json", [("--engine", a.engine)] + [("--clip", c) for c in a.clip])
    rows = []
    with tempfile.TemporaryDirectory(prefix="jrc-tracking-") as tmp:
        for clip in clips(a):
            truth = clip.truth if clip.truth is not None else reference(clip, a.reference_threshold)
            records, seconds = run_detect(clip, Path(tmp), a.engine, extra)
            row = {"clip": clip.name, "cuts": len(clip.cuts), **score(clip, truth, records),
                   "seconds": round(seconds, 2)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    if a.json:
        report.write_json(a.json, {"machine": report.machine(), "options": extra, "results": rows})
    return 0


if __name__ == "__main__":
    run_cli(main, PROG)
