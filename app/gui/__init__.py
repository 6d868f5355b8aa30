"""The desktop app: a thin Qt layer over the Session.

Modules: mapping (pixels <-> domain, no Qt), tools (mouse tools as Session verbs, no Qt), modes (which
solver modes are available and why), scenes (Sessions for the GUI), loop (one tick per event-loop pass),
viewport (QOpenGLWidget + Renderer), panel and window (the main window), recording (live mp4),
launch (QApplication, `python main.py`, the screenshot command), bench (`bench gui`).
Importing this package imports no Qt; import the modules you need.
"""
