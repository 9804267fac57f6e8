"""``evapp collect`` in the window (offscreen, pytest-qt): the prompt panel follows the session on a stand-in camera,
Backspace asks for the last take again, and closing the window keeps every finished take."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("PyQt6", reason="the window needs PyQt6")
from PyQt6.QtCore import Qt  # noqa: E402

from evapp.collect.protocol import CollectPlan  # noqa: E402
from evapp.collect.run import open_session  # noqa: E402
from evapp.collect.session import prepare_folder  # noqa: E402
from evapp.gui.collect_window import CollectWindow  # noqa: E402
from evapp.model_setup import ModelChoice, ModelSetup  # noqa: E402
from evapp.pipeline import Pipeline  # noqa: E402
from evapp.testing import free_port, start_server  # noqa: E402


def test_the_panel_prompts_each_take_and_backspace_redoes_the_last(qtbot, tmp_path):
    from evapp.sources.live import open_live

    port = free_port()
    server = start_server(port, 1_200_000, seed=41, rate=60_000, batch=1000, paced=True)
    source = open_live(f"tcp://127.0.0.1:{port}")
    pipeline = Pipeline(source, ModelSetup.frames_only())
    plan = CollectPlan(("wave", "clap"), takes=1, take_s=0.6, pause_s=0.4, countdown_s=0.3)
    session = open_session(tmp_path / "takes", prepare_folder(tmp_path / "takes", plan), pipeline)
    win = CollectWindow(pipeline, session, ModelChoice(None, device="cpu"), "collect")
    qtbot.addWidget(win)
    win.show()
    try:
        qtbot.waitUntil(win.isActiveWindow, timeout=10_000)
        qtbot.waitUntil(lambda: win.panel.phase == "go", timeout=20_000)
        assert win.panel.title.text().endswith(": go") and "take 1 of 2" in win.panel.detail.text()
        qtbot.waitUntil(lambda: len(session.finished) == 1, timeout=20_000)
        first = session.finished[0]
        qtbot.keyClick(win.view, Qt.Key.Key_Backspace)
        assert (tmp_path / "takes" / "discarded" / first.file).is_file()
        assert "asked again" in win.statusBar().currentMessage() or session.queue[0][0] == first.take
        qtbot.waitUntil(lambda: session.done, timeout=30_000)
        assert win.panel.title.text().startswith("done")
        record = json.loads((tmp_path / "takes" / "session.json").read_text())
        assert sorted(t["take"] for t in record["takes"]) == [1, 2]
        redone = [p for p in win.shown if getattr(p, "redo", False) and p.phase == "go"]
        assert redone and redone[0].take.index == first.take.index
    finally:
        win.close()
        pipeline.close()
        server.kill()
