#!/usr/bin/env bash
# What the relay fallback and the tunnel cost: the same stream (BENCH_RATE bytes/s, default
# 2 500 000, ~20 Mbit/s) for BENCH_SECONDS (20) through the NAT lab (tests/natlab/lab.sh), peer to
# peer (preserve/preserve NATs -> direct), relayed by the server (random/random = symmetric NATs
# -> relay), tunnelled (the camera's router drops all UDP -> tunnel), and tunnelled with 1 % of
# the tunnel's TCP segments lost (BENCH_PATHS picks, default "direct relay tunnel tunnel-loss1").
# Prints numbers, not a verdict:
#   * server CPU: utime+stime of the punch process (/proc/<pid>/stat, clock ticks) over the window,
#     as % of one core and as CPU-ms per second per Mbit/s of stream
#   * relayed packets/s and Mbit/s: difference of /healthz relay_packets / relay_bytes over the window
#   * RTT seen by the receiver: rtt-ms of punchsrc's punch-health messages (gst-launch -m), last 5
#
# Usage (root): scripts/relay-bench.sh
# Env: PUNCH_BIN, GST_PLUGIN_PATH (default: target/debug), NATLAB_OUT (logs), NATLAB_PREFIX,
#      PUNCH_SERVE_ARGS (default "--stun-port 3478 --direct-timeout 6"), BENCH_SECONDS (default 20).
# Sender and receiver run on the same machine as the server (2 cores here): the relay competes with
# SRT encryption on both ends, so compare the rows with each other, not with a dedicated server.
# Exit: 0 both runs measured, 1 a run could not be measured (no media / wrong path), 2 setup problem.
set -uo pipefail
# shellcheck source=tests/natlab/lab.sh
. "$(dirname "${BASH_SOURCE[0]}")/../tests/natlab/lab.sh"
lab_supervise "$@"   # re-runs this script as a worker; cleans up whatever the worker leaves

WINDOW=${BENCH_SECONDS:-20}
RATE=${BENCH_RATE:-2500000}   # bytes/s from fakesrc in 1316-byte buffers (2 500 000: ~1900 packets/s, ~20 Mbit/s)
SETTLE_TIMEOUT=30       # s for the path to settle and media to flow
WARMUP=2

# proc_user_ticks PID: utime alone (the rest of the CPU time is the kernel's: syscalls, and in
# this lab also the veth/NAT path of every datagram the server sends)
proc_user_ticks() {
  local st
  st=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  st=${st##*) }
  awk '{ print $12 }' <<<"$st"
}
# proc_ticks PID: utime+stime in clock ticks
proc_ticks() {
  local st
  st=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  st=${st##*) }
  # fields after "pid (comm) ": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
  awk '{ print $12 + $13 }' <<<"$st"
}
# health_stats < LOG LINES: "<messages> <mean bitrate bit/s> <rtt1,...,rtt5>" of the punch-health
# messages (RTT field rtt-ms, or rtt)
health_stats() {
  "$LAB_PY" -c '
import re, sys
rates, rtts = [], []
for line in sys.stdin:
    if "punch-health" not in line:
        continue
    b = re.search(r"[ ,]bitrate=\([a-z0-9]+\)([0-9.eE+-]+)", line)
    r = re.search(r"[ ,]rtt(?:-ms)?=\([a-z0-9]+\)([0-9.eE+-]+)", line)
    if b:
        rates.append(float(b.group(1)))
    if r:
        rtts.append(float(r.group(1)))
mean = sum(rates) / len(rates) if rates else 0.0
print(len(rates), "%.0f" % mean, ",".join("%.3f" % v for v in rtts[-5:]) or "-")'
}
# receiver_flowing LOG: the last punch-health says connected with > 1 Mbit/s
receiver_flowing() {
  grep 'punch-health' "$1" 2>/dev/null | tail -n1 | "$LAB_PY" -c '
import re, sys
l = sys.stdin.read()
b = re.search(r"[ ,]bitrate=\([a-z0-9]+\)([0-9.eE+-]+)", l)
sys.exit(0 if "connected=(boolean)true" in l and b and float(b.group(1)) > 1e6 else 1)'
}
healthz() { lab_http wan "$LAB_HTTP/healthz" 2>/dev/null || echo '{}'; }
counter() { lab_json "$1" <<<"$2" 2>/dev/null || echo ""; }   # FIELD JSON -> value or empty
fmt() { awk -v v="$1" -v f="$2" 'BEGIN { if (v == "") print "n/a"; else printf f, v }'; }

ROWS=()
RTT_MED=()
# bench_run LABEL NAT FW EXPECTED_PATH [FW_A]: FW_A, if given, is router a's (the camera's)
bench_run() {
  local label=$1 nat=$2 fw=$3 expect=$4 fw_a=${5:-$3} name="bench-$1" rlog path="" deadline srv t0 t1 k0 k1 h0 h1 l0 l1
  local u0 u1 user_s wall cpu_s cpu_pct pk0 pk1 by0 by1 pps rmbps stats nmsg rate smbps rtts med basis cpu_per
  lab_log "bench $label: NAT $nat/$nat, firewall $fw, expected path $expect"
  lab_up
  lab_router a "$nat" "$fw_a"
  lab_router b "$nat" "$fw"
  lab_punch_serve "$name.server"
  lab_punch_session bench
  lab_spawn "$name.receiver" hb stdbuf -oL gst-launch-1.0 -m \
    punchsrc "uri=\"$LAB_RECEIVER_URI\"" local-port=9000 ! fakesink
  # identity sync=true paces fakesrc by its timestamps (datarate): punchsink's srtsink runs with
  # sync=false, so without it fakesrc would push as fast as the CPU allows
  lab_spawn "$name.sender" ha stdbuf -oL gst-launch-1.0 \
    fakesrc is-live=true sizetype=fixed sizemax=1316 filltype=zero format=time datarate=$RATE \
    ! identity sync=true ! queue ! punchsink "uri=\"$LAB_SENDER_URI\"" local-port=9000
  rlog=${LAB_LOG[$name.receiver]}

  deadline=$(($(lab_stamp) + SETTLE_TIMEOUT * 1000000))
  while [ "$(lab_stamp)" -lt "$deadline" ]; do
    path=$(lab_punch_view bench 2>/dev/null | lab_json streams.0.path) || path="(absent)"
    [ "$path" = "$expect" ] && receiver_flowing "$rlog" && break
    if ! lab_running "$name.sender" || ! lab_running "$name.receiver" || ! lab_running "$name.server"; then break; fi
    sleep 0.5
  done
  if [ "$path" != "$expect" ] || ! receiver_flowing "$rlog"; then
    printf 'relay-bench: %s: no measurable stream within %ss (path %s, expected %s); logs: %s\n' \
      "$label" "$SETTLE_TIMEOUT" "$path" "$expect" "$LAB_LOGDIR" >&2
    lab_tail "$name.server" 15
    grep -v punch-health "$rlog" | tail -n 15 >&2
    ROWS+=("$(printf '%-7s %-18s %s' "$label" "$nat/$nat" "not measured (path $path)")")
    RTT_MED+=("")
    lab_stop_all int
    lab_down
    return 1
  fi
  lab_sleep "$WARMUP"

  srv=$(lab_cmd_pid "$name.server") || lab_die "no pid for punch serve"
  l0=$(wc -l <"$rlog"); h0=$(healthz); k0=$(proc_ticks "$srv"); u0=$(proc_user_ticks "$srv"); t0=$(lab_stamp)
  lab_sleep "$WINDOW"
  l1=$(wc -l <"$rlog"); h1=$(healthz); k1=$(proc_ticks "$srv"); u1=$(proc_user_ticks "$srv"); t1=$(lab_stamp)
  path=$(lab_punch_view bench 2>/dev/null | lab_json streams.0.path) || path="(absent)"
  [ "$path" = "$expect" ] || lab_log "bench $label: path changed to $path during the window"

  wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e6 }')
  cpu_s=$(awk -v a="$k0" -v b="$k1" -v hz="$HZ" 'BEGIN { printf "%.3f", (b - a) / hz }')
  cpu_pct=$(awk -v c="$cpu_s" -v w="$wall" 'BEGIN { printf "%.1f", 100 * c / w }')
  pk0=$(counter relay_packets "$h0"); pk1=$(counter relay_packets "$h1")
  by0=$(counter relay_bytes "$h0"); by1=$(counter relay_bytes "$h1")
  pps="" rmbps=""
  [ -n "$pk0" ] && [ -n "$pk1" ] && pps=$(awk -v a="$pk0" -v b="$pk1" -v w="$wall" 'BEGIN { printf "%.0f", (b - a) / w }')
  [ -n "$by0" ] && [ -n "$by1" ] && rmbps=$(awk -v a="$by0" -v b="$by1" -v w="$wall" 'BEGIN { printf "%.2f", (b - a) * 8 / w / 1e6 }')
  stats=$(sed -n "$((l0 + 1)),${l1}p" "$rlog" | health_stats)
  read -r nmsg rate rtts <<<"$stats"
  smbps=$(awk -v r="$rate" 'BEGIN { printf "%.2f", r / 1e6 }')
  med=$(tr ',' '\n' <<<"$rtts" | grep -v '^-$' | sort -g | awk '{ v[NR] = $1 } END { if (NR) printf "%.3f", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
  # CPU-ms per second of wall time, per Mbit/s of stream (relayed Mbit/s when the server relays)
  basis=$smbps
  [ -n "$rmbps" ] && awk -v r="$rmbps" 'BEGIN { exit !(r > 0.5) }' && basis=$rmbps
  cpu_per=$(awk -v c="$cpu_s" -v w="$wall" -v m="$basis" 'BEGIN { if (m > 0) printf "%.2f", 1000 * c / w / m; else print "n/a" }')
  user_s=$(awk -v a="$u0" -v b="$u1" -v hz="$HZ" 'BEGIN { printf "%.3f", (b - a) / hz }')
  lab_log "bench $label: wall ${wall}s, server cpu ${cpu_s}s (user ${user_s}s, kernel the rest), $nmsg health messages, rtt $rtts"
  ROWS+=("$(printf '%-7s %-18s %8s %10s %13s %10s %11s   %-8s %s' "$label" "$nat/$nat" "$smbps" "$cpu_pct" "$cpu_per" \
    "$(fmt "$pps" %s)" "$(fmt "$rmbps" %s)" "${med:-n/a}" "$rtts")")
  RTT_MED+=("$med")
  lab_stop_all int
  lab_down
  return 0
}

lab_init
lab_need_tools getconf
lab_punch_check
lab_need_gst fakesrc fakesink identity queue
HZ=$(getconf CLK_TCK)
[[ $WINDOW =~ ^[1-9][0-9]*$ ]] || lab_die "BENCH_SECONDS must be a positive integer, got '$WINDOW'"
lab_log "logs in $LAB_LOGDIR"
rc=0
for p in ${BENCH_PATHS:-direct relay tunnel tunnel-loss1}; do
  case $p in
    direct) bench_run direct preserve drop direct || rc=1 ;;
    relay) bench_run relay random drop relay || rc=1 ;;
    tunnel) bench_run tunnel preserve drop tunnel noudp || rc=1 ;;
    tunnel-loss1) bench_run tun-l1% preserve drop tunnel noudp-loss1 || rc=1 ;;
    *) lab_die "unknown BENCH_PATHS entry '$p' (direct, relay, tunnel, tunnel-loss1)" ;;
  esac
done

echo
echo "relay-bench: ${WINDOW}s window per run, fakesrc ${RATE} B/s in 1316-byte buffers (~$((RATE * 8 / 1000000)) Mbit/s), $(nproc) CPUs, CLK_TCK $HZ"
echo "server: $PUNCH_BIN${PUNCH_SERVE_ARGS+ (PUNCH_SERVE_ARGS: $PUNCH_SERVE_ARGS)}"
[[ $PUNCH_BIN == */debug/* ]] && echo "note: a debug build; server CPU of a release build (cargo build --release, PUNCH_BIN=target/release/punch) is lower"
printf '%-7s %-18s %8s %10s %13s %10s %11s   %-8s %s\n' path "NAT A/B" "Mbit/s" "server" "server CPU-ms" "relayed" "relayed" "RTT ms" "RTT ms, last 5"
printf '%-7s %-18s %8s %10s %13s %10s %11s   %-8s %s\n' "" "" "(recv)" "CPU %" "/s per Mbit/s" "pkt/s" "Mbit/s" "(median)" "(receiver punch-health)"
printf '%s\n' "${ROWS[@]}"
if [ -n "${RTT_MED[0]:-}" ]; then
  for i in "${!RTT_MED[@]}"; do
    [ "$i" = 0 ] || [ -z "${RTT_MED[$i]}" ] && continue
    awk -v d="${RTT_MED[0]}" -v r="${RTT_MED[$i]}" -v l="${ROWS[$i]%% *}" 'BEGIN { printf "added latency of %s (median RTT - the first row'"'"'s): %+.3f ms\n", l, r - d }'
  done
fi
echo "logs: $LAB_LOGDIR"
exit $rc
