"""The Qt desktop window (PyQt6); it drives the same pipeline as the headless mode."""
