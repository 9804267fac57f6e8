"""Sequences of gestures with pauses, rendered through the DVS pixel model at any sensor resolution.

Random streams are split by purpose with ``numpy.random.SeedSequence``: the subject and background
(``subject_seed``), the choreography (``seed``), and, per resolution, the pixel mismatch and the noise. The
first two do not depend on the resolution, so one performance renders identically at 128x128 and 640x480
(the wider sensor only adds background at its sides and has its own pixels).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from evapp.events import LabelInterval, SensorGeometry
from evapp.simulate.dvs import DvsParams, DvsPixelArray, noise_events, pack_sorted
from evapp.simulate.figure import (
    LIGHTINGS,
    SIM_MOTIONS,
    FigureRenderer,
    Placement,
    Pose,
    Subject,
    blend_gesture,
    gesture_pose,
    make_background,
    render_background,
)

if TYPE_CHECKING:
    from evapp.simulate.person import PersonSettings

_STREAM_SUBJECT, _STREAM_MOTION, _STREAM_PIXELS, _STREAM_NOISE = 1, 2, 3, 4


def geometry_for(resolution: tuple[int, int]) -> SensorGeometry:
    """Sensor geometry for ``(width, height)``, named after the camera it imitates."""
    w, h = int(resolution[0]), int(resolution[1])
    name = {(128, 128): "DVS128", (640, 480): "DVXplorer", (320, 240): "DVXplorer_Lite",
            (346, 260): "DAVIS346"}.get((w, h), f"simulated_{w}x{h}")
    return SensorGeometry(w, h, name)


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(k) & 0xFFFFFFFF for k in key]))


def _slice_pose(pose: Pose, sl: slice) -> Pose:
    out = Pose(dx=pose.dx[sl].copy(), dy=pose.dy[sl].copy())
    out.arms = {side: {k: v[sl].copy() for k, v in arm.items()} for side, arm in pose.arms.items()}
    return out


def _put_pose(pose: Pose, sl: slice, part: Pose) -> None:
    pose.dx[sl], pose.dy[sl] = part.dx, part.dy
    for side, arm in part.arms.items():
        for k, v in arm.items():
            pose.arms[side][k][sl] = v


def choreography(classes: Sequence[int], seed: int, pause_s: float, gesture_s: float, fps: float,
                 subject: Subject, ramp_s: float = 0.3) -> tuple[np.ndarray, Pose, list[LabelInterval]]:
    """Frame times (µs), per-frame pose and labels of: pause, gesture, pause, ..., gesture, pause.

    ``classes`` are indices into ``SIM_MOTIONS`` (0..10 DVS128 Gesture's, 11 ``both_arms_raise``)."""
    rng = _rng(seed, _STREAM_MOTION)
    dt_us = max(1, int(round(1e6 / fps)))
    pause_us, gesture_us = int(round(pause_s * 1e6)), int(round(gesture_s * 1e6))
    total_us = pause_us + len(classes) * (gesture_us + pause_us)
    t_us = np.arange(0, total_us + dt_us, dt_us, dtype=np.int64)
    t_s = t_us * 1e-6
    pose = Pose.rest(t_s, subject, rng)
    labels = []
    ramp = min(ramp_s, gesture_s / 3)
    for i, cls in enumerate(classes):
        cls = int(cls)
        if not 0 <= cls < len(SIM_MOTIONS):
            raise ValueError(f"gesture class {cls} is out of range 0..{len(SIM_MOTIONS) - 1}")
        start = pause_us + i * (gesture_us + pause_us)
        end = start + gesture_us
        labels.append(LabelInterval(cls, start, end))
        sl = slice(int(np.searchsorted(t_us, start)), int(np.searchsorted(t_us, end, side="right")))
        local = (t_us[sl] - start) * 1e-6
        part = blend_gesture(_slice_pose(pose, sl), gesture_pose(cls, local, subject, rng), local,
                             gesture_s, ramp)
        _put_pose(pose, sl, part)
    return t_us, pose, labels


def select_frames(motion_px: np.ndarray, t_us: np.ndarray, max_px: float, min_fps: float) -> np.ndarray:
    """Indices of the frames to render: a new one whenever the accumulated motion reaches ``max_px`` or the
    time since the last reaches ``1 / min_fps``; always the first and the last frame."""
    n = motion_px.shape[0]
    if max_px <= 0 or n <= 2:
        return np.arange(n)
    travel = np.floor(np.cumsum(motion_px) / max_px)
    gap_us = 1e6 / max(min_fps, 1e-3)
    tick = np.floor((t_us - t_us[0]) / gap_us)
    new = np.empty(n, bool)
    new[0] = new[-1] = True
    new[1:-1] = (np.diff(travel)[:-1] > 0) | (np.diff(tick)[:-1] > 0)
    # travel jumps at frame k when the motion *into* k crossed a multiple of max_px: render k.
    return np.flatnonzero(new)


def simulate_sequence(
    classes: Sequence[int],
    seed: int,
    resolution: tuple[int, int] = (128, 128),
    pause_s: float = 1.0,
    gesture_s: float = 2.0,
    *,
    fps: float = 2000.0,
    max_px_per_frame: float = 0.5,
    min_fps: float = 100.0,
    lighting: str | None = None,
    subject_seed: int | None = None,
    params: DvsParams | None = None,
    ramp_s: float = 0.3,
    person: PersonSettings | None = None,
) -> tuple[np.ndarray, list[LabelInterval], SensorGeometry]:
    """Render a subject performing ``classes`` (0-based ids into ``SIM_MOTIONS``) in order, with pauses, as DVS
    events.

    Returns ``(events, labels, geometry)``: events in ``EVENT_DTYPE``, sorted, rebased so that the first
    event is at t = 0; labels (0-based classes, ``[start_us, end_us)``) on that same clock. The result is a
    pure function of the arguments. ``subject_seed`` (default ``seed``) picks the person and the background,
    ``seed`` the choreography (speed, amplitude, details). The pose is sampled at ``fps``; of those frames,
    only as many are rendered as keep every key point's motion between rendered frames under
    ``max_px_per_frame`` sensor pixels, with at least ``min_fps`` (adaptive sampling as in ESIM, Rebecq et
    al., CoRL 2018: pauses cost little, fast motion and large sensors get more frames; 0 renders all).
    Rendered frames become events through :class:`DvsPixelArray` with ``params`` (default
    :class:`DvsParams`). ``person`` (:class:`~evapp.simulate.person.PersonSettings`) replaces the random
    subject and background by that person's (picked by ``subject_seed``), and the default ``params`` by its
    sensor (``person.dvs_params()``); a ``lighting`` then only scales its brightness.
    """
    params = params or (person.dvs_params() if person is not None else DvsParams())
    if lighting is not None and lighting not in LIGHTINGS:
        raise ValueError(f"unknown lighting {lighting!r}; choose one of {', '.join(LIGHTINGS)}")
    if fps <= 0 or gesture_s <= 0 or pause_s < 0:
        raise ValueError("fps and gesture_s must be positive and pause_s non-negative")
    geometry = geometry_for(resolution)
    w, h = geometry.width, geometry.height
    place = Placement(w, h)
    if person is None:
        scene_rng = _rng(seed if subject_seed is None else subject_seed, _STREAM_SUBJECT)
        texture, level = make_background(scene_rng, lighting)
        subject = Subject.random(scene_rng, level)
    else:
        texture, level, subject = person.scene(seed if subject_seed is None else subject_seed)
    t_us, pose, labels = choreography(classes, seed, pause_s, gesture_s, fps, subject, ramp_s)

    gain = LIGHTINGS.get(lighting or "fluorescent")[0] * (person.lighting_gain if person is not None else 1.0)
    background = render_background(texture, place)
    flicker = params.flicker_amplitude > 0
    renderer = FigureRenderer(subject, pose, background, place, gain, full_frame=flicker)
    x0, y0, x1, y1 = renderer.roi
    pixels = DvsPixelArray(x1 - x0, y1 - y0, params, _rng(seed, _STREAM_PIXELS, w, h))
    offsets = None
    if flicker:
        offsets = np.log1p(params.flicker_amplitude * np.sin(2 * np.pi * params.flicker_hz * t_us * 1e-6))
        offsets = offsets.tolist()
    bufs = [np.empty_like(renderer.bg_roi), np.empty_like(renderer.bg_roi)]
    if flicker:  # only pixels the lamp's swing can push over a threshold are visited (same events, faster)
        pixels.set_offset_range(min(offsets), max(offsets))
    pixels.reset(renderer.frame(0, bufs[0]), int(t_us[0]), offsets[0] if flicker else 0.0)
    frames = select_frames(renderer.motion_px, t_us, max_px_per_frame, min_fps) if not flicker else None
    frames = frames if frames is not None else np.arange(len(t_us))
    times = t_us.tolist()
    for i, k in enumerate(frames[1:].tolist()):
        pixels.step(renderer.frame(k, bufs[i & 1]), times[k], offsets[k] if flicker else None)
    parts = [pixels.take(x0, y0), noise_events(w, h, 0, int(t_us[-1]), params, _rng(seed, _STREAM_NOISE, w, h))]
    events = pack_sorted(parts)
    if events.shape[0]:
        t_first = int(events["timestamp"][0])
        events["timestamp"] -= t_first
        labels = [LabelInterval(lab.class_id, max(0, lab.start_us - t_first), lab.end_us - t_first)
                  for lab in labels]
    return events, labels, geometry


def render_performance(
    class_id: int,
    seed: int,
    resolution: tuple[int, int] = (128, 128),
    gesture_s: float = 2.0,
    pause_s: float = 0.5,
    **kwargs,
) -> tuple[np.ndarray, list[LabelInterval], SensorGeometry]:
    """One gesture between two pauses; ``(seed, class_id, resolution)`` (and the options) fix the events."""
    return simulate_sequence([class_id], seed, resolution, pause_s=pause_s, gesture_s=gesture_s, **kwargs)
