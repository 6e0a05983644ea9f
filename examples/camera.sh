#!/usr/bin/env bash
# Camera side: a live test pattern and tone, H.264 + AAC in MPEG-TS, sent with punchsink.
# usage: examples/camera.sh 'punch://HOST:8787/SESSION/STREAM?token=SENDER_TOKEN'
# Needs only what scripts/install-deps.sh installs (openh264enc and voaacenc: gstreamer1.0-plugins-bad).
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 'punch://HOST:8787/SESSION/STREAM?token=SENDER_TOKEN'" >&2; exit 2; }
export GST_PLUGIN_PATH="${GST_PLUGIN_PATH:-$(cd "$(dirname "$0")/.." && pwd)/target/release}"
exec gst-launch-1.0 -e \
  videotestsrc is-live=true pattern=smpte ! video/x-raw,width=1280,height=720,framerate=25/1 \
    ! openh264enc bitrate=4000000 ! h264parse config-interval=-1 ! queue ! mux. \
  audiotestsrc is-live=true wave=sine ! audioconvert ! voaacenc ! aacparse ! queue ! mux. \
  mpegtsmux name=mux alignment=7 ! punchsink uri="$1"
