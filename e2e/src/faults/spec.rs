//! The `--faults` syntax: comma-separated `key=value` pairs, each optional.
//!
//! | key             | value                        | effect                                           |
//! |-----------------|------------------------------|--------------------------------------------------|
//! | `latency`       | duration (`50ms`, `1s`)      | every request waits this long before forwarding  |
//! | `error-rate`    | fraction 0..1 (`0.1`)        | that share of requests is answered `500`         |
//! | `throttle-rate` | fraction 0..1 (`0.05`)       | that share is answered `429` with `Retry-After: 1` |
//! | `cut-watch`     | duration (`10s`)             | every watch stream is cut (connection aborted) that long after it starts |
//! | `seed`          | integer                      | seed of the random choices (default: random)    |
//!
//! Example: `latency=50ms,error-rate=0.1,throttle-rate=0.05,cut-watch=10s`. The empty string
//! and `none` mean no faults (the proxy then only counts and logs). `error-rate` plus
//! `throttle-rate` must not exceed 1.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::cluster::{format_duration, parse_duration};

#[derive(Clone, Debug, Default, PartialEq)]
pub struct FaultSpec {
    pub latency: Duration,
    pub error_rate: f64,
    pub throttle_rate: f64,
    pub cut_watch: Option<Duration>,
    pub seed: Option<u64>,
}

/// What the proxy does with one request, decided from a uniform random draw in [0, 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Forward,
    AnswerError,
    AnswerThrottled,
}

impl FaultSpec {
    /// No faults: the proxy only counts and logs.
    pub fn none() -> Self {
        FaultSpec::default()
    }

    /// Whether this spec injects anything at all.
    pub fn is_none(&self) -> bool {
        self.latency.is_zero()
            && self.error_rate == 0.0
            && self.throttle_rate == 0.0
            && self.cut_watch.is_none()
    }

    pub fn decide(&self, draw: f64) -> Decision {
        if draw < self.error_rate {
            Decision::AnswerError
        } else if draw < self.error_rate + self.throttle_rate {
            Decision::AnswerThrottled
        } else {
            Decision::Forward
        }
    }
}

impl FromStr for FaultSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let mut spec = FaultSpec::default();
        let text = text.trim();
        if text.is_empty() || text == "none" {
            return Ok(spec);
        }
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("fault {part:?} is not key=value (e.g. latency=50ms)"))?;
            let value = value.trim();
            match key.trim() {
                "latency" => {
                    spec.latency = parse_duration(value).map_err(|e| format!("latency: {e}"))?
                }
                "error-rate" => spec.error_rate = parse_rate("error-rate", value)?,
                "throttle-rate" => spec.throttle_rate = parse_rate("throttle-rate", value)?,
                "cut-watch" => {
                    let every = parse_duration(value).map_err(|e| format!("cut-watch: {e}"))?;
                    if every.is_zero() {
                        return Err(
                            "cut-watch must be longer than 0 (omit it to never cut)".to_string()
                        );
                    }
                    spec.cut_watch = Some(every);
                }
                "seed" => {
                    spec.seed = Some(
                        value
                            .parse()
                            .map_err(|_| format!("seed {value:?} is not an integer"))?,
                    )
                }
                other => {
                    return Err(format!(
                        "unknown fault {other:?}; known: latency, error-rate, throttle-rate, cut-watch, seed"
                    ));
                }
            }
        }
        if spec.error_rate + spec.throttle_rate > 1.0 {
            return Err(format!(
                "error-rate {} plus throttle-rate {} exceeds 1",
                spec.error_rate, spec.throttle_rate
            ));
        }
        Ok(spec)
    }
}

fn parse_rate(key: &str, value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(rate) if (0.0..=1.0).contains(&rate) => Ok(rate),
        _ => Err(format!(
            "{key} {value:?} must be a fraction between 0 and 1 (e.g. 0.1)"
        )),
    }
}

impl fmt::Display for FaultSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if !self.latency.is_zero() {
            parts.push(format!("latency={}", format_duration(self.latency)));
        }
        if self.error_rate > 0.0 {
            parts.push(format!("error-rate={}", self.error_rate));
        }
        if self.throttle_rate > 0.0 {
            parts.push(format!("throttle-rate={}", self.throttle_rate));
        }
        if let Some(every) = self.cut_watch {
            parts.push(format!("cut-watch={}", format_duration(every)));
        }
        if let Some(seed) = self.seed {
            parts.push(format!("seed={seed}"));
        }
        if parts.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&parts.join(","))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example() {
        let spec: FaultSpec = "latency=50ms,error-rate=0.1,throttle-rate=0.05,cut-watch=10s"
            .parse()
            .unwrap();
        assert_eq!(spec.latency, Duration::from_millis(50));
        assert_eq!(spec.error_rate, 0.1);
        assert_eq!(spec.throttle_rate, 0.05);
        assert_eq!(spec.cut_watch, Some(Duration::from_secs(10)));
        assert_eq!(
            spec.to_string(),
            "latency=50ms,error-rate=0.1,throttle-rate=0.05,cut-watch=10s"
        );
        assert_eq!(spec.to_string().parse::<FaultSpec>().unwrap(), spec);
    }

    #[test]
    fn empty_and_none_mean_no_faults() {
        assert!("".parse::<FaultSpec>().unwrap().is_none());
        assert!("none".parse::<FaultSpec>().unwrap().is_none());
        assert_eq!(FaultSpec::none().to_string(), "none");
    }

    #[test]
    fn rejects_mistakes_with_a_reason() {
        assert!(
            "latency"
                .parse::<FaultSpec>()
                .unwrap_err()
                .contains("key=value")
        );
        assert!(
            "error-rate=2"
                .parse::<FaultSpec>()
                .unwrap_err()
                .contains("between 0 and 1")
        );
        assert!(
            "error-rate=0.7,throttle-rate=0.5"
                .parse::<FaultSpec>()
                .unwrap_err()
                .contains("exceeds 1")
        );
        assert!(
            "jitter=5ms"
                .parse::<FaultSpec>()
                .unwrap_err()
                .contains("unknown fault")
        );
        assert!(
            "cut-watch=0"
                .parse::<FaultSpec>()
                .unwrap_err()
                .contains("longer than 0")
        );
        assert!(
            "latency=5"
                .parse::<FaultSpec>()
                .unwrap_err()
                .contains("unit")
        );
    }

    #[test]
    fn decisions_split_the_unit_interval() {
        let spec: FaultSpec = "error-rate=0.1,throttle-rate=0.2".parse().unwrap();
        assert_eq!(spec.decide(0.05), Decision::AnswerError);
        assert_eq!(spec.decide(0.15), Decision::AnswerThrottled);
        assert_eq!(spec.decide(0.31), Decision::Forward);
        assert_eq!(FaultSpec::none().decide(0.0), Decision::Forward);
    }
}
