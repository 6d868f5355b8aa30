"""Constitutive models and boundary conditions as Taichi functions.

Stress is the Kirchhoff stress tau = P F^T, which MLS-MPM scatters directly. Deformation (F for solids,
J for water) advances in g2p with the fresh velocity gradient C, followed by each material's return
mapping, so the particle state at the end of a frame is always self-consistent.
"""

import taichi as ti

from sim.colliders import Boundary
from sim.materials import PARAM_COLUMNS, Material

_COL = {name: i for i, name in enumerate(PARAM_COLUMNS)}
WATER, JELLY, SNOW, SAND = (int(m) for m in (Material.WATER, Material.JELLY, Material.SNOW, Material.SAND))

# Safety bands: outside them the state is clamped (and counted), never allowed to blow up.
WATER_J_RANGE = (0.5, 3.0)
SINGULAR_RANGE = (0.05, 20.0)


@ti.func
def nonfinite(value: ti.f32) -> ti.i32:
    """True for NaN or +-inf, tested on the bits so that fast-math cannot fold it away.

    Callers pass a sum of the values to check: one NaN or inf anywhere makes the sum non-finite.
    """
    exponent = ti.bit_cast(value, ti.u32) & ti.u32(0x7F800000)
    return ti.cast(exponent == ti.u32(0x7F800000), ti.i32)


@ti.func
def is_water(table: ti.template(), s) -> ti.i32:
    return ti.cast(table[s, _COL["kind"]], ti.i32) == WATER


@ti.func
def is_sand(table: ti.template(), s) -> ti.i32:
    return ti.cast(table[s, _COL["kind"]], ti.i32) == SAND


@ti.func
def kirchhoff_stress(table: ti.template(), s, F, J, C, dx, dim: ti.template()):
    kind = ti.cast(table[s, _COL["kind"]], ti.i32)
    mu = table[s, _COL["mu"]]
    lam = table[s, _COL["lam"]]
    identity = ti.Matrix.identity(ti.f32, dim)
    tau = ti.Matrix.zero(ti.f32, dim, dim)
    if kind == WATER:
        # Pressure only under compression: free surfaces separate instead of clumping.
        if J < 1.0:
            tau = lam * J * (J - 1.0) * identity
        viscosity = table[s, _COL["viscosity"]]
        if viscosity > 0:
            tau += viscosity * J * (C + C.transpose())
        # Bulk viscosity zeta = a * rho * c * dx acts on compression only (trace of C), so it damps
        # the sound waves of weak compressibility without slowing incompressible flow.
        zeta = table[s, _COL["acoustic_damping"]] * ti.sqrt(lam * table[s, _COL["density"]]) * dx
        tau += zeta * J * C.trace() * identity
    elif kind == SAND:
        # St. Venant-Kirchhoff on the Hencky strain (Klar et al. 2016).
        U, sig, V = ti.svd(F)
        log_sig = ti.Vector.zero(ti.f32, dim)
        for d in ti.static(range(dim)):
            log_sig[d] = ti.log(ti.max(sig[d, d], 1e-6))
        trace = log_sig.sum()
        diag = ti.Matrix.zero(ti.f32, dim, dim)
        for d in ti.static(range(dim)):
            diag[d, d] = 2.0 * mu * log_sig[d] + lam * trace
        tau = U @ diag @ U.transpose()
    else:
        if kind == SNOW:  # snow hardens as it compacts
            h = ti.max(0.1, ti.min(5.0, ti.exp(table[s, _COL["hardening"]] * (1.0 - J))))
            mu, lam = mu * h, lam * h
        # Fixed-corotated elasticity.
        U, sig, V = ti.svd(F)
        det = 1.0
        for d in ti.static(range(dim)):
            det *= sig[d, d]
        tau = 2.0 * mu * (F - U @ V.transpose()) @ F.transpose() + lam * det * (det - 1.0) * identity
    return tau


@ti.func
def advance_deformation(table: ti.template(), s, F, J, C, dt, dim: ti.template()):
    """F <- (I + dt C) F (or J <- (1 + dt tr C) J for water), then plasticity. Returns F, J, clamped."""
    kind = ti.cast(table[s, _COL["kind"]], ti.i32)
    clamped = 0
    if kind == WATER:
        J *= 1.0 + dt * C.trace()
        if WATER_J_RANGE[0] > J or WATER_J_RANGE[1] < J:
            J = ti.min(ti.max(J, WATER_J_RANGE[0]), WATER_J_RANGE[1])
            clamped = 1
    else:
        F = (ti.Matrix.identity(ti.f32, dim) + dt * C) @ F
        norm2 = (F * F).sum()
        if kind != JELLY or norm2 > dim * SINGULAR_RANGE[1] or F.determinant() < SINGULAR_RANGE[0]:
            U, sig, V = ti.svd(F)
            if kind == SNOW:
                lo = 1.0 - table[s, _COL["critical_compression"]]
                hi = 1.0 + table[s, _COL["critical_stretch"]]
                for d in ti.static(range(dim)):
                    new_sig = ti.min(ti.max(sig[d, d], lo), hi)
                    J *= sig[d, d] / new_sig
                    sig[d, d] = new_sig
                J = ti.min(ti.max(J, 0.1), 10.0)
            elif kind == SAND:
                sig = _drucker_prager(
                    sig, table[s, _COL["mu"]], table[s, _COL["lam"]], table[s, _COL["friction_alpha"]], dim
                )
            for d in ti.static(range(dim)):
                if sig[d, d] < SINGULAR_RANGE[0] or sig[d, d] > SINGULAR_RANGE[1]:
                    sig[d, d] = ti.min(ti.max(sig[d, d], SINGULAR_RANGE[0]), SINGULAR_RANGE[1])
                    clamped = 1
            F = U @ sig @ V.transpose()
    return F, J, clamped


@ti.func
def _drucker_prager(sig, mu, lam, alpha, dim: ti.template()):
    """Project the Hencky strain onto the Drucker-Prager cone; tension leaves the grains stress-free."""
    eps = ti.Vector.zero(ti.f32, dim)
    for d in ti.static(range(dim)):
        eps[d] = ti.log(ti.max(abs(sig[d, d]), 1e-6))
    trace = eps.sum()
    eps_hat = eps - trace / dim
    eps_hat_norm = eps_hat.norm(1e-12)
    out = ti.Matrix.identity(ti.f32, dim)
    if trace < 0:
        delta_gamma = eps_hat_norm + (dim * lam + 2.0 * mu) / (2.0 * mu) * trace * alpha
        if delta_gamma > 0:
            eps -= delta_gamma / eps_hat_norm * eps_hat
        for d in ti.static(range(dim)):
            out[d, d] = ti.exp(eps[d])
    return out


@ti.func
def boundary_velocity(vel, normal, boundary, friction):
    """Velocity of a node inside a static boundary with outward `normal`."""
    out = vel
    if boundary == int(Boundary.STICKY):
        out = ti.Vector.zero(ti.f32, vel.n)
    else:
        vn = vel.dot(normal)
        if boundary == int(Boundary.SLIP) or vn < 0:
            tangential = vel - vn * normal
            out = tangential
            if friction > 0 and vn < 0:  # Coulomb: tangential speed drops by friction * |normal speed|
                t_norm = tangential.norm(1e-12)
                out = tangential * ti.max(0.0, 1.0 - friction * (-vn) / t_norm)
    return out
