"""Starting the window from the CLI: the QApplication, Ctrl-C in the terminal, errors after the window closes."""

from __future__ import annotations

import signal

from evapp.errors import InputError


def duration_of(source) -> int | None:
    """A replay's length in µs for the seek bar and timeline (read before the pipeline's threads start)."""
    if source.is_live:
        return None
    return source.info().duration_us


def run_window(pipeline, engine_factory, model_name, policy, device, title: str, recorder_factory=None,
               screenshot=None, quit_after_s=None) -> int:
    """Show the window until it is closed (Ctrl+Q, the close button, Ctrl-C in the terminal)."""
    try:
        from PyQt6.QtCore import QTimer
        from PyQt6.QtWidgets import QApplication
    except ImportError as exc:
        raise InputError(f"The window needs PyQt6 ({exc}); install it or run with --headless.") from None
    from evapp.gui.window import MainWindow

    app = QApplication.instance() or QApplication([title])
    window = MainWindow(pipeline, engine_factory, model_name, policy, device, title, recorder_factory,
                        duration_us=duration_of(pipeline.source))
    window.show()
    # Qt's event loop does not return to Python on its own, so a timer lets the SIGINT handler run.
    interrupted = []

    def on_signal(signum, frame):
        interrupted.append(True)
        # The handler may run in the middle of a paint; close from the event loop instead.
        QTimer.singleShot(0, window.close)

    # SIGTERM too: an exception raised inside Qt's event loop would abort the process, losing the recording.
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    wake = QTimer()
    wake.timeout.connect(lambda: None)
    wake.start(200)
    if quit_after_s is not None:
        def finish():
            if screenshot:
                window.save_screenshot(screenshot)
            window.close()

        QTimer.singleShot(int(quit_after_s * 1000), finish)
    try:
        code = app.exec()
    finally:
        wake.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        window.close()
    if window.error is not None:
        raise window.error
    if interrupted:
        raise KeyboardInterrupt
    return code
