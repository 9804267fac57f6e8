"""The window's two rows of controls (replay and recording; model, engine, policy, device, N) and the model box.

``build_controls(window)`` makes the widgets as attributes of the window (``window.play_button``,
``window.model_box``, ...) and connects them to its methods; it returns the two rows for the window's layout.
"""

from __future__ import annotations

from pathlib import Path

from PyQt6.QtCore import Qt
from PyQt6.QtWidgets import QCheckBox, QComboBox, QHBoxLayout, QLabel, QPushButton, QSlider, QSpinBox

SPEEDS = (("0.25x", 0.25), ("0.5x", 0.5), ("1x", 1.0), ("2x", 2.0), ("4x", 4.0), ("max", None))
POLICIES = ("auto", "window", "staggered:4", "persistent")


def model_entries(current: str | None) -> list[tuple[str, str | None]]:
    """The model box's (text, model name) rows: no model, the artifacts in ``models/``, the architectures without
    one (untrained), and ``current`` when the command line named an artifact folder by path (``--model
    path/to/artifact``), so that it can be switched back to after switching away."""
    from evapp.engine.loading import find_artifact, list_artifacts, model_names
    from evapp.paths import models_dir

    trained = {a.name for a in list_artifacts()}
    rows: list[tuple[str, str | None]] = [("(no model)", None)]
    rows += [(name if name in trained else f"{name} (untrained)", name) for name in model_names()]
    if current and all(data != current for _, data in rows):
        artifact = find_artifact(current)
        shipped = artifact is not None and artifact.name in trained and (
            Path(current).resolve() == (models_dir() / artifact.name).resolve())
        if not shipped:  # the same folder as a listed artifact is that entry (model_index finds it)
            rows.append((f"{artifact.name if artifact else Path(current).name} ({current})", current))
    return rows


def model_index(box: QComboBox, name: str | None) -> int:
    """The box's row of model ``name`` (a path to an artifact in ``models/`` finds that artifact's row)."""
    index = box.findData(name)
    if index < 0 and name:
        index = box.findData(Path(name).name)
    return max(0, index)


def build_controls(window) -> tuple[QHBoxLayout, QHBoxLayout]:
    pipeline = window.pipeline
    window.play_button = QPushButton("Pause")
    window.play_button.clicked.connect(window.toggle_pause)
    window.speed_box = QComboBox()
    for text, _ in SPEEDS:
        window.speed_box.addItem(text)
    speed = pipeline.speed
    window.speed_box.setCurrentIndex(next((i for i, (_, s) in enumerate(SPEEDS) if s == speed), 2))
    window.speed_box.currentIndexChanged.connect(lambda i: pipeline.set_speed(SPEEDS[i][1]))
    window.seek_slider = QSlider(Qt.Orientation.Horizontal)
    window.seek_slider.setRange(0, max(1, int((window.timeline.duration_us or 0) / 1e5)))  # 0.1 s steps
    window.seek_slider.sliderReleased.connect(lambda: window.seek_to(window.seek_slider.value() / 10))
    window.position_label = QLabel("0.0 s")
    window.loop_box = QCheckBox("Loop")
    window.loop_box.setChecked(pipeline.loop)
    window.loop_box.toggled.connect(window._set_loop)
    window.reset_button = QPushButton("Reset")
    window.reset_button.clicked.connect(window.reset_state)
    window.record_button = QPushButton("Record")
    window.record_button.setCheckable(True)
    window.record_button.clicked.connect(window._record_clicked)
    window.screenshot_button = QPushButton("Screenshot")
    window.screenshot_button.clicked.connect(lambda: window.save_screenshot())
    for widget in (window.speed_box, window.seek_slider, window.loop_box):
        widget.setEnabled(not window.is_live)
    window.record_button.setEnabled(window.is_live and window.recorder_factory is not None)
    if not window.is_live:
        window.record_button.setToolTip("Recording is for live cameras and streams.")
    else:
        window.record_button.setToolTip("While recording, keys 1-9 and 0 (or a click on a class bar) label a "
                                        "gesture: press once to start it, again to end it.")

    controls = QHBoxLayout()
    for widget in (window.play_button, QLabel("Speed"), window.speed_box):
        controls.addWidget(widget)
    controls.addWidget(window.seek_slider, 1)
    for widget in (window.position_label, window.loop_box, window.reset_button, window.record_button,
                   window.screenshot_button):
        controls.addWidget(widget)

    window.model_box = QComboBox()
    for text, data in model_entries(window.model_name):
        window.model_box.addItem(text, data)
    window.model_box.setCurrentIndex(model_index(window.model_box, window.model_name))
    window.policy_box = QComboBox()
    window.policy_box.setEditable(True)  # staggered:K with any K
    window.policy_box.addItems(POLICIES)
    window.policy_box.setCurrentText(window._asked_policy(pipeline.model))
    window.engine_box = QComboBox()
    window.engine_box.addItems(["torch", "onnx"])  # PyTorch, or ONNX Runtime on the exported step
    window.engine_box.setCurrentText(window.engine_kind)
    window.device_box = QComboBox()
    window.device_box.addItems(["auto", "cpu", "cuda"])
    window.device_box.setCurrentText(window.device)
    window.apply_button = QPushButton("Apply model")
    window.apply_button.clicked.connect(window._apply_model_clicked)
    window.n_box = QSpinBox()
    window.n_box.setRange(100, 1_000_000)
    window.n_box.setSingleStep(500)
    window.n_box.setValue(pipeline.binner.n)
    window.n_box.editingFinished.connect(lambda: window.set_events_per_frame(window.n_box.value()))
    models = QHBoxLayout()
    for widget in (QLabel("Model"), window.model_box, QLabel("Engine"), window.engine_box, QLabel("Policy"),
                   window.policy_box, QLabel("Device"), window.device_box, window.apply_button,
                   QLabel("Events/frame"), window.n_box):
        models.addWidget(widget)
    models.addStretch(1)
    models.addWidget(QLabel("drag on the view: region of interest, right-click: default"))
    return controls, models
