//! Turns the inner SRT element's cumulative `stats` into per-interval health.

use std::time::Instant;

use punch::protocol::{Health, Role};

/// A number field of an `application/x-srt-statistics` structure, whatever its integer width.
pub fn number(stats: &gst::StructureRef, field: &str) -> Option<f64> {
    if let Ok(v) = stats.get::<f64>(field) {
        return Some(v);
    }
    if let Ok(v) = stats.get::<i64>(field) {
        return Some(v as f64);
    }
    if let Ok(v) = stats.get::<u64>(field) {
        return Some(v as f64);
    }
    if let Ok(v) = stats.get::<i32>(field) {
        return Some(v.into());
    }
    stats.get::<u32>(field).ok().map(f64::from)
}

/// The statistics of the element's one SRT link. A listener's are per caller (a `callers`
/// array of structures; `docs/srt-notes.md`): the first caller's, which the relay lets be the
/// only one. Rendezvous and caller statistics are flat already.
pub fn link_stats(stats: gst::Structure) -> gst::Structure {
    let first = stats
        .get::<gst::glib::ValueArray>("callers")
        .ok()
        .and_then(|callers| {
            callers
                .iter()
                .next()
                .and_then(|v| v.get::<gst::Structure>().ok())
        });
    match first {
        Some(mut caller) => {
            // totals the element keeps for all callers
            for field in ["bytes-sent-total", "bytes-received-total"] {
                if let Some(v) = stats.value(field).ok().filter(|_| !caller.has_field(field)) {
                    caller.set_value(field, v.clone());
                }
            }
            caller
        }
        None => stats,
    }
}

/// Whether the inner element has an SRT connection: rendezvous has no connect signal, but
/// `rtt-ms` is only present while connected (`docs/srt-notes.md`).
pub fn is_connected(stats: &gst::StructureRef) -> bool {
    stats.has_field("rtt-ms")
}

/// The cumulative counters one report is computed from.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    at: Instant,
    payload_bytes: f64,
    packets: f64,
    retransmitted: f64,
    lost: f64,
}

impl Sample {
    pub fn take(stats: &gst::StructureRef, role: Role) -> Sample {
        let n = |f| number(stats, f).unwrap_or(0.0);
        match role {
            Role::Sender => Sample {
                at: Instant::now(),
                payload_bytes: n("bytes-sent-total"),
                packets: n("packets-sent"),
                retransmitted: n("packets-retransmitted"),
                lost: n("packets-sent-lost"),
            },
            Role::Receiver => Sample {
                at: Instant::now(),
                payload_bytes: n("bytes-received-total"),
                packets: n("packets-received"),
                retransmitted: 0.0,
                lost: n("packets-received-lost"),
            },
        }
    }
}

/// One health report, as posted on the bus (`punch-health`) and sent to the server.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub connected: bool,
    pub rtt_ms: Option<f64>,
    /// Payload bit/s over the interval.
    pub bitrate: f64,
    /// Retransmitted packets as % of packets sent (sender only).
    pub retransmit_percent: Option<f64>,
    /// Lost packets as % of packets sent (sender) or expected (receiver).
    pub loss_percent: Option<f64>,
    pub negotiated_latency_ms: Option<i32>,
    pub bandwidth_mbps: Option<f64>,
    pub bytes_total: u64,
    pub interval_ms: u64,
}

/// A counter that went down restarted from zero.
fn delta(prev: f64, cur: f64) -> f64 {
    if cur >= prev { cur - prev } else { cur }
}

fn percent(part: f64, whole: f64) -> Option<f64> {
    (whole > 0.0).then(|| (100.0 * part / whole).min(100.0))
}

pub fn report(prev: &Sample, cur: &Sample, stats: &gst::StructureRef, role: Role) -> Report {
    let secs = cur.at.duration_since(prev.at).as_secs_f64().max(1e-3);
    // libsrt's counters restart together with each SRT connection; the element's byte counter
    // does not.
    let restarted = cur.packets < prev.packets;
    let srt_delta = |p: f64, c: f64| if restarted { c } else { delta(p, c) };
    let packets = srt_delta(prev.packets, cur.packets);
    let lost = srt_delta(prev.lost, cur.lost);
    let connected = is_connected(stats);
    Report {
        connected,
        rtt_ms: number(stats, "rtt-ms"),
        bitrate: delta(prev.payload_bytes, cur.payload_bytes) * 8.0 / secs,
        retransmit_percent: match role {
            Role::Sender if connected => {
                percent(srt_delta(prev.retransmitted, cur.retransmitted), packets).or(Some(0.0))
            }
            _ => None,
        },
        loss_percent: connected
            .then(|| match role {
                Role::Sender => percent(lost, packets),
                Role::Receiver => percent(lost, packets + lost),
            })
            .map(|p| p.unwrap_or(0.0)),
        negotiated_latency_ms: stats.get::<i32>("negotiated-latency-ms").ok(),
        bandwidth_mbps: number(stats, "bandwidth-mbps"),
        bytes_total: cur.payload_bytes as u64,
        interval_ms: (secs * 1000.0).round() as u64,
    }
}

impl Report {
    /// The bus message body.
    pub fn structure(&self, stream: &str, role: Role) -> gst::Structure {
        let mut s = gst::Structure::builder("punch-health")
            .field("stream", stream)
            .field("role", role.as_str())
            .field("connected", self.connected)
            .field("bitrate", self.bitrate)
            .field("bytes-total", self.bytes_total)
            .field("interval-ms", self.interval_ms)
            .build();
        if let Some(v) = self.rtt_ms {
            s.set("rtt-ms", v);
        }
        if let Some(v) = self.retransmit_percent {
            s.set("retransmit-percent", v);
        }
        if let Some(v) = self.loss_percent {
            s.set("loss-percent", v);
        }
        if let Some(v) = self.negotiated_latency_ms {
            s.set("negotiated-latency-ms", v);
        }
        if let Some(v) = self.bandwidth_mbps {
            s.set("bandwidth-mbps", v);
        }
        s
    }

    /// The `health` message for the server.
    pub fn to_protocol(&self) -> Health {
        Health {
            rtt: self.rtt_ms,
            retransmit: self.retransmit_percent,
            bitrate: Some(self.bitrate),
            loss: self.loss_percent,
            latency: self.negotiated_latency_ms.map(f64::from),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(fields: &str) -> gst::Structure {
        format!("application/x-srt-statistics, {fields}")
            .parse()
            .unwrap()
    }

    #[test]
    fn rates_and_ratios_over_the_interval() {
        gst::init().unwrap();
        let s0 = stats(
            "packets-sent=(gint64)100, packets-retransmitted=(int)2, packets-sent-lost=(int)1, bytes-sent-total=(guint64)100000, rtt-ms=(double)12.5",
        );
        let s1 = stats(
            "packets-sent=(gint64)300, packets-retransmitted=(int)6, packets-sent-lost=(int)3, bytes-sent-total=(guint64)350000, rtt-ms=(double)14.0, negotiated-latency-ms=(int)200, bandwidth-mbps=(double)11.5",
        );
        let mut a = Sample::take(&s0, Role::Sender);
        let b = Sample::take(&s1, Role::Sender);
        a.at = b.at - std::time::Duration::from_secs(2);
        let r = report(&a, &b, &s1, Role::Sender);
        assert!(r.connected);
        assert_eq!(r.rtt_ms, Some(14.0));
        assert!((r.bitrate - 1_000_000.0).abs() < 1.0, "{}", r.bitrate);
        assert_eq!(r.retransmit_percent, Some(2.0));
        assert_eq!(r.loss_percent, Some(1.0));
        assert_eq!(r.negotiated_latency_ms, Some(200));
        assert_eq!(r.interval_ms, 2000);
        let h = r.to_protocol();
        assert!(h.validate().is_ok());
    }

    #[test]
    fn unconnected_and_reset_counters() {
        gst::init().unwrap();
        let idle = stats("bytes-received-total=(guint64)0");
        assert!(!is_connected(&idle));
        let s0 = stats(
            "packets-received=(gint64)1000, packets-received-lost=(int)10, bytes-received-total=(guint64)900000, rtt-ms=(double)1.0",
        );
        // reconnected: counters restarted
        let s1 = stats(
            "packets-received=(gint64)90, packets-received-lost=(int)10, bytes-received-total=(guint64)1000000, rtt-ms=(double)1.0",
        );
        let a = Sample::take(&s0, Role::Receiver);
        let b = Sample::take(&s1, Role::Receiver);
        let r = report(&a, &b, &s1, Role::Receiver);
        assert_eq!(r.loss_percent, Some(10.0), "10 lost of 100 expected");
        assert_eq!(r.retransmit_percent, None);
        let r = report(&a, &a, &idle, Role::Receiver);
        assert!(!r.connected && r.loss_percent.is_none() && r.rtt_ms.is_none());
    }
}
