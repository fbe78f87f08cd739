//! Scan pacing shared by every `discover` protocol: a global bound on requests per second.
//!
//! Invariant: the send slots `Pacer::slot` hands out are at least `1/rate` apart (measured
//! when each is handed out), whoever asks, so any one-second window holds at most `rate + 1`
//! requests. Each request (and each
//! retry) takes its own slot; callers keep at most one request in flight per target
//! themselves by awaiting each answer before asking for the next slot.

use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

/// Largest `--rate` accepted: a discovery scan is meant to be gentle.
pub const MAX_RATE: u32 = 1000;

/// Parses `--rate`: `N/s` or `N` requests per second, 1..=`MAX_RATE`.
pub fn parse_rate(s: &str) -> Result<u32, String> {
    let t = s.trim();
    let n = t.strip_suffix("/s").unwrap_or(t).trim();
    match n.parse::<u32>() {
        Ok(r) if (1..=MAX_RATE).contains(&r) => Ok(r),
        _ => Err(format!("--rate {s:?}: expected requests per second, 1 to {MAX_RATE}, e.g. \"50/s\"")),
    }
}

/// Hands out send slots at most `rate` per second, to any number of tasks.
#[derive(Debug)]
pub struct Pacer {
    spacing: Duration,
    next: Mutex<Option<Instant>>,
}

impl Pacer {
    pub fn new(rate_per_s: u32) -> Self {
        Self { spacing: Duration::from_secs(1) / rate_per_s.max(1), next: Mutex::new(None) }
    }

    /// Waits for the next free send slot; send right after it returns. The slot is taken
    /// when the caller is running again, not when it started waiting: a task woken late
    /// must not send close behind the next one.
    pub async fn slot(&self) {
        loop {
            let wait = {
                let mut next = self.next.lock().await;
                let now = Instant::now();
                match *next {
                    Some(at) if at > now => at,
                    _ => {
                        *next = Some(now + self.spacing);
                        return;
                    }
                }
            };
            tokio::time::sleep_until(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_with_or_without_per_second() {
        assert_eq!(parse_rate("50/s"), Ok(50));
        assert_eq!(parse_rate("20"), Ok(20));
        for bad in ["0", "0/s", "fast", "-1/s", "1001/s", "50/min"] {
            assert!(parse_rate(bad).unwrap_err().starts_with(&format!("--rate {bad:?}")), "{bad}");
        }
    }

    /// Many tasks asking at once are spread out: no one-second window holds more than
    /// `rate + 1` slots.
    #[tokio::test(start_paused = true)]
    async fn slots_keep_the_rate_across_tasks() {
        let pacer = std::sync::Arc::new(Pacer::new(20));
        let start = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..30 {
            let p = pacer.clone();
            tasks.spawn(async move {
                let mut at = Vec::new();
                for _ in 0..3 {
                    p.slot().await;
                    at.push(Instant::now() - start);
                }
                at
            });
        }
        let mut all: Vec<Duration> = tasks.join_all().await.into_iter().flatten().collect();
        all.sort();
        assert_eq!(all.len(), 90);
        for (i, t) in all.iter().enumerate() {
            let in_window = all[i..].iter().take_while(|u| **u < *t + Duration::from_secs(1)).count();
            assert!(in_window <= 21, "{in_window} slots in the second after {t:?}");
        }
    }
}
