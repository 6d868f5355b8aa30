"""Which solver modes the GUI offers for a session, and why not when it cannot.

The Session decides (Session.available_modes: the learned stepper knows which trained weights fit a
scene); this module only keeps the GUI's labels and a fallback for a Session without learned steppers.
"""

from __future__ import annotations

from app.session import Session

MODES: dict[str, str] = {"numerical": "Numerical", "neural": "Neural", "hybrid": "Hybrid"}
NO_WEIGHTS = "no trained weights for this scene yet"


def available_modes(session: Session) -> dict[str, str | None]:
    """mode -> None when it can run now, else the reason it cannot (shown next to the disabled choice)."""
    ask = getattr(session, "available_modes", None)
    reasons = ask() if callable(ask) else {}
    return {mode: (None if mode == "numerical" else reasons.get(mode, NO_WEIGHTS)) for mode in MODES}
