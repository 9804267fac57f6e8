"""A person-like figure performing the 11 DVS128 Gesture classes, rendered as intensity images.

Scene coordinates are normalised to the *central square* of the sensor: ``u`` runs left to right and ``v``
top to bottom over ``[0, 1]``. A 128x128 sensor sees exactly that square; a 640x480 sensor maps it onto its
central 480x480 and sees more background at the sides (``u < 0`` and ``u > 1``). Everything random about a
performance (subject, background, kinematics) is drawn in these coordinates, so the same performance renders
at any resolution.

Conventions (documented because the dataset's names depend on them):

- The subject faces the camera, as in DVS128 Gesture. The subject's **right** arm therefore appears on the
  image's **left** side (``u < 0.5``) and the left arm on the image's right side.
- **Clockwise** means clockwise as seen from the camera, i.e. on the image (x right, y down): top -> right
  -> bottom -> left.

Arms are planar two-link chains in the image plane. Each arm is described per rendered frame by two
*canonical* angles, shoulder ``a1`` (upper arm) and ``a2`` (absolute forearm angle), where 0 points straight
down, +90 deg points away from the body (outward) and 180 deg straight up; for the arm on image side ``s``
(``-1`` subject's right / image left, ``+1`` subject's left / image right) a canonical angle ``a`` is the image
direction ``(s * sin a, cos a)``. Two foreshortening factors ``f1, f2`` (1 = in the image plane) shorten a
segment that points towards the camera (clapping). Classes are joint-angle trajectories; some are written as
hand paths and converted to angles by two-link inverse kinematics with the elbow kept outward.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from evapp.events import GESTURE_CLASSES

# The scene lives in its own module; these names stay importable from here.
from evapp.simulate.scene import LIGHTINGS, Placement, make_background, render_background  # noqa: F401

N_CLASSES = len(GESTURE_CLASSES)
# Motions the simulator can perform: ids 0..10 are DVS128 Gesture's classes, 11 is a motion none of them is
# (for fine-tuning and open-set tests): both arms raised overhead and lowered to shoulder height, periodically.
SIM_MOTIONS = (*GESTURE_CLASSES, "both_arms_raise")
RIGHT, LEFT = -1, 1  # image side of the subject's right / left arm (the subject faces the camera)
SHIFT = 4  # cv2 fixed-point bits: coordinates are drawn with 1/16 pixel precision
_FIX = 1 << SHIFT
_DEG = np.pi / 180.0


@dataclass(frozen=True)
class Subject:
    """Body proportions, placement and clothing of one simulated person (normalised units)."""

    cx: float  # shoulder-centre position
    sy: float
    scale: float
    shoulder_w: float  # half distance between the shoulders
    upper_len: float
    fore_len: float
    upper_thick: float
    fore_thick: float
    hand_r: float
    head_r: float
    neck_len: float
    hip_w: float
    shirt: float  # intensities 0-255 under gain 1
    skin: float
    sleeve: float  # forearm colour (skin for short sleeves)
    rest_a1: float  # rest pose angles (deg)
    rest_bend: float

    @staticmethod
    def random(rng: np.random.Generator, background_level: float) -> Subject:
        s = float(rng.uniform(1.05, 1.3))
        bright_shirt = rng.random() < 0.5
        shirt = background_level * (rng.uniform(1.7, 2.4) if bright_shirt else rng.uniform(0.35, 0.55))
        skin = float(rng.uniform(150, 215))
        if abs(np.log((skin + 4) / (shirt + 4))) < 0.45:  # keep the hands distinguishable from the shirt
            shirt = skin * 0.45
        sleeve = skin if rng.random() < 0.5 else shirt
        return Subject(
            cx=float(0.5 + rng.uniform(-0.05, 0.05)),
            sy=float(0.42 + rng.uniform(-0.04, 0.04)),
            scale=s,
            shoulder_w=0.12 * s * float(rng.uniform(0.92, 1.08)),
            upper_len=0.15 * s * float(rng.uniform(0.95, 1.05)),
            fore_len=0.14 * s * float(rng.uniform(0.95, 1.05)),
            upper_thick=0.045 * s,
            fore_thick=0.038 * s,
            hand_r=0.034 * s,
            head_r=0.068 * s * float(rng.uniform(0.93, 1.07)),
            neck_len=0.085 * s,
            hip_w=0.1 * s * float(rng.uniform(0.9, 1.1)),
            shirt=float(min(shirt, 235.0)),
            skin=skin,
            sleeve=float(min(sleeve, 235.0)),
            rest_a1=float(rng.uniform(5, 12)),
            rest_bend=float(rng.uniform(3, 12)),
        )


@dataclass
class Pose:
    """Per-frame pose tracks (arrays of length F): body offset and both arms' angles (deg) and factors."""

    dx: np.ndarray
    dy: np.ndarray
    arms: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)  # side -> {a1, a2, f1, f2}

    @staticmethod
    def rest(t: np.ndarray, subject: Subject, rng: np.random.Generator) -> Pose:
        """Standing still with a small sway (a few thousandths of the frame, well under a pixel at 128)."""
        n = t.shape[0]
        pose = Pose(dx=_sway(t, rng, 0.003), dy=_sway(t, rng, 0.0015))
        for side in (RIGHT, LEFT):
            a1 = subject.rest_a1 + _sway(t, rng, 1.0)
            pose.arms[side] = {
                "a1": a1,
                "a2": a1 + subject.rest_bend + _sway(t, rng, 1.5),
                "f1": np.ones(n),
                "f2": np.ones(n),
            }
        return pose


def _sway(t: np.ndarray, rng: np.random.Generator, amp: float) -> np.ndarray:
    out = np.zeros_like(t, dtype=np.float64)
    for _ in range(2):
        f = rng.uniform(0.15, 0.45)
        out += amp / 2 * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
    return out


def _smooth_noise(t: np.ndarray, rng: np.random.Generator, amp: float, fmin: float, fmax: float, k: int = 3):
    out = np.zeros_like(t, dtype=np.float64)
    for _ in range(k):
        out += rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * rng.uniform(fmin, fmax) * t + rng.uniform(0, 2 * np.pi))
    return amp * out / k


def _canon_angle(dx: np.ndarray, dy: np.ndarray, side: int) -> np.ndarray:
    """Canonical angle (deg) of the image direction (dx, dy) for an arm on image side ``side``."""
    return np.arctan2(side * dx, dy) / _DEG


def ik(subject: Subject, side: int, hx: np.ndarray, hy: np.ndarray, dx=0.0, dy=0.0) -> dict[str, np.ndarray]:
    """Two-link inverse kinematics: canonical angles that put the hand at (hx, hy), elbow outward."""
    sx = subject.cx + side * subject.shoulder_w + dx
    sy = subject.sy + dy
    l1, l2 = subject.upper_len, subject.fore_len
    vx, vy = hx - sx, hy - sy
    d = np.clip(np.hypot(vx, vy), abs(l1 - l2) + 1e-4, l1 + l2 - 1e-4)
    alpha = np.arccos(np.clip((l1 * l1 + d * d - l2 * l2) / (2 * l1 * d), -1.0, 1.0)) / _DEG
    a1 = _canon_angle(vx, vy, side) + alpha
    ex = sx + side * l1 * np.sin(a1 * _DEG)
    ey = sy + l1 * np.cos(a1 * _DEG)
    a2 = _canon_angle(hx - ex, hy - ey, side)
    a2 = a1 + (a2 - a1 + 180.0) % 360.0 - 180.0  # keep the elbow angle continuous
    one = np.ones_like(a1)
    return {"a1": a1, "a2": a2, "f1": one, "f2": one.copy()}


def gesture_pose(class_id: int, t: np.ndarray, subject: Subject, rng: np.random.Generator) -> Pose:
    """Joint tracks of one motion (an index into ``SIM_MOTIONS``) over times ``t`` (s from its start), before
    blending.

    Arms not involved in a class are left out of ``Pose.arms`` (they keep the rest pose). Random speed
    (period), amplitude and details come from ``rng``; the draws do not depend on ``t``'s length, so the same
    ``rng`` state gives the same motion for any slice of times (the live performer renders it in chunks).
    """
    n = t.shape[0]
    one = np.ones(n)
    pose = Pose(dx=np.zeros(n), dy=np.zeros(n))
    sub = subject
    if not 0 <= int(class_id) < len(SIM_MOTIONS):
        raise ValueError(f"motion {class_id} is out of range 0..{len(SIM_MOTIONS) - 1}")
    name = SIM_MOTIONS[int(class_id)]
    if name == "hand_clapping":
        period = rng.uniform(0.45, 0.8)
        c = 0.5 - 0.5 * np.cos(2 * np.pi * t / period)  # 1 = hands together
        c = c ** rng.uniform(0.7, 1.3)
        open_a2 = rng.uniform(-60, -40)
        for side in (RIGHT, LEFT):
            j = rng.uniform(-3, 3)
            pose.arms[side] = {
                "a1": 16 + j - 12 * c,
                "a2": open_a2 + j - (100 + open_a2) * c,
                "f1": one,
                "f2": 0.45 + 0.55 * c,
            }
        pose.dy = 0.003 * c
    elif name in ("right_hand_wave", "left_hand_wave"):
        side = RIGHT if name.startswith("right") else LEFT
        period = rng.uniform(0.4, 0.7)
        amp = rng.uniform(25, 40)
        a1 = rng.uniform(35, 60) + 3 * np.sin(2 * np.pi * t / period + 0.5)
        a2 = rng.uniform(150, 170) + amp * np.sin(2 * np.pi * t / period)
        pose.arms[side] = {"a1": a1, "a2": a2, "f1": one, "f2": one}
    elif "_arm_" in name and "clockwise" in name:
        side = RIGHT if name.startswith("right") else LEFT
        ccw = "counter" in name
        period = rng.uniform(0.9, 1.6)
        # Image clockwise = canonical angle increasing for the image-left arm (side -1), decreasing for +1.
        direction = (side if ccw else -side) * 1.0
        a1 = sub.rest_a1 + direction * 360.0 * t / period
        bend = rng.uniform(5, 25)
        pose.arms[side] = {"a1": a1, "a2": a1 + direction * bend, "f1": one, "f2": one}
    elif name == "arm_roll":
        period = rng.uniform(0.5, 0.9)
        r = rng.uniform(0.035, 0.055) * sub.scale
        spin = rng.choice([-1.0, 1.0])
        px, py = sub.cx, sub.sy + rng.uniform(0.1, 0.15) * sub.scale
        psi = spin * 2 * np.pi * t / period
        for side, ph in ((RIGHT, 0.0), (LEFT, np.pi)):
            hx = px + side * 0.025 * sub.scale + r * np.cos(psi + ph)
            hy = py + r * np.sin(psi + ph)
            pose.arms[side] = ik(sub, side, hx, hy)
    elif name == "air_drums":
        period = rng.uniform(0.3, 0.5)
        amp = rng.uniform(0.06, 0.1) * sub.scale
        base_y = sub.sy + rng.uniform(0.17, 0.22) * sub.scale
        for side, ph in ((RIGHT, 0.0), (LEFT, 0.5)):
            beat = np.abs(np.sin(np.pi * (t / period + ph))) ** 0.7  # 0 at a hit
            hx = sub.cx + side * (0.09 * sub.scale + _smooth_noise(t, rng, 0.035, 0.2, 0.7))
            hy = base_y - amp * beat
            pose.arms[side] = ik(sub, side, hx, hy)
    elif name == "air_guitar":
        period = rng.uniform(0.25, 0.4)
        amp = rng.uniform(0.06, 0.09) * sub.scale
        # Right-handed player: the subject's left hand holds the neck out to its side, the right hand strums.
        nx = sub.cx + LEFT * (0.26 + _smooth_noise(t, rng, 0.05, 0.3, 0.8)) * sub.scale
        ny = sub.sy + (0.04 + _smooth_noise(t, rng, 0.02, 0.3, 0.8)) * sub.scale
        pose.arms[LEFT] = ik(sub, LEFT, nx, ny)
        sx = sub.cx + RIGHT * rng.uniform(-0.02, 0.03) * sub.scale + 0 * t
        sy = sub.sy + rng.uniform(0.2, 0.24) * sub.scale + amp * np.sin(2 * np.pi * t / period)
        pose.arms[RIGHT] = ik(sub, RIGHT, sx, sy)
    elif name == "other_gestures":
        # Non-periodic smooth wandering of one or both hands through random targets (no class's rhythm).
        sides = [(RIGHT,), (LEFT,), (RIGHT, LEFT), (RIGHT, LEFT)][int(rng.integers(4))]
        for side in sides:
            hx0 = sub.cx + side * rng.uniform(0.1, 0.3) * sub.scale
            hy0 = sub.sy + rng.uniform(-0.1, 0.25) * sub.scale
            hx = hx0 + side * _smooth_noise(t, rng, 0.18 * sub.scale, 0.4, 1.5, k=4)
            hy = hy0 + _smooth_noise(t, rng, 0.18 * sub.scale, 0.4, 1.5, k=4)
            pose.arms[side] = ik(sub, side, hx, hy)
    else:  # both_arms_raise: elbows from about shoulder height (hands up, elbows bent) to overhead and back
        period = rng.uniform(1.2, 1.8)
        low_a1, high_a1 = rng.uniform(60, 80), rng.uniform(158, 170)
        for side in (RIGHT, LEFT):
            c = 0.5 - 0.5 * np.cos(2 * np.pi * t / period + rng.uniform(-0.15, 0.15))  # 1 = overhead
            a1 = low_a1 + (high_a1 - low_a1) * c
            pose.arms[side] = {"a1": a1, "a2": a1 + rng.uniform(80, 95) * (1 - c) + rng.uniform(5, 15) * c,
                               "f1": one, "f2": one}
    return pose


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def blend_gesture(rest: Pose, gesture: Pose, t: np.ndarray, duration: float, ramp: float) -> Pose:
    """Move smoothly from rest into the gesture and back over ``ramp`` seconds at both ends, in place."""
    w = _smoothstep(t / ramp) * _smoothstep((duration - t) / ramp)
    rest.dx = rest.dx + gesture.dx * w
    rest.dy = rest.dy + gesture.dy * w
    mid = t < duration / 2
    for side, tracks in gesture.arms.items():
        arm = rest.arms[side]
        for key in ("a1", "a2"):
            g, r = tracks[key], arm[key]
            # Rotations end many turns away from rest: blend towards the equivalent rest angle.
            k0 = np.round((g[0] - r[0]) / 360.0) if g.shape[0] else 0.0
            k1 = np.round((g[-1] - r[-1]) / 360.0) if g.shape[0] else 0.0
            r_eff = r + 360.0 * np.where(mid, k0, k1)
            arm[key] = r_eff + w * (g - r_eff)
        for key in ("f1", "f2"):
            arm[key] = arm[key] + w * (tracks[key] - arm[key])
    return rest


def keypoints(subject: Subject, pose: Pose) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Normalised (u, v) per frame of the figure's key points: ``neck``, ``head`` (centre), ``torso0..3``
    and, per arm side ``s`` in (-1, 1), shoulder ``sh{s}``, elbow ``el{s}`` and hand ``ha{s}``."""
    sub = subject
    cx, sy = sub.cx + pose.dx, sub.sy + pose.dy
    pts = {"neck": (cx, sy), "head": (cx, sy - sub.neck_len - sub.head_r * 0.6)}
    top, bottom = sy - 0.015, sy + 0.75 * sub.scale
    pts["torso0"] = (cx - 1.08 * sub.shoulder_w, top)
    pts["torso1"] = (cx + 1.08 * sub.shoulder_w, top)
    pts["torso2"] = (cx + sub.hip_w, bottom)
    pts["torso3"] = (cx - sub.hip_w, bottom)
    for side in (RIGHT, LEFT):
        arm = pose.arms[side]
        shx = cx + side * sub.shoulder_w
        a1, a2 = arm["a1"] * _DEG, arm["a2"] * _DEG
        ex = shx + side * sub.upper_len * arm["f1"] * np.sin(a1)
        ey = sy + sub.upper_len * arm["f1"] * np.cos(a1)
        hx = ex + side * sub.fore_len * arm["f2"] * np.sin(a2)
        hy = ey + sub.fore_len * arm["f2"] * np.cos(a2)
        pts[f"sh{side}"], pts[f"el{side}"], pts[f"ha{side}"] = (shx, sy), (ex, ey), (hx, hy)
    return pts


class FigureRenderer:
    """Draws the subject over the background for a sequence of poses at one sensor resolution.

    Geometry of all frames is computed up front (vectorised); the per-frame loop only issues a handful of
    antialiased cv2 drawing calls (``LINE_AA`` with 1/16 px fixed-point coordinates) into the region of the
    image the figure can reach, so the frames outside that region stay equal to the background.
    """

    def __init__(self, subject: Subject, pose: Pose, background: np.ndarray, place: Placement,
                 intensity_gain: float = 1.0, full_frame: bool = False):
        self.subject = subject
        self.place = place
        sub = subject
        S = place.side
        pts = keypoints(subject, pose)
        torso = [pts.pop(f"torso{i}") for i in range(4)]
        self.n = pose.dx.shape[0]
        # Region the figure can touch over all frames (+ margin), clipped to the sensor.
        margin = 0.06 * sub.scale + 3.0 / S
        us = np.concatenate([np.atleast_1d(p[0]) for p in list(pts.values()) + torso])
        vs = np.concatenate([np.atleast_1d(p[1]) for p in list(pts.values()) + torso])
        x0, y0 = place.to_px(us.min() - margin, vs.min() - margin - sub.head_r)
        x1, y1 = place.to_px(us.max() + margin, vs.max() + margin)
        self.x0 = int(np.clip(np.floor(x0), 0, place.width))
        self.y0 = int(np.clip(np.floor(y0), 0, place.height))
        self.x1 = int(np.clip(np.ceil(x1) + 1, self.x0, place.width))
        self.y1 = int(np.clip(np.ceil(y1) + 1, self.y0, place.height))
        if full_frame:
            self.x0, self.y0, self.x1, self.y1 = 0, 0, place.width, place.height

        def fx(p):
            px, py = place.to_px(p[0], p[1])
            px = np.broadcast_to(np.round((px - self.x0) * _FIX), (self.n,)).astype(np.int64)
            py = np.broadcast_to(np.round((py - self.y0) * _FIX), (self.n,)).astype(np.int64)
            return px, py

        cols = [fx(pts[k]) for k in ("neck", "head", "sh-1", "el-1", "ha-1", "sh1", "el1", "ha1")]
        cols += [fx(c) for c in torso]
        coords = np.stack([c for xy in cols for c in xy], axis=1)
        # Largest displacement of any key point from one frame to the next, in sensor pixels.
        step = np.abs(np.diff(coords, axis=0)).reshape(self.n - 1, -1, 2) if self.n > 1 else np.zeros((0, 1, 2))
        self.motion_px = np.concatenate([[0.0], np.hypot(step[..., 0], step[..., 1]).max(axis=1) / _FIX])
        self._coords = coords.tolist()  # F rows of python ints
        g = intensity_gain
        self.col_shirt = float(np.clip(sub.shirt * g, 0, 250))
        self.col_skin = float(np.clip(sub.skin * g, 0, 250))
        self.col_sleeve = float(np.clip(sub.sleeve * g, 0, 250))
        self.r_head = int(round(sub.head_r * S * _FIX))
        self.r_hand = int(round(sub.hand_r * S * _FIX))
        self.t_neck = max(1, int(round(0.04 * sub.scale * S)))
        self.t_upper = max(1, int(round(sub.upper_thick * S)))
        self.t_fore = max(1, int(round(sub.fore_thick * S)))
        # Cylindrical shading: a brighter stripe along each limb (inner edges, like folds of a sleeve).
        self.t_upper_hi = max(1, int(round(0.4 * sub.upper_thick * S)))
        self.t_fore_hi = max(1, int(round(0.4 * sub.fore_thick * S)))
        self.col_shirt_hi = float(min(self.col_shirt * 1.35 + 6, 252))
        self.r_hand_hi = int(round(0.55 * sub.hand_r * S * _FIX))
        self.col_skin_hi = float(min(self.col_skin * 1.2 + 4, 252))
        self.col_sleeve_hi = float(min(self.col_sleeve * 1.2 + 4, 252))
        bg = np.clip(np.round(background * g), 0, 255).astype(np.uint8)
        self.background = bg
        self.bg_roi = np.ascontiguousarray(bg[self.y0 : self.y1, self.x0 : self.x1])

    @property
    def roi(self) -> tuple[int, int, int, int]:
        return self.x0, self.y0, self.x1, self.y1

    def frame(self, k: int, out: np.ndarray | None = None) -> np.ndarray:
        """Frame ``k`` of the region of interest (uint8, shape (y1 - y0, x1 - x0))."""
        img = out if out is not None else np.empty_like(self.bg_roi)
        np.copyto(img, self.bg_roi)
        c = self._coords[k]
        aa, sh = cv2.LINE_AA, SHIFT
        torso = np.array(c[16:24], np.int32).reshape(4, 2)
        cv2.fillConvexPoly(img, torso, self.col_shirt, aa, sh)
        cv2.line(img, (c[0], c[1]), (c[2], c[3]), self.col_skin, self.t_neck, aa, sh)
        cv2.circle(img, (c[2], c[3]), self.r_head, self.col_skin, -1, aa, sh)
        for b in (4, 10):
            sh_, el, ha = (c[b], c[b + 1]), (c[b + 2], c[b + 3]), (c[b + 4], c[b + 5])
            cv2.line(img, sh_, el, self.col_shirt, self.t_upper, aa, sh)
            cv2.line(img, sh_, el, self.col_shirt_hi, self.t_upper_hi, aa, sh)
            cv2.line(img, el, ha, self.col_sleeve, self.t_fore, aa, sh)
            cv2.line(img, el, ha, self.col_sleeve_hi, self.t_fore_hi, aa, sh)
            cv2.circle(img, ha, self.r_hand, self.col_skin, -1, aa, sh)
            cv2.circle(img, ha, self.r_hand_hi, self.col_skin_hi, -1, aa, sh)
        return img
