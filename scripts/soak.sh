#!/usr/bin/env bash
# Soak: the real `run` process against the demo's simulated lot, with faults.
#
#   scripts/soak.sh [SECONDS] [SEED]        defaults: 600 s, seed 1
#
# What runs (all on loopback, nothing installed): `parking-bridge demo` in soak mode
# (`--bridge-exec`, `--soak-faults SEED`, src/sim/soak.rs) drives 2 entry + 2 exit lanes —
# Modbus RTU over a pty for the first lane, Modbus TCP for the others, Vzenith cameras
# on an embedded MQTT broker, Hikvision- and Dahua-style HTTP push cameras — at 10× a
# busy lot's pace, against its mock platform, while:
#   - the bridge (`parking-bridge run`, a separate process) is killed (SIGKILL) or
#     stopped (SIGTERM) and restarted every 15–45 s on the seeded schedule;
#   - the mock platform answers 5 % of requests with 5xx, loses 1 % of its answers
#     after recording (re-sends follow) and is down for 30 s one minute in;
#   - now and then a camera floods 200 undecodable messages and a 1 MB one.
# Every 5 s it samples the bridge's RSS, open files and threads, the database and the
# journal size (DIR/soak-samples.csv). At the end it prints the growth between the
# first and the second half of the run, and the demo's comparison of the platform's
# record with the traffic.
#
# Not yet in the schedule (docs/operations.md, "Soak"): pty unplug/replug, broker
# restarts, 1 % corrupted RTU frames (tests/driver_rtu.rs covers them alone), a disk
# squeeze and a wall-clock jump. Passages that happen entirely while the bridge is
# down cannot be seen by anyone; the record check reports them (see the gaps:
# `parking-bridge gaps --config DIR/config.toml`).
#
# Exit status: the demo's (0 = record exact).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-600}
seed=${2:-1}
[[ $seconds =~ ^[0-9]+$ && $seed =~ ^[0-9]+$ ]] || {
    echo "usage: $0 [SECONDS] [SEED]" >&2
    exit 2
}

# SOAK_BIN: a binary to soak (e.g. target/release/parking-bridge after a release
# build); default: the debug build of this tree.
bin=${SOAK_BIN:-}
if [[ -z $bin ]]; then
    (cd "$root" && cargo build --quiet)
    bin="$root/target/debug/parking-bridge"
fi

# About 0.7 vehicles per second at --speed 10 on 2+2 lanes (measured with the debug
# build on a shared 2-core machine); the drain after the traffic adds up to 5 min.
vehicles=$((seconds * 7 / 10))
((vehicles > 0)) || vehicles=1
dir=$(mktemp -d "${TMPDIR:-/tmp}/parking-bridge-soak.XXXXXX")
echo "soak: ${seconds} s (~${vehicles} vehicles), seed ${seed}, directory ${dir}" >&2
status=0
"$bin" demo --dir "$dir" --vehicles "$vehicles" --speed 10 --seed "$seed" \
    --bridge-exec "$bin" --soak-faults "$seed" --status-listen "" \
    --drain-timeout-secs 300 >"$dir/soak.out" 2>&1 || status=$?
grep -E '^(soak:|case|normal|double|tailgating|turn-away|unreadable|total|OK|FAIL|  - )' "$dir/soak.out" | head -60
echo "soak: exit status ${status}; samples in ${dir}/soak-samples.csv, bridge log ${dir}/run.log" >&2
exit "$status"
