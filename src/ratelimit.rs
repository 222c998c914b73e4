//! Token buckets: `rate` tokens a second up to `burst`, one taken per action.
//!
//! Time is a parameter so the buckets are tested without sleeping; the reactor passes the
//! `Instant` of the current loop pass.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// A full bucket.
    pub fn new(burst: f64, now: Instant) -> Bucket {
        Bucket {
            tokens: burst,
            last: now,
        }
    }

    /// Takes one token if there is one. `Err(wait)` says how long until there will be.
    pub fn take(&mut self, rate: f64, burst: f64, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / rate))
        }
    }

    /// How long until one token is there, without taking it (`None`: one is there now).
    pub fn wait(&self, rate: f64, burst: f64, now: Instant) -> Option<Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        let tokens = (self.tokens + elapsed * rate).min(burst);
        (tokens < 1.0).then(|| Duration::from_secs_f64((1.0 - tokens) / rate))
    }

    /// Whether the bucket has refilled completely (so it may be forgotten).
    pub fn is_full(&self, rate: f64, burst: f64, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens + elapsed * rate >= burst
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_steady_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(20.0, t0);
        for _ in 0..20 {
            assert!(b.take(10.0, 20.0, t0).is_ok());
        }
        let wait = b.take(10.0, 20.0, t0).unwrap_err();
        assert!(wait <= Duration::from_millis(100) && wait > Duration::from_millis(90));
        assert!(b.take(10.0, 20.0, t0 + Duration::from_millis(100)).is_ok());
        assert!(b.take(10.0, 20.0, t0 + Duration::from_millis(100)).is_err());
        // A long pause refills only up to the burst.
        let later = t0 + Duration::from_secs(100);
        assert!(b.is_full(10.0, 20.0, later));
        for _ in 0..20 {
            assert!(b.take(10.0, 20.0, later).is_ok());
        }
        assert!(b.take(10.0, 20.0, later).is_err());
    }

    #[test]
    fn partial_refill_and_exact_waits() {
        let ms = Duration::from_millis;
        let t0 = Instant::now();
        let (rate, burst) = (4.0, 2.0);
        let mut b = Bucket::new(burst, t0);
        assert!(b.take(rate, burst, t0).is_ok());
        assert!(b.take(rate, burst, t0).is_ok());
        // Empty: one token comes back in 1/rate s.
        assert_eq!(b.take(rate, burst, t0), Err(ms(250)));
        // Half a token after 125 ms: the rest takes 125 ms more.
        assert_eq!(b.take(rate, burst, t0 + ms(125)), Err(ms(125)));
        assert_eq!(b.take(rate, burst, t0 + ms(250)), Ok(()));
        assert_eq!(b.take(rate, burst, t0 + ms(250)), Err(ms(250)));
        // Full again two tokens (500 ms) later, not a millisecond before.
        assert!(!b.is_full(rate, burst, t0 + ms(749)));
        assert!(b.is_full(rate, burst, t0 + ms(750)));
        assert!(!Bucket::new(1.5, t0).is_full(rate, burst, t0));
        assert!(Bucket::new(2.0, t0).is_full(rate, burst, t0));
    }

    #[test]
    fn wait_says_how_long_until_a_token_without_taking_one() {
        let ms = Duration::from_millis;
        let t0 = Instant::now();
        let (rate, burst) = (4.0, 2.0);
        let mut b = Bucket::new(burst, t0);
        assert_eq!(b.wait(rate, burst, t0), None);
        assert!(b.take(rate, burst, t0).is_ok());
        assert!(b.take(rate, burst, t0).is_ok());
        assert_eq!(b.wait(rate, burst, t0), Some(ms(250)));
        // Half a token back after 125 ms: the other half takes 125 ms more.
        assert_eq!(b.wait(rate, burst, t0 + ms(125)), Some(ms(125)));
        assert_eq!(b.wait(rate, burst, t0 + ms(125)), Some(ms(125)));
        assert_eq!(b.wait(rate, burst, t0 + ms(250)), None);
        assert!(b.take(rate, burst, t0 + ms(250)).is_ok());
    }

    #[test]
    fn per_minute_limit() {
        let t0 = Instant::now();
        let (rate, burst) = (10.0 / 60.0, 10.0);
        let mut b = Bucket::new(burst, t0);
        for _ in 0..10 {
            assert!(b.take(rate, burst, t0).is_ok());
        }
        let wait = b.take(rate, burst, t0).unwrap_err();
        assert_eq!(wait.as_secs(), 6);
    }
}
