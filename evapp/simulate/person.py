"""Who stands in front of the simulated camera, as data: a person the trained models have never seen.

Every model here was trained on ``evapp simulate`` data, whose people come from ``Subject.random``, whose
rooms from ``make_background``, whose sensors from ``DvsParams()`` (or ``--vary-sensor``) at 128x128 or
640x480, under the ``LIGHTINGS`` presets and without flicker. :class:`PersonSettings` describes one person,
room and sensor; ``NEWCOMER`` is a preset chosen to lie outside all of those training ranges, so a model's
accuracy on it measures what fine-tuning on a new user has to fix.

Identity and performance are separate: the settings and a ``subject_seed`` fix the person (small jitter of
the body and the room's layout); each recording's choreography comes from its own ``seed``. "Other
recordings of the same person" are therefore the same settings and ``subject_seed`` with other seeds.

Where each ``NEWCOMER`` number comes from (training ranges in brackets, from ``Subject.random``,
``make_background``, ``DvsParams`` and ``write_dataset``):

- ``scale`` 1.45: body size in the frame, a tall person or one standing closer [1.05..1.3].
- ``cx`` 0.39, ``sy`` 0.53: shoulder centre off to the image's left and lower (room for raised arms in
  the frame) [cx 0.45..0.55, sy 0.38..0.46].
- ``shoulder_factor`` 1.2: shoulders wider, as in a padded coat [0.92..1.08 times 0.12 * scale].
- ``arm_length_factor`` 1.12: longer arms [upper 0.95..1.05 times 0.15 * scale, fore 0.14 * scale].
- ``limb_thickness_factor`` 1.4: thick coat sleeves [exactly 1: 0.045 and 0.038 times scale].
- ``hip_factor`` 1.3: a coat that flares below the waist [0.9..1.1 times 0.1 * scale].
- ``coat`` 22, ``skin`` 120 (0-255 at gain 1), long sleeves: a dark coat, darker skin [shirt 0.35..0.55 or
  1.7..2.4 times the background level; skin 150..215]; against this room the coat is 0.14 of the wall.
- ``rest_a1`` 15 deg, ``rest_bend`` 16 deg: coat arms hang further out and bent [5..12 and 3..12].
- ``background`` "shelves" at ``background_level`` 150: stripes, shelf boards and books with log contrasts
  0.15-0.6, a brighter room [make_background: blurred noise, log contrast about 0.1, level 50..100].
- ``threshold`` 0.3, ``threshold_sigma`` 0.04: a less sensitive bias setting [0.2 +- 0.03; ``--vary-sensor``
  draws 0.15..0.5, which includes 0.3]; 0.3 is the upper end of v2e's typical 0.2-0.3.
- ``noise_rate_hz`` 0.5: a warmer sensor's background activity [0.1; ``--vary-sensor`` 0.01..0.2].
- ``flicker_amplitude`` 0.22 at ``flicker_hz`` 100: a fluorescent tube on a magnetic ballast under 50 Hz
  mains flickers at twice the mains frequency with a modulation of tens of percent; mixed with daylight or
  LED light the scene's relative modulation is smaller. The swing in log intensity, log(1.22 / 0.78) =
  0.45, exceeds the 0.3 threshold, yet a pixel fires at 100 Hz for long only where its ON and OFF
  thresholds (independent mismatch) match closely; the others drift into silence after a few cycles. So
  the whole sensor fires at first and a few percent of its pixels keep firing at about 90 Hz, everywhere:
  at 320x240 the resting person gives about 0.3 M events/s (0.04 without flicker, mostly the 0.5 Hz noise)
  and both_arms_raise about 0.8, so the figure stays plainly visible. At 0.25 the flicker alone is about
  0.9 M events/s and at 0.14 it adds almost nothing [training: no flicker].
- resolution: the caller's; 320x240 (DVXplorer Lite) was never trained on [128x128 and 640x480].
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from evapp.simulate.dvs import DvsParams
from evapp.simulate.figure import Subject
from evapp.simulate.scene import make_background, make_shelves_background

BACKGROUNDS = ("shelves", "training")  # "training": make_background's kind, at the person's level


@dataclass(frozen=True)
class PersonSettings:
    """One simulated person, room and sensor (see the module docstring for the ``NEWCOMER`` numbers).

    Body lengths are in units of the central square, as multiples of ``Subject.random``'s formulas;
    intensities are 0-255 at lighting gain 1. ``jitter`` is the relative spread that ``subject_seed`` adds
    to the body (a different ``subject_seed`` is a similar but different person, in a differently laid out
    room)."""

    name: str = "newcomer"
    scale: float = 1.45
    cx: float = 0.39
    sy: float = 0.53
    shoulder_factor: float = 1.2
    arm_length_factor: float = 1.12
    limb_thickness_factor: float = 1.4
    hip_factor: float = 1.3
    head_factor: float = 1.0
    coat: float = 22.0
    skin: float = 120.0
    long_sleeves: bool = True
    rest_a1: float = 15.0
    rest_bend: float = 16.0
    background: str = "shelves"
    background_level: float = 150.0
    background_contrast: float = 1.0
    lighting_gain: float = 1.0
    threshold: float = 0.3
    threshold_sigma: float = 0.04
    noise_rate_hz: float = 0.5
    flicker_amplitude: float = 0.22
    flicker_hz: float = 100.0
    jitter: float = 0.02

    def __post_init__(self):
        if self.background not in BACKGROUNDS:
            raise ValueError(f"background {self.background!r} is not one of {', '.join(BACKGROUNDS)}")
        if not 0 <= self.flicker_amplitude < 1:
            raise ValueError("flicker_amplitude must lie in [0, 1)")

    def dvs_params(self, base: DvsParams | None = None) -> DvsParams:
        """The person's sensor: ``base`` (default ``DvsParams()``) with its thresholds, noise and lamp."""
        return replace(base or DvsParams(), threshold_on=self.threshold, threshold_off=self.threshold,
                       threshold_sigma=self.threshold_sigma, noise_rate_hz=self.noise_rate_hz,
                       flicker_amplitude=self.flicker_amplitude, flicker_hz=self.flicker_hz)

    def scene(self, subject_seed: int) -> tuple[np.ndarray, float, Subject]:
        """``(background texture, its level, subject)``: a pure function of the settings and ``subject_seed``."""
        rng = np.random.default_rng(np.random.SeedSequence([int(subject_seed) & 0xFFFFFFFF, 101]))
        if self.background == "shelves":
            texture, level = make_shelves_background(rng, self.background_level, self.background_contrast)
        else:
            texture, level = make_background(rng)
            texture = np.clip(texture * (self.background_level / level), 2.0, 250.0).astype(np.float32)
            level = self.background_level
        return texture, level, self.subject(rng)

    def subject(self, rng: np.random.Generator) -> Subject:
        """The body, with ``jitter`` drawn from ``rng`` (multiplicative, centred on the settings)."""

        def j() -> float:
            return float(1.0 + rng.uniform(-self.jitter, self.jitter))

        s = self.scale * j()
        arm = self.arm_length_factor
        thick = self.limb_thickness_factor
        return Subject(
            cx=self.cx + 0.5 * self.jitter * float(rng.uniform(-1, 1)),
            sy=self.sy + 0.5 * self.jitter * float(rng.uniform(-1, 1)),
            scale=s,
            shoulder_w=0.12 * s * self.shoulder_factor * j(),
            upper_len=0.15 * s * arm * j(),
            fore_len=0.14 * s * arm * j(),
            upper_thick=0.045 * s * thick,
            fore_thick=0.038 * s * thick,
            hand_r=0.034 * s,
            head_r=0.068 * s * self.head_factor * j(),
            neck_len=0.085 * s,
            hip_w=0.1 * s * self.hip_factor * j(),
            shirt=float(self.coat * j()),
            skin=float(self.skin * j()),
            sleeve=float(self.coat if self.long_sleeves else self.skin),
            rest_a1=self.rest_a1 * j(),
            rest_bend=self.rest_bend * j(),
        )


NEWCOMER = PersonSettings()
PERSONS: dict[str, PersonSettings] = {"newcomer": NEWCOMER}


def person_by_name(name: str) -> PersonSettings:
    """A preset by name (``newcomer``); ValueError naming the presets for any other."""
    try:
        return PERSONS[name]
    except KeyError:
        raise ValueError(f"unknown person {name!r}; choose one of {', '.join(PERSONS)}") from None
