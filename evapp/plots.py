"""The PNG figures evapp writes: confusion matrices, learning curves, accuracy since gesture onset.

Drawn with matplotlib's object API on the Agg canvas (no pyplot, so no global backend state: the Qt window in
the same process is never touched).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _figure(width_in: float, height_in: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path) -> Path:
    path = Path(path)
    try:
        fig.savefig(path)
    except OSError as exc:
        raise OSError(f"could not write {path} ({exc.strerror or exc})") from None
    return path


def beside(confusion_png, figure: str) -> Path:
    """Where another figure goes beside a confusion matrix: ``demo_confusion.png`` -> ``demo_onset.png``,
    ``confusion.png`` -> ``onset.png``."""
    path = Path(confusion_png)
    stem = path.stem.removesuffix("confusion").rstrip("_-")
    return path.with_name(f"{stem}_{figure}.png" if stem else f"{figure}.png")


def confusion_matrix_png(conf, names: list[str], path, title: str = "",
                         footer: str = "rows: labelled class, columns: class shown", column_names=None) -> Path:
    """A confusion matrix as a PNG: colours normalised per row, counts in the cells."""
    conf = np.asarray(conf)
    column_names = list(names if column_names is None else column_names)
    rows, cols = conf.shape
    norm = conf / np.maximum(conf.sum(axis=1, keepdims=True), 1)
    fig = _figure(2.5 + 0.5 * cols, 2.2 + 0.45 * rows)
    ax = fig.add_subplot()
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    for r in range(rows):
        for c in range(cols):
            if conf[r, c]:
                ax.text(c, r, str(int(conf[r, c])), ha="center", va="center", fontsize=8,
                        color="white" if norm[r, c] > 0.5 else "black")
    ax.set_xticks(range(cols), [n.replace("_", " ") for n in column_names], rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(rows), [n.replace("_", " ") for n in names[:rows]], fontsize=8)
    ax.set_xlabel(footer, fontsize=9)
    if title:
        ax.set_title(title, fontsize=10)
    return _save(fig, path)


def learning_curve_png(history: list[dict], path, title: str = "") -> Path:
    """Train loss and validation accuracy per epoch (``metrics.jsonl`` rows: ``epoch``, ``train_loss``,
    ``test_clip_accuracy`` or ``held_out_accuracy``)."""
    epochs = [h["epoch"] for h in history]
    loss = [h.get("train_loss") for h in history]
    acc = [h.get("test_clip_accuracy", h.get("held_out_accuracy")) for h in history]
    fig = _figure(6.4, 3.8)
    ax = fig.add_subplot()
    ax.plot(epochs, [np.nan if v is None else v for v in loss], "o-", color="tab:red", label="train loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("train loss", color="tab:red")
    right = ax.twinx()
    right.plot(epochs, [np.nan if v is None else 100 * v for v in acc], "s-", color="tab:blue",
               label="validation accuracy")
    right.set_ylabel("validation clip accuracy (%)", color="tab:blue")
    right.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title, fontsize=10)
    return _save(fig, path)


def onset_curve_png(curves: dict[str, dict], path, title: str = "") -> Path:
    """Accuracy against time since gesture onset, one line per curve (``t_ms``, ``accuracy``; the median time to
    a stable correct label marked on each)."""
    fig = _figure(6.4, 3.8)
    ax = fig.add_subplot()
    for (name, curve), colour in zip(curves.items(), ("tab:blue", "tab:orange", "tab:green"), strict=False):
        acc = [np.nan if a is None else 100 * a for a in curve["accuracy"]]
        ax.plot(curve["t_ms"], acc, color=colour, label=f"{name} ({curve['gestures_at_onset']} gestures)")
        median = curve["stable_ms"]["median"]
        if median is not None:
            ax.axvline(median, color=colour, linestyle=":", linewidth=1)
    ax.set_xlabel("time since the gesture's labelled start (ms)")
    ax.set_ylabel("gestures shown correctly (%)")
    ax.set_ylim(0, 101.5)  # a line at 100 % stays in view
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8, title="dotted: median time to a stable correct label",
              title_fontsize=7)
    if title:
        ax.set_title(title, fontsize=10)
    return _save(fig, path)
