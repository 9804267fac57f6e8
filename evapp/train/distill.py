"""Knowledge distillation against forgetting while fine-tuning (Li & Hoiem, "Learning without Forgetting",
2017; Hinton et al., "Distilling the Knowledge in a Neural Network", 2015): on the rehearsal clips the fine-tuned
model is also taught the base's own answer over the classes both know, not only the hard label.

The base's answer holds what a hard label does not (which wrong classes it finds close), and keeping it on the
base's own data keeps the features the base's classes need.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class Teacher:
    """The frozen base and the rows of the classes it shares with the fine-tuned model, in the same order."""

    model: torch.nn.Module
    student_rows: torch.Tensor  # rows of the fine-tuned model's logits
    teacher_rows: torch.Tensor  # the same classes' rows of the base's logits
    weight: float = 1.0
    temperature: float = 2.0  # Hinton et al.'s soft targets

    @classmethod
    def of(cls, base, student_names, weight: float) -> Teacher:
        base_names = list(base.cfg.class_names)
        shared = [n for n in student_names if n in base_names]
        for p in base.parameters():
            p.requires_grad_(False)
        return cls(base.eval(), torch.tensor([list(student_names).index(n) for n in shared]),
                   torch.tensor([base_names.index(n) for n in shared]), weight)

    def loss(self, x: torch.Tensor, student_logits: torch.Tensor, rehearsed: torch.Tensor) -> torch.Tensor:
        """``weight`` x T^2 x KL(base || fine-tuned) over the shared classes, on the clips ``rehearsed`` marks
        (``x`` [T, B, ...] as the student saw it, after augmentation)."""
        if not rehearsed.any():
            return student_logits.sum() * 0.0
        with torch.no_grad():
            target = self.model(x[:, rehearsed]).float()[:, self.teacher_rows.to(x.device)]
        student = student_logits[rehearsed].float()[:, self.student_rows.to(x.device)]
        t = self.temperature
        kl = F.kl_div(F.log_softmax(student / t, -1), F.log_softmax(target / t, -1), log_target=True,
                      reduction="batchmean")
        return self.weight * t * t * kl
