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
    """Show the window until it is closed (Ctrl+Q, the close button, Ctrl-C or SIGTERM in the terminal)."""
    # The handlers go in before anything is imported or built, and they only record the request: a
    # KeyboardInterrupt raised in the middle of an import (torch's take over a second) leaves modules
    # half-initialised and makes CPython end by SIGINT instead of exit code 130. An exception raised inside
    # Qt's event loop would abort the process and lose the recording.
    requests: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, frame: requests.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        code, window = _show(pipeline, engine_factory, model_name, policy, device, title, recorder_factory,
                             screenshot, quit_after_s, requests)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if window is not None and window.error is not None:
        raise window.error
    if requests:
        raise KeyboardInterrupt
    return code


def _show(pipeline, engine_factory, model_name, policy, device, title, recorder_factory, screenshot, quit_after_s,
          requests: list[int]):
    try:
        from PyQt6.QtCore import QTimer
        from PyQt6.QtWidgets import QApplication
    except ImportError as exc:
        raise InputError(f"The window needs PyQt6 ({exc}); install it or run with --headless.") from None
    from evapp.gui.window import MainWindow

    app = QApplication.instance() or QApplication([title])
    window = MainWindow(pipeline, engine_factory, model_name, policy, device, title, recorder_factory,
                        duration_us=duration_of(pipeline.source))
    if requests:  # interrupted while starting up
        window.close()
        return 130, window
    window.show()

    # Qt's event loop does not return to Python on its own: this timer lets the signal handlers run, and
    # closes the window from the loop once one has asked.
    def poll_requests():
        if requests:
            window.close()

    wake = QTimer()
    wake.timeout.connect(poll_requests)
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
        window.close()
    return code, window
