//! Ages and remaining times as kubectl prints them: `45s`, `5m30s`, `3h`, `2d4h`, `3y`.
//! Precise while the number is small, coarser as it grows, never more than two units.

use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// The age of something created at `created`, seen at `now`; `-` when unknown.
pub fn age(created: Option<Timestamp>, now: Timestamp) -> String {
    match created {
        Some(created) => human_duration(now.duration_since(created)),
        None => "-".to_string(),
    }
}

/// A duration in kubectl's short human form. Slightly negative durations (clock skew between
/// the client and the API server) read as `0s`; larger negative ones as `<invalid>`.
pub fn human_duration(duration: SignedDuration) -> String {
    let seconds = duration.as_secs();
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    if seconds < 0 {
        return "0s".to_string();
    }
    if seconds < 2 * 60 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        return with_remainder(minutes, "m", seconds % 60, "s");
    }
    if minutes < 3 * 60 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        return with_remainder(hours, "h", minutes % 60, "m");
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = hours / 24;
    if hours < 8 * 24 {
        return with_remainder(days, "d", hours % 24, "h");
    }
    if days < 2 * 365 {
        return format!("{days}d");
    }
    let years = days / 365;
    if days < 8 * 365 {
        return with_remainder(years, "y", days % 365, "d");
    }
    format!("{years}y")
}

fn with_remainder(major: i64, major_unit: &str, minor: i64, minor_unit: &str) -> String {
    if minor == 0 {
        format!("{major}{major_unit}")
    } else {
        format!("{major}{major_unit}{minor}{minor_unit}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(seconds: i64) -> String {
        human_duration(SignedDuration::from_secs(seconds))
    }

    #[test]
    fn breakpoints_follow_kubectl() {
        assert_eq!(h(-5), "<invalid>");
        assert_eq!(h(-1), "0s");
        assert_eq!(h(0), "0s");
        assert_eq!(h(119), "119s");
        assert_eq!(h(120), "2m");
        assert_eq!(h(150), "2m30s");
        assert_eq!(h(599), "9m59s");
        assert_eq!(h(600), "10m");
        assert_eq!(h(3 * 3600 - 1), "179m");
        assert_eq!(h(3 * 3600), "3h");
        assert_eq!(h(3 * 3600 + 15 * 60), "3h15m");
        assert_eq!(h(8 * 3600), "8h");
        assert_eq!(h(47 * 3600), "47h");
        assert_eq!(h(48 * 3600), "2d");
        assert_eq!(h(50 * 3600), "2d2h");
        assert_eq!(h(8 * 86400), "8d");
        assert_eq!(h(729 * 86400), "729d");
        assert_eq!(h(730 * 86400), "2y");
        assert_eq!(h(731 * 86400), "2y1d");
        assert_eq!(h(9 * 365 * 86400), "9y");
    }

    #[test]
    fn unknown_creation_is_a_dash() {
        let now = Timestamp::from_second(1_000).unwrap();
        assert_eq!(age(None, now), "-");
        assert_eq!(age(Some(Timestamp::from_second(990).unwrap()), now), "10s");
    }
}
