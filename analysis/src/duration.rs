//! Go's duration syntax (`time.ParseDuration`), which Argo Rollouts uses for a metric's
//! `interval` and `initialDelay`: `30s`, `5m`, `1h30m`, `1.5s`, `500ms`, `0`.

use std::fmt;
use std::time::Duration;

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason}")]
pub struct DurationError {
    pub input: String,
    pub reason: String,
}

/// Parses a Go duration. Negative durations (which Go accepts) are rejected: no analysis
/// setting means anything with them.
///
/// ```
/// use std::time::Duration;
/// use ramp_analysis::duration::parse_go_duration;
///
/// assert_eq!(parse_go_duration("1m30s"), Ok(Duration::from_secs(90)));
/// assert_eq!(parse_go_duration("1.5s"), Ok(Duration::from_millis(1500)));
/// assert!(parse_go_duration("5").is_err());
/// ```
pub fn parse_go_duration(input: &str) -> Result<Duration, DurationError> {
    let fail = |reason: &str| DurationError {
        input: input.to_string(),
        reason: reason.to_string(),
    };
    let mut rest = input;
    if let Some(stripped) = rest.strip_prefix('+') {
        rest = stripped;
    } else if let Some(stripped) = rest.strip_prefix('-') {
        if stripped == "0" {
            return Ok(Duration::ZERO);
        }
        return Err(fail("must not be negative"));
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(fail(
            "expected a number followed by a unit (ns, us, ms, s, m, h)",
        ));
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_part, after_int) = rest.split_at(int_len);
        let (frac_part, after_number) = match after_int.strip_prefix('.') {
            Some(after_dot) => {
                let frac_len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
                after_dot.split_at(frac_len)
            }
            None => ("", after_int),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(fail(
                "expected a number followed by a unit (ns, us, ms, s, m, h)",
            ));
        }
        let unit_len = after_number
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit() || *c == '.')
            .map_or(after_number.len(), |(i, _)| i);
        let (unit, after_unit) = after_number.split_at(unit_len);
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3_600 * 1_000_000_000,
            "" => return Err(fail("missing unit (ns, us, ms, s, m, h)")),
            _ => {
                return Err(fail(&format!(
                    "unknown unit {unit:?} (use ns, us, ms, s, m or h)"
                )));
            }
        };
        let whole: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| fail("number too large"))?
        };
        let mut nanos = whole
            .checked_mul(unit_nanos)
            .ok_or_else(|| fail("too large"))?;
        // Fractions scale the unit down digit by digit, like Go, truncating below 1ns.
        let mut scale = unit_nanos;
        for digit in frac_part.bytes().take(30) {
            scale /= 10;
            nanos += u128::from(digit - b'0') * scale;
        }
        total = total.checked_add(nanos).ok_or_else(|| fail("too large"))?;
        rest = after_unit;
    }
    // Go durations are int64 nanoseconds.
    if total > i64::MAX as u128 {
        return Err(fail("too large"));
    }
    let secs = (total / 1_000_000_000) as u64;
    let sub = (total % 1_000_000_000) as u32;
    Ok(Duration::new(secs, sub))
}

/// [`parse_go_duration`] as a `chrono::Duration`, for arithmetic on timestamps.
pub fn parse_duration(input: &str) -> Result<chrono::Duration, DurationError> {
    let duration = parse_go_duration(input)?;
    chrono::Duration::from_std(duration).map_err(|_| DurationError {
        input: input.to_string(),
        reason: "too large".to_string(),
    })
}

/// Renders a duration the way Go's `Duration.String()` does (`1m30s`, `500ms`, `0s`), for
/// messages.
pub struct GoDuration(pub Duration);

impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        let nanos = d.as_nanos();
        if nanos == 0 {
            return f.write_str("0s");
        }
        if nanos < 1_000 {
            return write!(f, "{nanos}ns");
        }
        if nanos < 1_000_000 {
            return write!(f, "{}µs", trim_fraction(nanos, 1_000));
        }
        if nanos < 1_000_000_000 {
            return write!(f, "{}ms", trim_fraction(nanos, 1_000_000));
        }
        let hours = d.as_secs() / 3600;
        let minutes = (d.as_secs() / 60) % 60;
        let seconds = nanos % 60_000_000_000;
        if hours > 0 {
            write!(f, "{hours}h")?;
        }
        if hours > 0 || minutes > 0 {
            write!(f, "{minutes}m")?;
        }
        write!(f, "{}s", trim_fraction(seconds, 1_000_000_000))
    }
}

fn trim_fraction(value: u128, unit: u128) -> String {
    let whole = value / unit;
    let frac = value % unit;
    if frac == 0 {
        return whole.to_string();
    }
    let width = unit.ilog10() as usize;
    let digits = format!("{frac:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        for (input, want) in [
            ("0", Duration::ZERO),
            ("-0", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("30s", Duration::from_secs(30)),
            ("+5m", Duration::from_secs(300)),
            ("1h30m", Duration::from_secs(5400)),
            ("1.5s", Duration::from_millis(1500)),
            (".5s", Duration::from_millis(500)),
            ("5.s", Duration::from_secs(5)),
            ("500ms", Duration::from_millis(500)),
            ("10us", Duration::from_micros(10)),
            ("10µs", Duration::from_micros(10)),
            ("7ns", Duration::from_nanos(7)),
            ("1h1m1s1ms", Duration::from_millis(3_661_001)),
            ("2562047h", Duration::from_secs(2_562_047 * 3600)),
        ] {
            assert_eq!(parse_go_duration(input), Ok(want), "{input}");
        }
    }

    #[test]
    fn rejects_what_go_rejects_and_negatives() {
        for (input, reason) in [
            ("", "expected a number"),
            ("5", "missing unit"),
            ("s", "expected a number"),
            ("1d", "unknown unit \"d\""),
            ("1.5", "missing unit"),
            ("-5s", "must not be negative"),
            ("1h 30m", "unknown unit \"h \""),
            ("3000000h", "too large"),
            (".s", "expected a number"),
        ] {
            let err = parse_go_duration(input).expect_err(input);
            assert!(err.reason.contains(reason), "{input}: {}", err.reason);
            assert!(err.to_string().contains(&format!("{input:?}")));
        }
    }

    #[test]
    fn chrono_durations() {
        assert_eq!(parse_duration("1m30s").map(|d| d.num_seconds()), Ok(90));
        assert!(parse_duration("1x").is_err());
    }

    #[test]
    fn renders_like_go() {
        for (d, want) in [
            (Duration::ZERO, "0s"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_secs(3600), "1h0m0s"),
            (Duration::from_millis(1500), "1.5s"),
            (Duration::from_millis(250), "250ms"),
            (Duration::from_secs(10), "10s"),
        ] {
            assert_eq!(GoDuration(d).to_string(), want);
        }
    }
}
