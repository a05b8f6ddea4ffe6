#!/usr/bin/env bash
# Runs one coverage-guided fuzz target, time-boxed, and keeps what it found.
#
#   scripts/fuzz.sh TARGET SECONDS     e.g. scripts/fuzz.sh modbus_rtu 1800
#   scripts/fuzz.sh list               the targets
#
# Builds the afl-instrumented targets once (fuzz/target, its own target dir: afl
# instruments every dependency), writes the seed corpus from the test fixtures, runs
# afl-fuzz for SECONDS on one core, then:
#   - copies every crash and hang to tests/fixtures/fuzz/TARGET/ as crash-<sha1> /
#     hang-<sha1> (tests/fuzz_regressions.rs replays them in `cargo test`);
#   - prints and appends a summary line (execs/s, coverage, edges, crashes) to
#     fuzz/runs.log — the figures docs/fuzzing.md quotes.
# The corpus is kept in fuzz/out/TARGET/ between runs (AFL_AUTORESUME), so a second run
# continues where the first stopped.
#
# Needs cargo-afl (`cargo install cargo-afl --locked`) and afl++ (/usr/bin/afl-fuzz or
# cargo-afl's own). Exit status: 0 no new crash, 1 crashes saved, 2 usage/setup error.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
fuzz="$root/fuzz"
export CARGO_TARGET_DIR="$fuzz/target"
targets=(modbus_rtu camera_payload camera_push platform_answer site_config device_profile journal_replay)

if [[ ${1:-} == list ]]; then
    printf '%s\n' "${targets[@]}"
    exit 0
fi
if [[ $# -ne 2 || ! " ${targets[*]} " =~ " $1 " || ! $2 =~ ^[0-9]+$ ]]; then
    echo "usage: $0 TARGET SECONDS   (TARGET: ${targets[*]})" >&2
    exit 2
fi
target=$1
seconds=$2

command -v cargo-afl >/dev/null || {
    echo "cargo-afl missing: cargo install cargo-afl --locked" >&2
    exit 2
}

echo "building the afl targets (once; incremental afterwards)…" >&2
(cd "$fuzz" && nice cargo afl build --release --quiet)
bin="$CARGO_TARGET_DIR/release"

seeds="$fuzz/seeds"
rm -rf "$seeds"
"$bin/seeds" "$seeds"
# Saved findings are seeds too: a fixed crash is a good place to keep exploring.
for f in "$root/tests/fixtures/fuzz/$target"/*-*; do
    [[ -f $f ]] && cp "$f" "$seeds/$target/"
done

out="$fuzz/out/$target"
mkdir -p "$out"
# VMs and containers: no CPU frequency governor to check, no core_pattern to set.
export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1 AFL_AUTORESUME=1
# One core only (the machine is shared): no CPU binding, no parallel instances.
export AFL_NO_AFFINITY=1
started=$(date -u +%FT%TZ)
# -V: stop after SECONDS. -t: 1 s per input is far above any decoder's time.
nice cargo afl fuzz -V "$seconds" -t 1000 -i "$seeds/$target" -o "$out" -- "$bin/$target" \
    >"$out/afl.log" 2>&1 || {
    echo "afl-fuzz failed; its output:" >&2
    tail -30 "$out/afl.log" >&2
    exit 2
}
rm -rf "${TMPDIR:-/tmp}/pb-fuzz-journal"

stats="$out/default/fuzzer_stats"
get() { awk -F' *: *' -v k="$1" '$1 == k { print $2 }' "$stats"; }
fixtures="$root/tests/fixtures/fuzz/$target"
mkdir -p "$fixtures"
new=0
for kind in crashes hangs; do
    for f in "$out/default/$kind"/id:*; do
        [[ -f $f ]] || continue
        name="${kind%es}"
        name="${name%s}-$(sha1sum "$f" | cut -c1-16)"
        if [[ ! -e $fixtures/$name ]]; then
            cp "$f" "$fixtures/$name"
            new=$((new + 1))
        fi
    done
done
summary="$started target=$target seconds=$seconds run_time=$(get run_time) execs_done=$(get execs_done) execs_per_sec=$(get execs_per_sec) corpus=$(get corpus_count) bitmap_cvg=$(get bitmap_cvg) edges_found=$(get edges_found) total_edges=$(get total_edges) crashes=$(get saved_crashes) hangs=$(get saved_hangs) new_fixtures=$new"
echo "$summary" | tee -a "$fuzz/runs.log"
[[ $new -eq 0 ]] || {
    echo "$new new finding(s) in $fixtures: cargo test --test fuzz_regressions" >&2
    exit 1
}
