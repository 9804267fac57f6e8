"""What a measurement ran on: one line for the benchmark tables, one for a training run's run.json."""

from __future__ import annotations

import os
import platform

__all__ = ["describe_device", "describe_machine"]


def describe_machine() -> str:
    """One line: CPU model, cores visible, memory, Python, numpy and torch versions, GPU if any."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kib = int(f.readline().split()[1])
            mem = f", {kib / 2**20:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    import numpy as np

    parts = [f"{cpu}, {os.cpu_count()} cores{mem}", f"Python {platform.python_version()}", f"numpy {np.__version__}"]
    try:
        import torch

        parts.append(f"torch {torch.__version__}")
        if torch.cuda.is_available():
            parts.append(f"GPU {torch.cuda.get_device_name(0)}")
    except ImportError:
        pass
    return "machine: " + "; ".join(parts)


def describe_device(device) -> str:
    """The device a model trained on (a ``torch.device``): the GPU's name, or the CPU and its cores."""
    import torch

    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (torch {torch.__version__})"
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (torch {torch.__version__}, CPU)"
