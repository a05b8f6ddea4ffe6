#!/usr/bin/env python3
"""Lists the lanes of a soak whose plate reads went one vehicle out of step.

    scripts/soak-shifts.py SOAK_DIR [BINARY]

Replays the soak's event journal lane by lane (`parking-bridge replay --passages`,
with the `start` and `timers` marks, as the live lane task ran them) and prints each
run of 3 or more consecutive passages whose plate was read more than 2.2 s before the
vehicle cleared — the sign of a lane giving each vehicle its predecessor's read —
with the soak fault that came before it (SOAK_DIR/soak-faults.csv). Nothing printed:
no lane was out of step. The threshold suits the simulated lot, whose cameras read a
vehicle about 0.2 s after it reaches loop A and whose vehicles clear about 1 s later.
BINARY defaults to target/release/parking-bridge.
"""
import csv
import json
import os
import subprocess
import sys
import tempfile

SHIFTED_MS = 2_200
MIN_RUN = 3


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    soak = sys.argv[1]
    binary = sys.argv[2] if len(sys.argv) > 2 else "target/release/parking-bridge"
    journal = os.path.join(soak, "state", "journal")
    # (line, event) of every readable journal line, parsed once for all the lanes.
    events = []
    for name in sorted(os.listdir(journal)):
        with open(os.path.join(journal, name), encoding="utf-8") as f:
            for l in f:
                try:
                    events.append((l, json.loads(l)))
                except ValueError:
                    continue
    faults = []
    with open(os.path.join(soak, "soak-faults.csv"), encoding="utf-8") as f:
        for row in csv.DictReader(f):
            faults.append((int(row["began_ms"]), int(row["ended_ms"]), row["fault"]))
    lanes = sorted({e.get("lane") for _, e in events if "kind" in e} - {None, ""})
    for lane in lanes:
        with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False, encoding="utf-8") as tmp:
            for l, e in events:
                if (e.get("lane") == lane and "kind" in e) or e.get("mark") in ("start", "timers"):
                    tmp.write(l)
        out = subprocess.run(
            [binary, "replay", "--config", os.path.join(soak, "config.toml"), "--events", tmp.name, "--passages"],
            capture_output=True, text=True, check=False,
        ).stdout
        os.unlink(tmp.name)
        run = None
        for line in out.splitlines():
            r = json.loads(line)
            if r.get("kind") != "passage":
                continue
            plate = r.get("plate") or {}
            delay = r["at"] - plate.get("read_at", r["at"])
            if SHIFTED_MS < delay < 60_000:
                run = run or [r["at"], 0]
                run[1] += 1
                continue
            if run and run[1] >= MIN_RUN:
                report(lane, run, faults)
            run = None
        if run and run[1] >= MIN_RUN:
            report(lane, run, faults)


def report(lane, run, faults):
    at, n = run
    before = [f for f in faults if f[0] <= at]
    if before:
        began, ended, name = before[-1]
        print(f"{lane}: {n} passages out of step from {at}, {(at - ended) // 1000} s after a {name}")
    else:
        print(f"{lane}: {n} passages out of step from {at}, before any fault")


if __name__ == "__main__":
    main()
