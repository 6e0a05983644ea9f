//! What the server derives from the health peers report: a stream's recent history, its colour
//! on the dashboard, and the SRT latency it recommends. Pure functions, unit-tested on the
//! table values of the SRT Deployment Guide (see `docs/dashboard.md` for the thresholds).

use std::collections::VecDeque;

use crate::protocol::{
    Health, HealthLevel, HealthSample, LatencyRecommendation, MAX_LATENCY_MS, MIN_LATENCY_MS, Role,
};

/// Samples kept per stream (both sides; peers report about once a second).
const WINDOW: usize = 120;
/// Points of history shown on the dashboard.
const HISTORY_POINTS: usize = 60;
/// Fewest RTT samples a recommendation is based on.
const MIN_SAMPLES: usize = 5;
/// The SRT guide's minimum latency assumes an RTT of at least this much (ms).
const RTT_FLOOR_MS: f64 = 20.0;

/// Loss (or retransmit) percentage above which a stream is amber, and red.
pub const AMBER_LOSS: f64 = 1.0;
pub const RED_LOSS: f64 = 5.0;
/// Latency below this many RTTs is amber (SRT's recommended minimum is 4), below 3 red.
pub const AMBER_RTT_MULTIPLE: f64 = 4.0;
pub const RED_RTT_MULTIPLE: f64 = 3.0;

#[derive(Debug, Clone)]
struct Sample {
    at_ms: i64,
    role: Role,
    rtt: Option<f64>,
    bitrate: Option<f64>,
    loss: f64,
}

/// The recent health of one stream, both sides.
#[derive(Debug, Clone, Default)]
pub struct StreamHealth {
    samples: VecDeque<Sample>,
}

impl StreamHealth {
    pub fn record(&mut self, role: Role, h: &Health, at_ms: i64) {
        if self.samples.len() == WINDOW {
            self.samples.pop_front();
        }
        self.samples.push_back(Sample {
            at_ms,
            role,
            rtt: h.rtt,
            bitrate: h.bitrate,
            loss: h.loss.unwrap_or(0.0).max(h.retransmit.unwrap_or(0.0)),
        });
    }

    /// The receiver's recent reports (the rate that arrives), the sender's if the receiver has
    /// reported nothing.
    pub fn history(&self) -> Vec<HealthSample> {
        let role = if self.samples.iter().any(|s| s.role == Role::Receiver) {
            Role::Receiver
        } else {
            Role::Sender
        };
        let mut points: Vec<HealthSample> = self
            .samples
            .iter()
            .rev()
            .filter(|s| s.role == role)
            .take(HISTORY_POINTS)
            .map(|s| HealthSample {
                t: s.at_ms,
                rtt: s.rtt,
                bitrate: s.bitrate,
            })
            .collect();
        points.reverse();
        points
    }

    pub fn recommendation(&self) -> Option<LatencyRecommendation> {
        let rtts: Vec<f64> = self.samples.iter().filter_map(|s| s.rtt).collect();
        let loss = self.samples.iter().map(|s| s.loss).fold(0.0, f64::max);
        recommend(&rtts, loss)
    }
}

/// The RTT multiplier for a loss percentage: the SRT Deployment Guide's table (≤1 % → 3,
/// ≤3 % → 4, ≤7 % → 5, ≤10 % → 6), extrapolated by one per further 5 % up to 20.
pub fn rtt_multiplier(loss_percent: f64) -> u32 {
    match loss_percent {
        l if l <= 1.0 => 3,
        l if l <= 3.0 => 4,
        l if l <= 7.0 => 5,
        l if l <= 10.0 => 6,
        l => (6 + ((l - 10.0) / 5.0).ceil() as u32).min(20),
    }
}

/// Nearest-rank percentile of `values` (not empty).
fn percentile(values: &[f64], p: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// SRT latency = multiplier(worst loss) × 95th-percentile RTT (at least 20 ms), rounded up to
/// 10 ms and clamped to 20–8000 ms. `None` with fewer than five RTT samples.
pub fn recommend(rtts: &[f64], worst_loss_percent: f64) -> Option<LatencyRecommendation> {
    if rtts.len() < MIN_SAMPLES {
        return None;
    }
    let rtt_p95 = percentile(rtts, 95.0);
    let multiplier = rtt_multiplier(worst_loss_percent);
    let raw = f64::from(multiplier) * rtt_p95.max(RTT_FLOOR_MS);
    let latency = ((raw / 10.0).ceil() * 10.0)
        .clamp(f64::from(MIN_LATENCY_MS), f64::from(MAX_LATENCY_MS)) as u32;
    let mut note = format!(
        "{multiplier} × p95 RTT {rtt_p95:.1} ms{} at up to {worst_loss_percent:.1} % loss over {} samples",
        if rtt_p95 < RTT_FLOOR_MS {
            " (counted as 20 ms)"
        } else {
            ""
        },
        rtts.len()
    );
    if worst_loss_percent > 10.0 {
        note.push_str("; loss above 10 % is beyond the SRT guide's table: fix the link");
    }
    Some(LatencyRecommendation {
        latency,
        rtt_p95,
        loss: worst_loss_percent,
        multiplier,
        samples: rtts.len(),
        note,
    })
}

/// The colour of a stream from its two sides' latest health and the latency the stream runs
/// with (the negotiated one when reported). `None` until a side reports.
pub fn level(
    sides: [Option<&Health>; 2],
    configured_latency_ms: u32,
) -> Option<(HealthLevel, String)> {
    let reports: Vec<&Health> = sides.into_iter().flatten().collect();
    if reports.is_empty() {
        return None;
    }
    let mut worst = (HealthLevel::Green, String::from("healthy"));
    let mut raise = |lvl: HealthLevel, why: String| {
        if lvl > worst.0 {
            worst = (lvl, why);
        }
    };
    for h in &reports {
        let loss = h.loss.unwrap_or(0.0).max(h.retransmit.unwrap_or(0.0));
        if loss > RED_LOSS {
            raise(
                HealthLevel::Red,
                format!("loss/retransmits {loss:.1} % (red above {RED_LOSS} %)"),
            );
        } else if loss > AMBER_LOSS {
            raise(
                HealthLevel::Amber,
                format!("loss/retransmits {loss:.1} % (amber above {AMBER_LOSS} %)"),
            );
        }
        if let Some(rtt) = h.rtt.filter(|r| *r > 0.0) {
            let latency = h.latency.unwrap_or(f64::from(configured_latency_ms));
            let multiple = latency / rtt;
            if multiple < RED_RTT_MULTIPLE {
                raise(
                    HealthLevel::Red,
                    format!(
                        "latency {latency:.0} ms is {multiple:.1} × RTT {rtt:.0} ms (red below {RED_RTT_MULTIPLE})"
                    ),
                );
            } else if multiple < AMBER_RTT_MULTIPLE {
                raise(
                    HealthLevel::Amber,
                    format!(
                        "latency {latency:.0} ms is {multiple:.1} × RTT {rtt:.0} ms (amber below {AMBER_RTT_MULTIPLE})"
                    ),
                );
            }
        }
    }
    Some(worst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiplier_follows_the_srt_guide_table() {
        for (loss, m) in [
            (0.0, 3),
            (1.0, 3),
            (1.01, 4),
            (3.0, 4),
            (5.0, 5),
            (7.0, 5),
            (9.0, 6),
            (10.0, 6),
            (12.0, 7),
            (20.0, 8),
            (99.0, 20),
        ] {
            assert_eq!(rtt_multiplier(loss), m, "loss {loss} %");
        }
    }

    #[test]
    fn minimum_latency_column_for_short_rtt() {
        // The guide's "minimum latency for RTT ≤ 20 ms" column: 60, 80, 100, 120 ms.
        let rtts = [5.0; 10];
        for (loss, latency) in [(0.5, 60), (2.0, 80), (6.0, 100), (10.0, 120)] {
            let r = recommend(&rtts, loss).unwrap();
            assert_eq!(r.latency, latency, "loss {loss} %");
            assert!(r.note.contains("counted as 20 ms"), "{}", r.note);
        }
    }

    #[test]
    fn uses_the_95th_percentile_not_the_mean() {
        // 19 samples at 50 ms and one spike at 200 ms: p95 (nearest rank) is 50, the max 200.
        let mut rtts = vec![50.0; 19];
        rtts.push(200.0);
        let r = recommend(&rtts, 0.0).unwrap();
        assert_eq!(r.rtt_p95, 50.0);
        assert_eq!(r.latency, 150);
        // With 10 % of the samples high, p95 is high too: jitter raises the latency.
        let mut rtts = vec![50.0; 18];
        rtts.extend([200.0, 210.0]);
        let r = recommend(&rtts, 2.0).unwrap();
        assert_eq!(r.rtt_p95, 200.0);
        assert_eq!(r.multiplier, 4);
        assert_eq!(r.latency, 800);
    }

    #[test]
    fn rounds_up_and_clamps() {
        assert_eq!(recommend(&[33.3; 5], 0.0).unwrap().latency, 100); // 99.9 → 100
        assert_eq!(recommend(&[3000.0; 5], 50.0).unwrap().latency, 8000);
        assert!(recommend(&[10.0; 4], 0.0).is_none(), "too few samples");
        let r = recommend(&[100.0; 5], 15.0).unwrap();
        assert!(r.note.contains("beyond the SRT guide"), "{}", r.note);
    }

    #[test]
    fn levels() {
        let h = |rtt: f64, retransmit: f64| Health {
            rtt: Some(rtt),
            retransmit: Some(retransmit),
            ..Default::default()
        };
        assert_eq!(level([None, None], 200), None);
        assert_eq!(
            level([Some(&h(10.0, 0.0)), None], 200).unwrap().0,
            HealthLevel::Green
        );
        let (lvl, why) = level([Some(&h(10.0, 2.0)), Some(&h(10.0, 0.0))], 200).unwrap();
        assert_eq!(lvl, HealthLevel::Amber);
        assert!(why.contains("2.0 %"), "{why}");
        assert_eq!(
            level([Some(&h(10.0, 6.0)), None], 200).unwrap().0,
            HealthLevel::Red
        );
        // 200 ms latency over 60 ms RTT is 3.3 × RTT: amber; over 80 ms, 2.5 ×: red.
        assert_eq!(
            level([None, Some(&h(60.0, 0.0))], 200).unwrap().0,
            HealthLevel::Amber
        );
        let (lvl, why) = level([None, Some(&h(80.0, 0.0))], 200).unwrap();
        assert_eq!(lvl, HealthLevel::Red);
        assert!(why.contains("2.5 × RTT"), "{why}");
        // The negotiated latency a peer reports wins over the configured one.
        let negotiated = Health {
            latency: Some(500.0),
            ..h(80.0, 0.0)
        };
        assert_eq!(
            level([Some(&negotiated), None], 200).unwrap().0,
            HealthLevel::Green
        );
    }

    #[test]
    fn history_prefers_the_receiver_and_keeps_order() {
        let mut s = StreamHealth::default();
        for i in 0..3 {
            s.record(
                Role::Sender,
                &Health {
                    rtt: Some(1.0),
                    ..Default::default()
                },
                i,
            );
        }
        assert_eq!(s.history().len(), 3);
        for i in 0..100 {
            s.record(
                Role::Receiver,
                &Health {
                    bitrate: Some(i as f64),
                    ..Default::default()
                },
                100 + i,
            );
        }
        let h = s.history();
        assert_eq!(h.len(), HISTORY_POINTS);
        assert_eq!(h.last().unwrap().bitrate, Some(99.0));
        assert!(h.windows(2).all(|w| w[0].t < w[1].t));
    }
}
