//! When to try a failed delivery again: the configured schedule with jitter, bounded `Retry-After`.

use std::time::{Duration, SystemTime};

/// The retry schedule of outbound deliveries.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    schedule: Vec<Duration>,
    jitter_percent: u8,
}

impl RetryPolicy {
    pub fn new(schedule_ms: &[u64], jitter_percent: u8) -> RetryPolicy {
        RetryPolicy {
            schedule: schedule_ms
                .iter()
                .copied()
                .map(Duration::from_millis)
                .collect(),
            jitter_percent: jitter_percent.min(100),
        }
    }

    /// Retries allowed after the first attempt.
    pub fn max_retries(&self) -> u32 {
        self.schedule.len() as u32
    }

    /// The wait before the next try, after `attempts_so_far` attempts in this round (first attempt
    /// included), or `None` when the schedule is exhausted. A receiver's `Retry-After` lengthens the
    /// wait, but never past the schedule's longest step.
    pub fn next_delay(
        &self,
        attempts_so_far: u32,
        retry_after: Option<Duration>,
    ) -> Option<Duration> {
        let index = usize::try_from(attempts_so_far.checked_sub(1)?).ok()?;
        let base = *self.schedule.get(index)?;
        let jittered = self.jitter(base);
        let ceiling = self.schedule.iter().copied().max().unwrap_or(base);
        Some(match retry_after {
            Some(asked) if asked > jittered => asked.min(ceiling.max(jittered)),
            _ => jittered,
        })
    }

    fn jitter(&self, base: Duration) -> Duration {
        if self.jitter_percent == 0 || base.is_zero() {
            return base;
        }
        let [a, b, c, d] = crate::crypto::random_bytes::<4>();
        // A uniform factor in [1 - j, 1 + j].
        let unit = f64::from(u32::from_le_bytes([a, b, c, d])) / f64::from(u32::MAX);
        let spread = f64::from(self.jitter_percent) / 100.0;
        base.mul_f64(1.0 - spread + 2.0 * spread * unit)
    }
}

/// Parses `Retry-After`: delay seconds, or an HTTP date.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_schedule_then_stops() {
        let policy = RetryPolicy::new(&[10, 20, 40], 0);
        assert_eq!(policy.max_retries(), 3);
        assert_eq!(policy.next_delay(1, None), Some(Duration::from_millis(10)));
        assert_eq!(policy.next_delay(2, None), Some(Duration::from_millis(20)));
        assert_eq!(policy.next_delay(3, None), Some(Duration::from_millis(40)));
        assert_eq!(policy.next_delay(4, None), None);
        assert_eq!(policy.next_delay(0, None), None);
    }

    #[test]
    fn jitter_stays_within_its_band() {
        let policy = RetryPolicy::new(&[1_000], 20);
        for _ in 0..200 {
            let delay = policy.next_delay(1, None).unwrap();
            assert!((800..=1_200).contains(&delay.as_millis()), "{delay:?}");
        }
    }

    #[test]
    fn retry_after_lengthens_the_wait_up_to_the_longest_step() {
        let policy = RetryPolicy::new(&[10, 20, 40], 0);
        let asked = |s| Some(Duration::from_millis(s));
        assert_eq!(policy.next_delay(1, asked(30)), asked(30));
        assert_eq!(
            policy.next_delay(1, asked(5_000)),
            asked(40),
            "capped by the schedule"
        );
        assert_eq!(
            policy.next_delay(2, asked(1)),
            asked(20),
            "never shortens the wait"
        );
    }

    #[test]
    fn parses_both_retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
