"""A person in front of a simulated sensor, rendered chunk by chunk on an absolute µs clock (live performer).

:func:`~evapp.simulate.sequence.simulate_sequence` renders a whole recording at once; :class:`LiveScene`
renders the same physics incrementally: ``render(t_end_us)`` returns the events of ``(t_rendered, t_end_us]``
and keeps every pixel's state, the pose's sway and the sensor's hot pixels across calls, so a stream cut
into chunks is one continuous stream. Motions are added with :meth:`LiveScene.perform` at any time before
they start; between them the person rests (sway, noise, and the lamp's flicker when the sensor has one).

The pose on the frame grid ``t0_us + k / fps`` is a pure function of time: the rest sway comes from a fresh
``seed``-seeded generator at every chunk, and each motion from its own ``take_seed`` (``gesture_pose`` draws
the same numbers for any slice of times), so chunks join without a seam.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evapp.events import EVENT_DTYPE, LabelInterval
from evapp.simulate.dvs import DvsPixelArray, hot_pixels, noise_events, pack_sorted
from evapp.simulate.figure import SIM_MOTIONS, FigureRenderer, Placement, Pose, blend_gesture, gesture_pose
from evapp.simulate.person import PersonSettings
from evapp.simulate.scene import render_background
from evapp.simulate.sequence import _STREAM_MOTION, _STREAM_NOISE, _STREAM_PIXELS, _rng, select_frames

_STREAM_HOT = 5


@dataclass(frozen=True)
class Motion:
    """One scheduled motion: an index into ``SIM_MOTIONS``, ``[start_us, end_us)`` on the scene's clock."""

    motion_id: int
    start_us: int
    end_us: int
    seed: int


class LiveScene:
    """Incremental renderer of one person (``settings`` + ``subject_seed``) at ``resolution``.

    ``fps`` is the pose's sampling rate; with a flickering lamp every sample is rendered (the lamp changes
    every pixel), else only as many as keep the motion under ``max_px_per_frame`` pixels per frame (at least
    ``min_fps``), as in ``simulate_sequence``. ``ramp_s`` blends each motion in and out of the rest pose.
    """

    def __init__(self, settings: PersonSettings, resolution: tuple[int, int], subject_seed: int = 0, seed: int = 0,
                 *, t0_us: int = 0, fps: float = 1000.0, max_px_per_frame: float = 0.5, min_fps: float = 100.0,
                 ramp_s: float = 0.3):
        self.settings = settings
        self.width, self.height = int(resolution[0]), int(resolution[1])
        self.seed = int(seed)
        self.params = settings.dvs_params()
        self.place = Placement(self.width, self.height)
        texture, _level, self.subject = settings.scene(subject_seed)
        self.background = render_background(texture, self.place)
        self.gain = settings.lighting_gain
        self.fps, self.max_px, self.min_fps, self.ramp_s = float(fps), float(max_px_per_frame), float(min_fps), ramp_s
        self.dt_us = max(1, int(round(1e6 / fps)))
        self.t0_us = int(t0_us)
        key = (self.seed, self.width, self.height)
        self.pixels = DvsPixelArray(self.width, self.height, self.params, _rng(key[0], _STREAM_PIXELS, *key[1:]))
        self.flicker = self.params.flicker_amplitude > 0
        if self.flicker:  # the lamp's swing as sampled on the frame grid (over 1 s: every phase when fps and
            # flicker_hz are whole numbers), so only pixels it can really push over a threshold are visited
            grid = self._offset(self.t0_us + np.arange(int(round(self.fps)) + 1, dtype=np.int64) * self.dt_us)
            self.pixels.set_offset_range(float(grid.min()), float(grid.max()))
        self._noise_rng = _rng(key[0], _STREAM_NOISE, *key[1:])
        self._hot = hot_pixels(self.width * self.height, self.params, _rng(key[0], _STREAM_HOT, *key[1:]))
        self.motions: list[Motion] = []
        self.k_done = -1  # index of the last rendered frame on the grid t0 + k * dt
        self.events_total = 0

    # --- the clock --------------------------------------------------------------------------------------------

    @property
    def t_rendered_us(self) -> int:
        """Time of the last rendered frame (events up to it were returned); ``t0_us - dt`` before the first."""
        return self.t0_us + self.k_done * self.dt_us

    def perform(self, motion_id: int, start_us: int, seconds: float, take_seed: int) -> LabelInterval:
        """Schedule a motion (an index into ``SIM_MOTIONS``) from ``start_us`` for ``seconds``; it starts no
        earlier than the next frame to render and than the end of the previous motion. Returns its interval."""
        if not 0 <= int(motion_id) < len(SIM_MOTIONS):
            raise ValueError(f"motion {motion_id} is out of range 0..{len(SIM_MOTIONS) - 1}")
        start = max(int(start_us), self.t_rendered_us + self.dt_us, *(m.end_us for m in self.motions[-1:]))
        motion = Motion(int(motion_id), start, start + max(1, int(round(seconds * 1e6))), int(take_seed))
        self.motions.append(motion)
        return LabelInterval(motion.motion_id, motion.start_us, motion.end_us)

    def busy_until_us(self) -> int:
        """End of the last scheduled motion (``t0_us`` when none)."""
        return max([self.t0_us, *(m.end_us for m in self.motions)])

    # --- rendering ---------------------------------------------------------------------------------------------

    def _pose(self, t_us: np.ndarray) -> Pose:
        t_s = (t_us - self.t0_us) * 1e-6
        pose = Pose.rest(t_s, self.subject, _rng(self.seed, _STREAM_MOTION))
        for m in self.motions:
            if m.end_us < t_us[0] or m.start_us > t_us[-1]:
                continue
            sl = slice(int(np.searchsorted(t_us, m.start_us)), int(np.searchsorted(t_us, m.end_us, side="right")))
            if sl.stop <= sl.start:
                continue
            local = (t_us[sl] - m.start_us) * 1e-6
            duration = (m.end_us - m.start_us) * 1e-6
            part = Pose(dx=pose.dx[sl].copy(), dy=pose.dy[sl].copy(),
                        arms={s: {k: v[sl].copy() for k, v in arm.items()} for s, arm in pose.arms.items()})
            gesture = gesture_pose(m.motion_id, local, self.subject, _rng(m.seed, _STREAM_MOTION))
            part = blend_gesture(part, gesture, local, duration, min(self.ramp_s, duration / 3))
            pose.dx[sl], pose.dy[sl] = part.dx, part.dy
            for side, arm in part.arms.items():
                for key, val in arm.items():
                    pose.arms[side][key][sl] = val
        return pose

    def _offset(self, t_us: np.ndarray) -> np.ndarray:
        p = self.params
        return np.log1p(p.flicker_amplitude * np.sin(2 * np.pi * p.flicker_hz * ((t_us - self.t0_us) * 1e-6)))

    def render(self, t_end_us: int) -> np.ndarray:
        """Events of ``(t_rendered_us, t_end_us]`` (``EVENT_DTYPE``, sorted, absolute µs); empty when no new
        frame falls in that span."""
        k_end = (int(t_end_us) - self.t0_us) // self.dt_us
        if k_end <= self.k_done:
            return np.zeros(0, EVENT_DTYPE)
        first = self.k_done < 0
        k0 = 0 if first else self.k_done  # the previous chunk's last frame: motion is measured from it
        t_us = self.t0_us + np.arange(k0, k_end + 1, dtype=np.int64) * self.dt_us
        offsets = self._offset(t_us).tolist() if self.flicker else None
        renderer = FigureRenderer(self.subject, self._pose(t_us), self.background, self.place, self.gain,
                                  full_frame=True)
        buf = np.empty_like(renderer.bg_roi)
        if first:
            self.pixels.reset(renderer.frame(0, buf), int(t_us[0]), offsets[0] if self.flicker else 0.0)
        if self.flicker:
            frames = range(1, len(t_us))
        else:
            frames = select_frames(renderer.motion_px, t_us, self.max_px, self.min_fps)[1:].tolist()
        times = t_us.tolist()
        for k in frames:
            self.pixels.step(renderer.frame(k, buf), times[k], offsets[k] if self.flicker else None)
        t_from = int(t_us[0]) if first else int(t_us[0]) + 1
        parts = [self.pixels.take(), noise_events(self.width, self.height, t_from, int(t_us[-1]) + 1, self.params,
                                                  self._noise_rng, hot=self._hot)]
        self.k_done = k_end
        self.motions = [m for m in self.motions if m.end_us >= t_us[-1]]  # finished ones are never needed again
        events = pack_sorted(parts)
        self.events_total += events.shape[0]
        return events
