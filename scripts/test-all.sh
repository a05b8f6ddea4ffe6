#!/usr/bin/env bash
# Installs what the tests need when it is missing, then runs the whole suite.
# Used as-is by CI (.ci/run). Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v socat >/dev/null || need+=(socat)
{ [ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null; } || need+=(mosquitto)
command -v chromium >/dev/null || need+=(chromium)
command -v sqlite3 >/dev/null || need+=(sqlite3)
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v dpkg-shlibdeps >/dev/null || need+=(dpkg-dev)  # cargo-deb: Depends from shared libraries
command -v openssl >/dev/null || need+=(openssl)
# Tests run the bridge with TZ=Asia/Shanghai (the platform's local time); without
# the zone database glibc silently falls back to UTC and those tests would lie.
[ -e /usr/share/zoneinfo/Asia/Shanghai ] || need+=(tzdata)
command -v promtool >/dev/null || need+=(prometheus)  # promtool: the shipped alert rules
# A CJK font, so the status page's screenshots show plates' province characters.
{ command -v fc-list >/dev/null && [ -n "$(fc-list :lang=zh family 2>/dev/null)" ]; } || need+=(fonts-noto-cjk fontconfig)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing test prerequisites: ${need[*]}"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# mosquitto lives in /usr/sbin, which a non-login shell may not have on PATH.
export PATH="$PATH:/usr/sbin:/sbin"

cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings
cargo build --release --locked --bin parking-bridge
# The Debian package, from the release binary just built; its contents are checked.
# Installing cargo-deb takes ~40 s on 2 cores (once); packaging ~11 s.
command -v cargo-deb >/dev/null || cargo install cargo-deb --locked --version 3.8.0
cargo deb --no-build --locked
bash scripts/check-deb.sh "$(ls -t target/debian/parking-bridge_*.deb | head -n 1)"
# The test runner: each test in its own process, a hung one killed and failed after
# the slow timeout in .config/nextest.toml (so CI never stalls), no retries.
# Installing it takes a few minutes on 2 cores, once; prefer a packaged binary.
command -v cargo-nextest >/dev/null || cargo install cargo-nextest --locked
cargo nextest run --locked --no-tests=fail
# nextest does not run doctests.
cargo test --doc --locked
