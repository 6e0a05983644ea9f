#!/usr/bin/env bash
# tests/natlab/run.sh - Punch NAT lab cases: a camera (punchsink) and a decoder (punchsrc) behind two
# NAT routers, the Punch server on the "internet" between them (topology: lab.sh).
#
# Usage (root):  tests/natlab/run.sh CASE...    tests/natlab/run.sh all    tests/natlab/run.sh --list
# Env:  PUNCH_BIN        the punch binary               (default: <repo>/target/debug/punch)
#       GST_PLUGIN_PATH  directory with libgstpunch.so  (default: <repo>/target/debug)
#       NATLAB_OUT       directory for logs, received files and evidence (default: new /tmp/natlab.XXXXXX)
#       NATLAB_PREFIX    namespace prefix (default pn<pid>; runs with different prefixes may run in parallel)
#       PUNCH_SERVE_ARGS extra flags of "punch serve" (default "--stun-port 3478 --direct-timeout 6")
#       NATLAB_MEDIA_TIMEOUT  seconds after both pipelines started before a case fails (default 30)
# Exit: 0 every case's assertion held, 1 a case failed (reason on stderr, log tails follow),
#       2 setup problem (not root, tool/binary/plugin missing, prefix in use, server did not start),
#       130/143 interrupted (everything of this run is cleaned up all the same).
#
# A case passes when, within NATLAB_MEDIA_TIMEOUT s after both pipelines started, the received file
# has >= 100 KiB, ffprobe finds an h264 video stream in it, and the server's session view says
# streams[0].path == the expected path. Per case NATLAB_OUT holds CASE.{server,sender,receiver}.log,
# CASE.ts and CASE.evidence.log (session view, path timeline, conntrack of both routers).
set -uo pipefail
# shellcheck source=tests/natlab/lab.sh
. "$(dirname "${BASH_SOURCE[0]}")/lab.sh"
lab_supervise "$@"   # re-runs this script as a worker; cleans up whatever the worker leaves

ALL_CASES=(preserve-fw preserve-nofw-prime eim symmetric mixed device-eim device-symmetric tunnel-sender tunnel-both tunnel-unblock tunnel-tls443 tunnel-after-relay)
MEDIA_TIMEOUT=${NATLAB_MEDIA_TIMEOUT:-30}
MIN_BYTES=102400
export GST_DEBUG="${GST_DEBUG:-2}"   # warnings and errors of every element into the logs

# case_spec NAME: NAT of router a (sender side), of router b (receiver side), firewall, start, path,
# sender (punch: punchsink; caller: a caller-only camera, srt-live-transmit with the device URL the
# API gives, through the relay; a stranger on the wan then calls with a wrong stream ID)
case_spec() {
  case $1 in
    preserve-fw) echo "preserve preserve drop sim direct punch" ;;
    preserve-nofw-prime) echo "preserve preserve accept stagger direct punch" ;;   # needs the elements' TTL priming
    eim) echo "eim eim drop sim direct punch" ;;                                    # needs the elements' STUN discovery
    symmetric) echo "random random drop sim relay punch" ;;
    mixed) echo "random preserve drop sim relay punch" ;;
    device-eim) echo "eim preserve drop sim relay caller" ;;
    device-symmetric) echo "random random drop sim relay caller" ;;
    tunnel-sender) echo "eim eim noudp-a sim tunnel punch" ;;                     # the camera's network drops all UDP
    tunnel-both) echo "eim eim noudp sim tunnel punch" ;;                         # both networks do
    tunnel-unblock) echo "eim eim noudp-a sim tunnel punch" ;;                    # the camera's network lets UDP through mid-stream
    tunnel-tls443) echo "eim eim tcp443-a sim tunnel punch" ;;                    # only TCP 443 out: the server on TLS at 443
    tunnel-after-relay) echo "eim eim stunonly-a sim tunnel punch" ;;            # STUN answers, no other UDP: direct, relay, then tunnel
    *) return 1 ;;
  esac
}
usage() {
  echo "usage: $0 CASE... | all | --list    (cases: ${ALL_CASES[*]})" >&2
  exit 2
}

start_sender() { # CASE
  lab_spawn "$1.sender" ha stdbuf -oL gst-launch-1.0 -e -m \
    videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=25/1 ! openh264enc \
    ! h264parse config-interval=-1 ! mpegtsmux alignment=7 ! punchsink "uri=\"$LAB_SENDER_URI\"" local-port=9000 \
    ${LAB_CA:+"ca-file=$LAB_CA"}
}
# a camera that can only call: H.264 MPEG-TS from gst-launch piped into srt-live-transmit, which
# calls the relay with the URL of GET /api/session (LAB_DEVICE_URL), as a person would type it
start_device_sender() { # CASE
  lab_spawn "$1.sender" ha sh -c "gst-launch-1.0 -q -e videotestsrc is-live=true pattern=ball \
    ! video/x-raw,width=320,height=240,framerate=25/1 ! openh264enc ! h264parse config-interval=-1 \
    ! mpegtsmux alignment=7 ! fdsink fd=1 | srt-live-transmit -a:yes file://con '$LAB_DEVICE_URL'"
}
# device_url: waits (bounded) for the caller device's URL in the session view
device_url() {
  local i view
  for i in $(seq 50); do
    view=$(lab_punch_view lab 2>/dev/null) && LAB_DEVICE_URL=$(lab_json streams.0.sender.device.url <<<"$view") && return 0
    sleep 0.2
  done
  return 1
}
# stranger_refused CASE: a caller on the wan with the device URL but a guessed stream ID must not
# connect, and is counted by the relay
stranger_refused() { # CASE -> 0 refused, 1 connected or not counted
  local before after wrong out
  before=$(lab_http wan "$LAB_HTTP/healthz" | lab_json relay_strangers) || before=0
  wrong=$(sed 's/,s=[A-Za-z0-9]*/,s=guessed/' <<<"$LAB_DEVICE_URL")
  out=$(timeout 15 ip netns exec "$(lab_ns wan)" srt-live-transmit -t:6 udp://:6000 "$wrong" 2>&1)
  echo "$out" >"$LAB_LOGDIR/$1.stranger.log"
  after=$(lab_http wan "$LAB_HTTP/healthz" | lab_json relay_strangers) || after=0
  lab_log "case $1: stranger's relay_strangers $before -> $after"
  ! grep -qi "connected" <<<"$out" && [ "$after" -gt "$before" ]
}
start_receiver() { # CASE
  # buffer-mode=unbuffered: the file size on disk follows what arrived (filesink buffers 64 KiB otherwise)
  lab_spawn "$1.receiver" hb stdbuf -oL gst-launch-1.0 -e -m \
    punchsrc "uri=\"$LAB_RECEIVER_URI\"" local-port=9000 ${LAB_CA:+"ca-file=$LAB_CA"} ! queue \
    ! filesink "location=$LAB_LOGDIR/$1.ts" buffer-mode=unbuffered
}

# the end of a process log without the once-a-second punch-health lines, then the last two of those
show_log() { # NAME
  local f=${LAB_LOG[$1]:-$LAB_LOGDIR/$1.log}
  [ -f "$f" ] || { echo "--- $1: no log"; return 0; }
  echo "--- $f: last 25 lines other than punch-health"
  grep -v 'punch-health' "$f" | tail -n 25
  if grep -q 'punch-health' "$f"; then
    echo "--- $f: last 2 punch-health messages"
    grep 'punch-health' "$f" | tail -n 2
  fi
  echo "--- end of $f"
}

RESULTS=()
# run_case NAME: returns 0 (assertion held) or 1 (failed); setup problems exit 2 from lab.sh
run_case() {
  local name=$1 spec nat_a nat_b fw start expect sender ts t_both path="" last_path="" timeline="" size=0
  local first_s="-" media_s="-" codec="" reason="" view deadline ev result
  spec=$(case_spec "$name") || usage
  read -r nat_a nat_b fw start expect sender <<<"$spec"
  ts="$LAB_LOGDIR/$name.ts"
  ev="$LAB_LOGDIR/$name.evidence.log"
  rm -f -- "$ts" "$ev"
  lab_log "case $name: NAT A=$nat_a B=$nat_b, firewall $fw, start $start, expected path $expect"

  lab_up
  # noudp-a: only router a drops UDP (router b as drop)
  local fw_a=$fw fw_b=$fw
  [ "$fw" = noudp-a ] && { fw_a=noudp; fw_b=drop; }
  [ "$fw" = tcp443-a ] && { fw_a=tcp443; fw_b=drop; }
  [ "$fw" = stunonly-a ] && { fw_a=stunonly; fw_b=drop; }
  [ "$name" = tunnel-tls443 ] && lab_tls
  lab_router a "$nat_a" "$fw_a"
  lab_router b "$nat_b" "$fw_b"
  lab_punch_serve "$name.server"
  if [ "$sender" = caller ]; then
    lab_punch_session lab '{"sender":{"device":"caller"}}'
    device_url || reason="no device URL for the caller camera in GET /api/session/lab"
  else
    lab_punch_session lab
  fi

  # `punch doctor` from each host must classify its NAT as the case's NAT is built
  local host nat want said
  for host in ha hb; do
    [ "$sender" = caller ] && [ "$host" = ha ] && continue   # the camera runs no Punch
    local hfw
    [ "$host" = ha ] && { nat=$nat_a; hfw=$fw_a; } || { nat=$nat_b; hfw=$fw_b; }
    [ "$nat" = random ] && want="^Mapping        endpoint-dependent mapping" || want="^Mapping        endpoint-independent mapping"
    # a network without UDP: the doctor says so, and that the tunnel will carry the media
    [ "$hfw" = noudp ] || [ "$hfw" = tcp443 ] && want="^UDP blocked: media will use the TCP tunnel"
    said=$(timeout 20 ip netns exec "$(lab_ns "$host")" "$PUNCH_BIN" doctor "$LAB_HTTP" ${LAB_CA:+--ca-file "$LAB_CA"} 2>&1)
    echo "$said" >"$LAB_LOGDIR/$name.doctor-$host.log"
    if ! grep -q "$want" <<<"$said"; then
      reason="punch doctor on $host ($nat NAT, firewall $hfw) did not say \"$want\": $(tr '\n' ' ' <<<"$said")"
    fi
  done

  if [ "$sender" = caller ]; then
    start_receiver "$name"
    start_device_sender "$name"
  elif [ "$start" = stagger ]; then
    start_sender "$name"
    lab_sleep 3
    start_receiver "$name"
  else
    start_receiver "$name"
    start_sender "$name"
  fi
  t_both=$(lab_stamp)
  local timeout_s=$MEDIA_TIMEOUT
  # the whole ladder first: the direct attempt's timeout, then the relay's wait
  [ "$name" = tunnel-after-relay ] && timeout_s=$((MEDIA_TIMEOUT + 20))
  deadline=$((t_both + timeout_s * 1000000))

  while [ -z "$reason" ]; do
    size=$(stat -c %s -- "$ts" 2>/dev/null || echo 0)
    [ "$first_s" = - ] && [ "$size" -gt 0 ] && first_s=$(lab_since "$t_both")
    if view=$(lab_punch_view lab 2>/dev/null); then
      path=$(lab_json streams.0.path <<<"$view") || path="(absent)"
    else
      path="(no answer)"
    fi
    if [ "$path" != "$last_path" ]; then
      timeline+="${timeline:+ -> }$path@$(lab_since "$t_both")s"
      lab_log "case $name: streams[0].path = $path"
      last_path=$path
    fi
    # ffprobe once there is enough, until it finds h264 (the file only grows)
    if [ "$size" -ge "$MIN_BYTES" ] && [ "$codec" != h264 ]; then
      codec=$(timeout 10 ffprobe -v error -select_streams v -show_entries stream=codec_name -of default=nw=1:nk=1 -- "$ts" 2>/dev/null | head -n1)
      codec=${codec:-none}
    fi
    if [ "$codec" = h264 ] && [ "$path" = "$expect" ]; then
      media_s=$(lab_since "$t_both")
      if [ "$sender" = caller ]; then
        # a stranger on the wan calls the camera's port with a guessed stream ID: refused, and
        # the picture keeps coming
        local grown=$size
        stranger_refused "$name" || { reason="the stranger with a wrong stream ID was not refused (see $name.stranger.log)"; break; }
        for _ in $(seq 20); do
          size=$(stat -c %s -- "$ts" 2>/dev/null || echo 0)
          [ "$size" -gt $((grown + 20000)) ] && break
          sleep 0.5
        done
        [ "$size" -gt $((grown + 20000)) ] || reason="the stream stopped after the stranger called ($grown -> $size bytes)"
      fi
      if [ "$name" = tunnel-unblock ]; then
        # the camera's network lets UDP out again: the media goes on, on the tunnel (a
        # tunnelled side stays there for its run, docs/nat-traversal.md)
        local grown=$size
        lab_router a "$nat_a" drop keep
        for _ in $(seq 30); do
          size=$(stat -c %s -- "$ts" 2>/dev/null || echo 0)
          [ "$size" -gt $((grown + 50000)) ] && break
          sleep 0.5
        done
        [ "$size" -gt $((grown + 50000)) ] || reason="the stream stopped after UDP was unblocked ($grown -> $size bytes)"
        path=$(lab_json streams.0.path <<<"$(lab_punch_view lab 2>/dev/null)") || path="(absent)"
        [ "$path" = tunnel ] || reason+="${reason:+; }after UDP was unblocked streams[0].path is $path, expected tunnel"
        timeline+=" -> unblocked, then $path"
      fi
      if [ "$name" = tunnel-after-relay ]; then
        # only the camera, whose UDP never reached the relay, was moved: the decoder, which
        # reached it, stays on UDP (the server decides, from what its relay heard)
        local why
        why=$(lab_json streams.0.path_reason <<<"$view") || why="(absent)"
        [[ "$why" == *"sender's UDP never reached the relay"* ]] || reason="streams[0].path_reason does not name the sender as the side moved to its tunnel: $why"
      fi
      break
    fi
    if [ "$(lab_stamp)" -ge "$deadline" ]; then
      reason="not within ${timeout_s}s:"
      [ "$size" -ge "$MIN_BYTES" ] || reason+=" received only $size bytes (need $MIN_BYTES);"
      [ "$size" -lt "$MIN_BYTES" ] || [ "$codec" = h264 ] || reason+=" ffprobe finds no h264 video stream (codec=$codec);"
      [ "$path" = "$expect" ] || reason+=" streams[0].path is $path, expected $expect;"
      reason=${reason%;}
      break
    fi
    if [ "$expect" = direct ] && [ "$path" = relay ]; then
      reason="the server fell back to its relay (streams[0].path=relay), expected direct"
      break
    fi
    lab_running "$name.server" || { reason="punch serve exited"; break; }
    lab_running "$name.sender" || { reason="the sender pipeline (ha) exited"; break; }
    lab_running "$name.receiver" || { reason="the receiver pipeline (hb) exited"; break; }
    sleep 0.5
  done
  [ -z "$reason" ] && result=PASS || result=FAIL

  {
    echo "case $name: NAT A=$nat_a B=$nat_b firewall=$fw start=$start expected=$expect result=$result"
    echo "path timeline (s after both pipelines started): ${timeline:-none}"
    echo "received: $size bytes, first bytes after ${first_s}s, ffprobe codec '${codec:-not run}'"
    [ -n "$reason" ] && echo "reason: $reason"
    echo "--- GET /api/session/lab"
    lab_punch_view lab 2>&1 | "$LAB_PY" -m json.tool 2>&1
    lab_conntrack "$name"
  } >"$ev" 2>&1

  lab_stop_all int
  if [ "$result" = FAIL ]; then
    {
      echo "natlab: case $name FAILED: $reason"
      echo "natlab: path timeline: ${timeline:-none}"
      show_log "$name.server"
      show_log "$name.sender"
      show_log "$name.receiver"
      echo "natlab: evidence (session view, conntrack): $ev"
    } >&2
  fi
  lab_down
  RESULTS+=("$(printf 'natlab %-20s %-4s path=%-11s expected=%-6s media_s=%-6s first_bytes_s=%-6s bytes=%s' \
    "$name" "$result" "$path" "$expect" "$media_s" "$first_s" "$size")")
  echo "${RESULTS[-1]}"
  [ "$result" = PASS ]
}

[ $# -ge 1 ] || usage
if [ "$1" = --list ]; then printf '%s\n' "${ALL_CASES[@]}"; exit 0; fi
CASES=()
for c in "$@"; do
  if [ "$c" = all ]; then CASES+=("${ALL_CASES[@]}")
  else case_spec "$c" >/dev/null || { echo "natlab: unknown case '$c'" >&2; usage; }; CASES+=("$c"); fi
done

lab_init
lab_need_tools ffprobe gst-launch-1.0 gst-inspect-1.0 srt-live-transmit
lab_need_gst videotestsrc openh264enc h264parse mpegtsmux queue filesink
lab_punch_check
lab_log "logs in $LAB_LOGDIR"
T_ALL=$(lab_stamp)
FAILED=0
for c in "${CASES[@]}"; do run_case "$c" || FAILED=$((FAILED + 1)); done
if [ ${#CASES[@]} -gt 1 ]; then
  echo "natlab: ${#CASES[@]} cases, $FAILED failed, $(lab_since "$T_ALL")s; logs in $LAB_LOGDIR"
  printf '%s\n' "${RESULTS[@]}"
fi
[ "$FAILED" = 0 ]
