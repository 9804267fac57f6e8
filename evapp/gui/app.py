"""Starting the window from the CLI: the QApplication, a stop request from the terminal, errors after it closes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from evapp.errors import InputError


def duration_of(source) -> int | None:
    """A replay's length in µs for the seek bar and timeline (read before the pipeline's threads start)."""
    if source.is_live:
        return None
    return source.info().duration_us


# Qt's platforms that need no display server (tests, screenshots, remote viewing).
NO_DISPLAY_PLATFORMS = ("offscreen", "minimal", "vnc", "linuxfb", "eglfs")


def check_display(environ=None) -> None:
    """Refuse with one sentence what would make Qt abort the process (exit 134): no display to open, or the X11
    plugin's system libraries missing (Qt >= 6.5 needs xcb-cursor and a few other xcb libraries)."""
    environ = os.environ if environ is None else environ
    platform = environ.get("QT_QPA_PLATFORM", "").split(":")[0]
    if not sys.platform.startswith("linux") or platform in NO_DISPLAY_PLATFORMS or platform.startswith("wayland"):
        return
    if platform != "xcb" and environ.get("WAYLAND_DISPLAY"):
        return  # Qt picks its Wayland plugin
    if not environ.get("DISPLAY"):
        raise InputError("There is no display to open the window on (DISPLAY is not set): run with --headless, "
                         "or under a virtual display (xvfb-run evapp ...).")
    missing = missing_libraries(xcb_plugin())
    if missing:
        packages = " ".join(debian_package(lib) for lib in missing)
        raise InputError(f"The window needs system libraries that are missing ({', '.join(missing)}); on "
                         f"Debian or Ubuntu: sudo apt install {packages} (or run with --headless).")


def xcb_plugin() -> Path | None:
    """PyQt6's X11 platform plugin."""
    from PyQt6.QtCore import QLibraryInfo

    path = Path(QLibraryInfo.path(QLibraryInfo.LibraryPath.PluginsPath)) / "platforms" / "libqxcb.so"
    return path if path.is_file() else None


def missing_libraries(library: Path | None) -> list[str]:
    """The shared libraries ``library`` (and what it loads) needs that the system does not have, per ldd."""
    if library is None or shutil.which("ldd") is None:
        return []
    try:
        out = subprocess.run(["ldd", str(library)], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return sorted({line.split()[0] for line in out.splitlines() if "=> not found" in line})


def debian_package(soname: str) -> str:
    """Debian's package for a library soname: libxcb-cursor.so.0 -> libxcb-cursor0, libxkbcommon-x11.so.0 ->
    libxkbcommon-x11-0 (Debian policy 8.1: a name ending in a digit takes a hyphen before the version)."""
    name, _, version = soname.partition(".so.")
    name = name.lower()
    version = version.split(".")[0]
    return f"{name}-{version}" if name[-1:].isdigit() else f"{name}{version}"


def run_window(pipeline, choice, title: str, stop: list, recorder_factory=None, screenshot=None,
               quit_after_s=None, make_window=None) -> int:
    """Show the window until it is closed (Ctrl+Q, the close button) or a stop is requested (``stop`` non-empty:
    Ctrl-C or SIGTERM in the terminal, see evapp.interrupts; the caller holds the handlers, installed before
    anything here is imported)."""
    try:
        from PyQt6.QtCore import QTimer
        from PyQt6.QtWidgets import QApplication
    except ImportError as exc:
        raise InputError(f"The window needs PyQt6 ({exc}); install it or run with --headless.") from None
    from evapp.gui.window import MainWindow  # the caller has checked the display (check_display)

    app = QApplication.instance() or QApplication([title])
    window = make_window() if make_window is not None else MainWindow(
        pipeline, choice, title, recorder_factory, duration_us=duration_of(pipeline.source))
    if stop:  # asked to stop while starting up
        window.close()
        return 0
    window.show()

    # Qt's event loop does not return to Python on its own: this timer lets the signal handlers run, and
    # closes the window from the loop once a stop was requested.
    from evapp.sinks.jsonl import past_duration

    def poll_stop():
        if stop or past_duration(pipeline, quit_after_s):
            if screenshot:
                window.save_screenshot(screenshot)
            window.close()

    wake = QTimer()
    wake.timeout.connect(poll_stop)
    wake.start(200)
    try:
        code = app.exec()
    finally:
        wake.stop()
        window.close()
    if window.error is not None:
        raise window.error
    return code
