#!/usr/bin/env bash
# Decoder side: punchsrc, MPEG-TS demuxed, H.264 and AAC decoded and played.
# usage: examples/decoder.sh 'punch://HOST:8787/SESSION/STREAM?token=RECEIVER_TOKEN'
# On a machine without a display or sound card: VIDEO_SINK=fakesink AUDIO_SINK=fakesink.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 'punch://HOST:8787/SESSION/STREAM?token=RECEIVER_TOKEN'" >&2; exit 2; }
export GST_PLUGIN_PATH="${GST_PLUGIN_PATH:-$(cd "$(dirname "$0")/.." && pwd)/target/release}"
exec gst-launch-1.0 \
  punchsrc uri="$1" ! tsdemux name=demux \
  demux. ! queue ! h264parse ! openh264dec ! videoconvert ! "${VIDEO_SINK:-autovideosink}" \
  demux. ! queue ! aacparse ! faad ! audioconvert ! "${AUDIO_SINK:-autoaudiosink}"
