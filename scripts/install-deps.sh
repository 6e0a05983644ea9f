#!/usr/bin/env bash
# Installs what Punch needs on Debian 12 (bookworm): system packages via apt-get (with sudo when
# not root) and checks the Rust toolchain. Safe to run again: it installs only what is missing.
set -euo pipefail

PACKAGES=(
  pkg-config gcc libc6-dev ca-certificates curl python3
  # GStreamer 1.22: headers for the plugin, srtsrc/srtsink/openh264/mpegts (plugins-bad), tools
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev gstreamer1.0-tools
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  # ffprobe, to check what arrived; ffmpeg and srt-live-transmit for the interop tests
  ffmpeg srt-tools
  # a third-party STUN client, to check the server speaks standard STUN
  stun-client
  # headless browser for the dashboard test (driven by playwright-core from npm)
  chromium
  # the NAT lab: network namespaces, NAT and firewall rules, conntrack evidence
  iproute2 nftables conntrack
  # a real TLS reverse proxy in front of the server (the --trust-proxy test)
  nginx
  # systemd-analyze verify checks packaging/punch.service; openssl pins the test certificate
  # for the browser over built-in TLS
  systemd openssl
  # a throwaway PostgreSQL cluster per storage test (initdb, pg_ctl), the second storage engine
  postgresql
  # a load balancer in front of three nodes on one database (the cluster tests)
  haproxy
  # promtool checks the /metrics exposition
  prometheus
)

SUDO=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: not root and no sudo; install: ${PACKAGES[*]}" >&2; exit 1; }
  SUDO=sudo
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  # Servers among them (nginx, ...) are for tests, which start their own throwaway instances:
  # their packages must not start a system-wide one. policy-rc.d says "no starts" while
  # installing (and is put back as it was).
  policy=/usr/sbin/policy-rc.d
  saved=""
  # (kept beside it, not in /tmp: installing systemd may clean /tmp)
  if [ -e "$policy" ]; then saved="$policy.punch-saved"; $SUDO cp -p "$policy" "$saved"; fi
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
  $SUDO chmod 755 "$policy"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if [ -n "$saved" ]; then $SUDO mv "$saved" "$policy"; else $SUDO rm -f "$policy"; fi
fi

# Node.js + npm run the dashboard's browser test (playwright-core drives Debian's chromium).
# A machine may already have Node from elsewhere (nodesource); only install Debian's if none.
if ! command -v npm >/dev/null; then
  echo "install-deps: installing nodejs npm"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi

if ! command -v cargo >/dev/null; then
  for d in "$HOME/.cargo/bin" /usr/local/cargo/bin; do [ -x "$d/cargo" ] && export PATH="$d:$PATH"; done
fi
command -v cargo >/dev/null || { echo "install-deps: cargo not found; install Rust >= 1.95 with rustup (Debian's rustc is too old)" >&2; exit 1; }
rustc_minor=$(rustc --version | sed -E 's/^rustc 1\.([0-9]+).*/\1/')
if [ "$rustc_minor" -lt 95 ]; then
  echo "install-deps: $(rustc --version) is too old; Punch needs Rust >= 1.95 (rustup update)" >&2
  exit 1
fi
