"""`python main.py bench reliability`: a fixed-seed fuzz, the injected faults and a soak, as records."""

from __future__ import annotations

import tempfile
from pathlib import Path

from sim.bench import record

FUZZ_SEED = 0
FUZZ_CASES = 200
FUZZ_WORKERS = 2
SOAK_FRAMES = 2000
OUT = Path("fuzz_out") / "bench"  # where failing fuzz cases are kept for replay


def reliability_records(quick: bool = False) -> list[dict]:
    from app.faults import run_faults
    from app.fuzz import print_report, run_fuzz
    from app.soak import soak

    records = []
    fuzz = run_fuzz(20 if quick else FUZZ_CASES, FUZZ_SEED, OUT, workers=FUZZ_WORKERS)
    print_report(fuzz, OUT)
    s = fuzz.summary()
    note = f"seed {FUZZ_SEED}: {s['ran']} ran, {s['refused']} refused with a message, {s['frames']} frames"
    records += [
        record("reliability.fuzz.cases", s["cases"], "cases", note=note),
        record("reliability.fuzz.crashes", s["crashes"], "cases"),
        record("reliability.fuzz.tracebacks", s["tracebacks"], "cases"),
        record("reliability.fuzz.nonfinite_kept", s["nonfinite_kept"], "cases"),
        record("reliability.fuzz.particles_unaccounted", s["particles_unaccounted"], "particles"),
    ]

    with tempfile.TemporaryDirectory(prefix="sluice-faults-") as folder:
        faults = run_faults(Path(folder), quick=quick)
    for f in faults:
        print(f"fault {f.name}: {'survived' if f.survived else 'NOT SURVIVED'}: {f.detail}")
    failed = [f.name for f in faults if not f.survived]
    records += [
        record("reliability.faults.tried", len(faults), "faults"),
        record("reliability.faults.survived", len(faults) - len(failed), "faults", note=", ".join(failed)),
    ]

    r = soak("dam_break", 300 if quick else SOAK_FRAMES, progress=True)
    note = f"dam_break, {r.mode}, {r.frames} frames, learned share {r.learned_share:.2f}"
    records += [
        record("reliability.soak.rss_growth_mb", r.rss_growth_mb, "MB", note=note),
        record("reliability.soak.slowdown_ratio", r.slowdown_ratio, "x",
               note=f"wall time, each frame of the cycle at its best; last {r.window} frames / first"),
        record("reliability.soak.cpu_slowdown_ratio", r.cpu_slowdown_ratio, "x", note="the same in CPU time"),
        record("reliability.soak.mean_wall_slowdown_ratio", r.mean_wall_slowdown_ratio, "x",
               note="plain means, every disturbance included"),
    ]  # fmt: skip
    return records
