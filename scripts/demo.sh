#!/usr/bin/env bash
# The main job: install what is missing, build, start the Punch server on the embedded default
# database (./punch.db), then prove it on this machine: create a session, run a camera pipeline
# (punchsink) and a decoder pipeline (punchsrc) for a few seconds, show their health and what
# arrived. The server keeps running afterwards; Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/install-deps.sh
cargo build --release --workspace
cargo build --release -p gst-plugin-punch --example punch-monitor

PORT="${PUNCH_PORT:-8787}"
BASE="http://127.0.0.1:$PORT"
OUT="$PWD/demo-output"
mkdir -p "$OUT"
MONITOR=target/release/examples/punch-monitor
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
trap 'exit 130' INT TERM

target/release/punch serve --listen "0.0.0.0:$PORT" --db "${PUNCH_DB:-punch.db}" &
PIDS+=($!)
for _ in $(seq 50); do curl -fs "$BASE/healthz" >/dev/null 2>&1 && break; sleep 0.2; done
curl -fs "$BASE/healthz" >/dev/null || { echo "demo: the server did not come up on port $PORT" >&2; exit 1; }

SESSION="demo-$(date +%H%M%S)"
CREATED=$(curl -fs -X POST "$BASE/api/session" -H 'Content-Type: application/json' \
  -d "{\"name\": \"$SESSION\", \"streams\": {\"cam1\": {\"label\": \"Demo camera\"}}}")
field() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))' "$1" <<<"$CREATED"; }
ADMIN=$(field 'd["token"]')
SENDER_URI="punch://127.0.0.1:$PORT/$SESSION/cam1?token=$(field 'd["stream_tokens"]["cam1"]["sender"]')"
RECEIVER_URI="punch://127.0.0.1:$PORT/$SESSION/cam1?token=$(field 'd["stream_tokens"]["cam1"]["receiver"]')"
echo
echo "== session $SESSION created; dashboard URL: $(field 'd["url"]')"
echo "== decoder: punchsrc → $OUT/received.ts   camera: test pattern → openh264enc → mpegtsmux → punchsink"
rm -f "$OUT/received.ts"
"$MONITOR" --seconds 12 "punchsrc name=decoder uri=\"$RECEIVER_URI\" ! filesink location=$OUT/received.ts" &
PIDS+=($!)
sleep 1
"$MONITOR" --seconds 9 "videotestsrc is-live=true pattern=ball ! video/x-raw,width=1280,height=720,framerate=25/1 \
  ! openh264enc bitrate=3000000 ! h264parse config-interval=-1 ! mpegtsmux alignment=7 \
  ! punchsink name=camera label=\"Demo camera\" uri=\"$SENDER_URI\"" || true
wait "${PIDS[1]}" || true
echo
echo "== what the decoder received:"
ls -l "$OUT/received.ts"
ffprobe -hide_banner "$OUT/received.ts" 2>&1 | grep -E "Input|Duration|Stream" || echo "(nothing decodable arrived)"
echo
echo "== the server's view of the session:"
curl -fs -H "Authorization: Bearer $ADMIN" "$BASE/api/session/$SESSION" > "$OUT/session.json" || true
python3 - "$OUT/session.json" <<'PY' || true
import json, sys
v = json.load(open(sys.argv[1]))
print("session %s: %s" % (v["session"], v["state"]))
for s in v["streams"]:
    for side in ("sender", "receiver"):
        p = s[side]
        addr = p["address"] or {}
        print("  %s %-8s %-10s %s:%s  last health %s" % (s["name"], side, p["status"], addr.get("ip", "-"), addr.get("port", "-"), json.dumps(p["last_health"])))
PY
echo
echo "== the server keeps running on port $PORT (database ${PUNCH_DB:-punch.db}); Ctrl-C stops it."
echo "   Dashboard of this session (health history, QR codes, connection strings, tally):"
echo "     $(field 'd["url"]')"
echo "   Camera line:  examples/camera.sh '<punch URI with a sender token>'"
echo "   Decoder line: examples/decoder.sh '<punch URI with a receiver token>'"
wait "${PIDS[0]}"
