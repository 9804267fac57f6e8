"""Sinks, the last stage of the data flow: JSON lines on stdout, the AEDAT4 recorder; the window (evapp.gui) is
the interactive sink."""
