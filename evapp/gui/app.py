"""Starting the window from the CLI: the QApplication, a stop request from the terminal, errors after it closes."""

from __future__ import annotations

from evapp.errors import InputError


def duration_of(source) -> int | None:
    """A replay's length in µs for the seek bar and timeline (read before the pipeline's threads start)."""
    if source.is_live:
        return None
    return source.info().duration_us


def run_window(pipeline, choice, title: str, stop: list, recorder_factory=None, screenshot=None,
               quit_after_s=None) -> int:
    """Show the window until it is closed (Ctrl+Q, the close button) or a stop is requested (``stop`` non-empty:
    Ctrl-C or SIGTERM in the terminal, see evapp.interrupts; the caller holds the handlers, installed before
    anything here is imported)."""
    try:
        from PyQt6.QtCore import QTimer
        from PyQt6.QtWidgets import QApplication
    except ImportError as exc:
        raise InputError(f"The window needs PyQt6 ({exc}); install it or run with --headless.") from None
    from evapp.gui.window import MainWindow

    app = QApplication.instance() or QApplication([title])
    window = MainWindow(pipeline, choice, title, recorder_factory, duration_us=duration_of(pipeline.source))
    if stop:  # asked to stop while starting up
        window.close()
        return 0
    window.show()

    # Qt's event loop does not return to Python on its own: this timer lets the signal handlers run, and
    # closes the window from the loop once a stop was requested.
    def poll_stop():
        if stop:
            window.close()

    wake = QTimer()
    wake.timeout.connect(poll_stop)
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
    if window.error is not None:
        raise window.error
    return code
