"""Material models and their parameters.

Every body gets a *slot*: one resolved parameter set in the solver's material table. Particles store the
slot index, so per-body overrides cost nothing per particle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from enum import IntEnum


class Material(IntEnum):
    WATER = 0
    JELLY = 1
    SNOW = 2
    SAND = 3


MATERIAL_NAMES = {m.name.lower(): m for m in Material}

# Defaults in SI units. Water's sound speed is resolved from the scene (see resolve()).
DEFAULTS: dict[Material, dict[str, float]] = {
    Material.WATER: {"density": 1000.0, "sound_speed": 0.0, "viscosity": 0.0, "acoustic_damping": 0.5},
    Material.JELLY: {"density": 1000.0, "youngs_modulus": 4.0e4, "poisson_ratio": 0.3},
    Material.SNOW: {
        "density": 400.0,
        "youngs_modulus": 1.4e5,
        "poisson_ratio": 0.2,
        "hardening": 10.0,
        "critical_compression": 2.5e-2,
        "critical_stretch": 4.5e-3,
    },
    Material.SAND: {"density": 1600.0, "youngs_modulus": 3.5e5, "poisson_ratio": 0.3, "friction_angle": 30.0},
}


@dataclass(frozen=True)
class MaterialParams:
    """Resolved constants for one slot, in the form the kernels use."""

    kind: int
    density: float
    mu: float  # shear modulus (Pa)
    lam: float  # first Lame parameter, or water's bulk modulus (Pa)
    hardening: float = 0.0
    critical_compression: float = 0.0
    critical_stretch: float = 0.0
    friction_alpha: float = 0.0  # Drucker-Prager cone coefficient
    viscosity: float = 0.0
    acoustic_damping: float = 0.0  # bulk viscosity in units of rho * c * dx: damps pressure waves only

    @property
    def wave_speed(self) -> float:
        """Fastest elastic (P-)wave speed: bounds the explicit time step."""
        return math.sqrt((self.lam + 2.0 * self.mu) / self.density)

    def as_row(self) -> list[float]:
        return [float(getattr(self, f.name)) for f in fields(self)]


def lame(youngs: float, poisson: float) -> tuple[float, float]:
    mu = youngs / (2.0 * (1.0 + poisson))
    lam = youngs * poisson / ((1.0 + poisson) * (1.0 - 2.0 * poisson))
    return mu, lam


def drucker_prager_alpha(friction_angle_deg: float) -> float:
    """Cone coefficient of Klar et al. (2016) for a friction angle in degrees."""
    s = math.sin(math.radians(friction_angle_deg))
    return math.sqrt(2.0 / 3.0) * 2.0 * s / (3.0 - s)


def allowed_params(material: Material) -> set[str]:
    return set(DEFAULTS[material])


def resolve(material: Material, overrides: dict[str, float], water_sound_speed: float) -> MaterialParams:
    """Merge overrides into the defaults and derive kernel constants.

    `water_sound_speed` is used when a water body does not set its own `sound_speed`.
    """
    p = {**DEFAULTS[material], **overrides}
    if material == Material.WATER:
        c = p["sound_speed"] or water_sound_speed
        bulk = p["density"] * c * c
        return MaterialParams(
            int(material),
            p["density"],
            0.0,
            bulk,
            viscosity=p["viscosity"],
            acoustic_damping=p["acoustic_damping"],
        )
    mu, lam = lame(p["youngs_modulus"], p["poisson_ratio"])
    if material == Material.JELLY:
        return MaterialParams(int(material), p["density"], mu, lam)
    if material == Material.SNOW:
        return MaterialParams(
            int(material),
            p["density"],
            mu,
            lam,
            hardening=p["hardening"],
            critical_compression=p["critical_compression"],
            critical_stretch=p["critical_stretch"],
        )
    return MaterialParams(
        int(material), p["density"], mu, lam, friction_alpha=drucker_prager_alpha(p["friction_angle"])
    )


PARAM_COLUMNS = [f.name for f in fields(MaterialParams)]
