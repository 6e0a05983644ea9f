//! The one rate-limiting mechanism: a token bucket, and a map of buckets per key (client IP).
//! WebSocket message rates, session creation and relay bandwidth all use it.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::Instant;

/// Allows `rate` units per second on average and bursts of up to `burst` units.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    /// Units added per second.
    rate: f64,
    /// Most units it holds (and starts with).
    burst: f64,
    /// Units available at `at`.
    tokens: f64,
    /// When `tokens` was last brought up to date.
    at: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: f64, burst: f64) -> Self {
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            at: Instant::now(),
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.at = now.max(self.at);
    }

    /// Takes `amount` units if they are there.
    pub fn take(&mut self, amount: f64, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= amount {
            self.tokens -= amount;
            true
        } else {
            false
        }
    }

    /// Whether it would be full at `now` (it then holds no information worth keeping).
    fn full_at(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens + elapsed * self.rate >= self.burst
    }
}

/// The key per-client limits count by: an IPv4 address, or the /64 prefix of an IPv6 one (one
/// IPv6 customer usually holds a whole /64, so counting single addresses would not bound them).
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// Buckets kept before full ones are forgotten.
const PRUNE_ABOVE: usize = 10_000;

/// One token bucket per key, created full on first use.
#[derive(Debug)]
pub struct KeyedLimiter<K> {
    /// `None`: unlimited.
    shape: Option<(f64, f64)>,
    buckets: Mutex<HashMap<K, TokenBucket>>,
}

impl<K: Eq + Hash> KeyedLimiter<K> {
    /// `rate` per second with bursts of `burst` per key.
    pub fn new(rate: f64, burst: f64) -> Self {
        KeyedLimiter {
            shape: Some((rate, burst)),
            buckets: Mutex::default(),
        }
    }

    /// `n` per minute per key, all at once if need be; 0 = unlimited.
    pub fn per_minute(n: u32) -> Self {
        if n == 0 {
            return KeyedLimiter {
                shape: None,
                buckets: Mutex::default(),
            };
        }
        Self::new(f64::from(n) / 60.0, f64::from(n))
    }

    /// Takes one unit from `key`'s bucket if it has one.
    pub fn allow(&self, key: K) -> bool {
        let Some((rate, burst)) = self.shape else {
            return true;
        };
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() > PRUNE_ABOVE {
            buckets.retain(|_, b| !b.full_at(now));
        }
        buckets
            .entry(key)
            .or_insert_with(|| TokenBucket::new(rate, burst))
            .take(1.0, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bursts_then_the_rate() {
        let mut b = TokenBucket::new(1_000_000.0, 250_000.0);
        let start = Instant::now();
        let mut sent = 0;
        while b.take(1000.0, start) {
            sent += 1000;
        }
        assert_eq!(sent, 250_000);
        // 2 ms at 1 MB/s: 2000 units more.
        let later = start + Duration::from_millis(2);
        assert!(b.take(1000.0, later));
        assert!(b.take(1000.0, later));
        assert!(!b.take(1000.0, later));
    }

    #[test]
    fn ipv6_clients_count_per_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(c));
        let v4: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(client_key(v4), "192.0.2.7".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn keys_have_their_own_buckets() {
        let l = KeyedLimiter::per_minute(2);
        assert!(l.allow("a") && l.allow("a"));
        assert!(!l.allow("a"));
        assert!(l.allow("b"));
        let unlimited = KeyedLimiter::per_minute(0);
        assert!((0..1000).all(|_| unlimited.allow("a")));
    }
}
