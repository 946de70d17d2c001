"""Regenerate depth_pro_ros/bag/data/sample.jpg, the synthetic 640x480 scene of `make demo`.

A floor in perspective under a wall, with three shaded boxes at different distances.
Deterministic: the same numpy/OpenCV versions give the same bytes. The picture ships
inside the package (package data), so the demo finds it in any installation.

    python data/make_sample.py [OUTPUT]
"""

import sys
from pathlib import Path

import cv2
import numpy as np

W, H = 640, 480
HORIZON = 200
# The package data the demo reads through importlib.resources.
DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "depth_pro_ros/bag/data/sample.jpg"


def draw_scene() -> np.ndarray:
    img = np.zeros((H, W, 3), np.float32)
    rows = np.arange(H, dtype=np.float32)[:, None]
    cols = np.arange(W, dtype=np.float32)[None, :]

    # Wall: pale, slightly darker at the top.
    wall = 0.75 + 0.15 * rows[:HORIZON] / HORIZON
    img[:HORIZON] = np.stack([wall * 205, wall * 215, wall * 225], -1).repeat(W, 1)

    # Floor: brightness grows towards the camera, tiles shrink towards the horizon.
    y = rows[HORIZON:] - HORIZON + 1.0
    dist = 400.0 / y  # pseudo-distance along the floor
    x = (cols - W / 2) * dist / 400.0
    checker = ((np.floor(dist * 2.0) + np.floor(x * 2.0)) % 2).astype(np.float32)
    shade = np.clip(0.35 + 0.65 * (y / (H - HORIZON)), 0.0, 1.0)
    base = shade * (0.8 + 0.2 * checker)
    img[HORIZON:] = np.stack([base * 120, base * 150, base * 185], -1)

    # Boxes, far to near: (left, top, width, height, depth offset, BGR colour).
    boxes = [
        (410, 150, 90, 80, 14, (60, 120, 200)),
        (90, 170, 150, 140, 24, (170, 110, 60)),
        (300, 250, 200, 190, 36, (70, 170, 90)),
    ]
    for left, top, bw, bh, d, colour in boxes:
        c = np.array(colour, np.float32)
        # Shadow on the floor.
        cv2.ellipse(
            img,
            (left + bw // 2 + d // 2, top + bh + 4),
            (bw // 2 + d // 2, 10),
            0,
            0,
            360,
            (40, 40, 50),
            -1,
            cv2.LINE_AA,
        )
        # Front face, lit from the left.
        ramp = np.linspace(1.0, 0.75, bw, dtype=np.float32)[None, :, None]
        img[top : top + bh, left : left + bw] = c * ramp
        # Top face (bright) and right side face (dark) as parallelograms.
        top_face = np.array(
            [[left, top], [left + bw, top], [left + bw + d, top - d], [left + d, top - d]], np.int32
        )
        side_face = np.array(
            [
                [left + bw, top],
                [left + bw + d, top - d],
                [left + bw + d, top + bh - d],
                [left + bw, top + bh],
            ],
            np.int32,
        )
        cv2.fillConvexPoly(
            img, top_face, tuple(float(v) for v in np.minimum(c * 1.25, 255)), cv2.LINE_AA
        )
        cv2.fillConvexPoly(img, side_face, tuple(float(v) for v in c * 0.55), cv2.LINE_AA)

    img = cv2.GaussianBlur(img, (3, 3), 0)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUTPUT
    ok = cv2.imwrite(str(out), draw_scene(), [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise SystemExit(f"could not write {out}")
    print(f"wrote {out} ({out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
