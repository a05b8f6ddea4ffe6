#!/usr/bin/env bash
# Checks a built parking-bridge .deb: its files and their modes, conffiles, maintainer
# scripts, dependencies; that its binary runs, its example config passes `check`, and
# its unit passes `systemd-analyze verify`. Usage: scripts/check-deb.sh PACKAGE.deb
set -euo pipefail
deb="${1:?usage: $0 PACKAGE.deb}"
fail() { echo "check-deb: $*" >&2; exit 1; }

contents=$(dpkg-deb -c "$deb")
for path in \
  ./usr/bin/parking-bridge \
  ./usr/lib/systemd/system/parking-bridge.service \
  ./etc/parking-bridge/config.toml \
  ./etc/udev/rules.d/99-parking-bridge.rules \
  ./usr/share/parking-bridge/device-profiles/README.md \
  ./usr/share/doc/parking-bridge/operations.md \
  ./usr/share/doc/parking-bridge/README.md \
  ./usr/share/parking-bridge/monitoring/parking-bridge-rules.yml \
  ./usr/share/parking-bridge/monitoring/grafana-dashboard.json \
  ./usr/lib/systemd/system/parking-bridge-backup.service \
  ./usr/lib/systemd/system/parking-bridge-backup.timer; do
  grep -q " ${path}\$" <<<"$contents" || fail "missing $path"
done
for profile in device-profiles/*.toml; do
  grep -q " ./usr/share/parking-bridge/${profile}\$" <<<"$contents" || fail "missing profile $profile"
done
grep -Eq '^-rwxr-xr-x .* \./usr/bin/parking-bridge$' <<<"$contents" || fail "binary not 0755"
grep -Eq '^-rw-r----- .* \./etc/parking-bridge/config\.toml$' <<<"$contents" || fail "config not 0640"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
dpkg-deb -e "$deb" "$tmp/DEBIAN"
dpkg-deb -x "$deb" "$tmp/root"
grep -qx /etc/parking-bridge/config.toml "$tmp/DEBIAN/conffiles" || fail "config is not a conffile"
grep -qx /etc/udev/rules.d/99-parking-bridge.rules "$tmp/DEBIAN/conffiles" || fail "udev rules are not a conffile"
grep -q 'adduser --system' "$tmp/DEBIAN/postinst" || fail "postinst does not create the user"
grep -q 'adduser parking-bridge dialout' "$tmp/DEBIAN/postinst" || fail "postinst does not add the user to dialout"
grep -q 'deb-systemd-helper' "$tmp/DEBIAN/postinst" || fail "postinst lacks the systemd unit snippet"
grep -q '#DEBHELPER#' "$tmp/DEBIAN/postinst" && fail "postinst still has the #DEBHELPER# placeholder"
grep -Eq '^Depends:.*adduser' "$tmp/DEBIAN/control" || fail "Depends lacks adduser"

bin="$tmp/root/usr/bin/parking-bridge"
"$bin" --version >/dev/null || fail "packaged binary does not run"
PARKING_BRIDGE_APP_SECRET=0123456789abcdef "$bin" check --config "$tmp/root/etc/parking-bridge/config.toml" >/dev/null \
  || fail "packaged example config does not pass check"
sed "s#/usr/bin/parking-bridge#$bin#" "$tmp/root/usr/lib/systemd/system/parking-bridge.service" >"$tmp/parking-bridge.service"
warnings=$(systemd-analyze verify "$tmp/parking-bridge.service" 2>&1) || fail "systemd-analyze verify: $warnings"
[ -z "$warnings" ] || fail "systemd-analyze verify warns: $warnings"
sed "s#/usr/bin/parking-bridge#$bin#" "$tmp/root/usr/lib/systemd/system/parking-bridge-backup.service" >"$tmp/parking-bridge-backup.service"
cp "$tmp/root/usr/lib/systemd/system/parking-bridge-backup.timer" "$tmp/"
warnings=$(systemd-analyze verify "$tmp/parking-bridge-backup.service" "$tmp/parking-bridge-backup.timer" 2>&1) \
  || fail "systemd-analyze verify (backup units): $warnings"
[ -z "$warnings" ] || fail "systemd-analyze verify warns (backup units): $warnings"
if command -v promtool >/dev/null; then
  promtool check rules "$tmp/root/usr/share/parking-bridge/monitoring/parking-bridge-rules.yml" >/dev/null \
    || fail "shipped alert rules do not pass promtool"
fi
echo "check-deb: $deb ok ($(grep -c '' <<<"$contents") entries)"
