//! Reading the int-or-string and duration fields of the API the way Argo Rollouts reads them.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{CanaryStrategy, RolloutPause};

/// An int-or-string field that is either a count or a percentage (`maxSurge: 25%`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntOrPercent {
    Count(i32),
    Percent(i32),
}

impl IntOrPercent {
    /// Reads `5`, `"5"` or `"25%"`; anything else is an error message.
    pub fn parse(value: &IntOrString) -> Result<IntOrPercent, String> {
        match value {
            IntOrString::Int(n) => Ok(IntOrPercent::Count(*n)),
            IntOrString::String(s) => {
                if let Some(number) = s.strip_suffix('%') {
                    number
                        .parse::<i32>()
                        .map(IntOrPercent::Percent)
                        .map_err(|_| format!("{s:?} is not a percentage like \"25%\""))
                } else {
                    s.parse::<i32>()
                        .map(IntOrPercent::Count)
                        .map_err(|_| format!("{s:?} is neither a number nor a percentage"))
                }
            }
        }
    }

    /// The absolute value against `total`, rounding a percentage up or down.
    pub fn scaled(self, total: i32, round_up: bool) -> i32 {
        match self {
            IntOrPercent::Count(n) => n,
            IntOrPercent::Percent(p) => {
                let exact = i64::from(total) * i64::from(p);
                let value = if round_up {
                    (exact + 99).div_euclid(100)
                } else {
                    exact.div_euclid(100)
                };
                i32::try_from(value).unwrap_or(i32::MAX)
            }
        }
    }
}

impl CanaryStrategy {
    /// `maxSurge`, defaulted to 25%.
    pub fn max_surge(&self) -> Result<IntOrPercent, String> {
        match &self.max_surge {
            Some(value) => IntOrPercent::parse(value),
            None => Ok(IntOrPercent::Percent(25)),
        }
    }

    /// `maxUnavailable`, defaulted to 25%.
    pub fn max_unavailable(&self) -> Result<IntOrPercent, String> {
        match &self.max_unavailable {
            Some(value) => IntOrPercent::parse(value),
            None => Ok(IntOrPercent::Percent(25)),
        }
    }

    /// The weight that means all traffic (`trafficRouting.maxTrafficWeight`, default 100).
    pub fn max_traffic_weight(&self) -> i32 {
        self.traffic_routing
            .as_ref()
            .and_then(|t| t.max_traffic_weight)
            .unwrap_or(100)
    }
}

impl RolloutPause {
    /// The pause length in seconds: `None` for an indefinite pause, an error message for a
    /// value that is neither seconds nor a Go duration. Like Argo, `"30"` means 30 seconds.
    pub fn duration_seconds(&self) -> Option<Result<i64, String>> {
        let duration = self.duration.as_ref()?;
        Some(match duration {
            IntOrString::Int(seconds) => Ok(i64::from(*seconds)),
            IntOrString::String(text) => match text.parse::<i64>() {
                Ok(seconds) => Ok(seconds),
                Err(_) => ramp_analysis::duration::parse_duration(text)
                    .map(|d| d.num_seconds())
                    .map_err(|e| e.to_string()),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_or_percent() {
        let parse = |v: IntOrString| IntOrPercent::parse(&v);
        assert_eq!(parse(IntOrString::Int(2)), Ok(IntOrPercent::Count(2)));
        assert_eq!(
            parse(IntOrString::String("25%".into())),
            Ok(IntOrPercent::Percent(25))
        );
        assert_eq!(
            parse(IntOrString::String("3".into())),
            Ok(IntOrPercent::Count(3))
        );
        assert!(parse(IntOrString::String("x%".into())).is_err());
        assert_eq!(IntOrPercent::Percent(25).scaled(10, true), 3);
        assert_eq!(IntOrPercent::Percent(25).scaled(10, false), 2);
    }

    #[test]
    fn pause_durations() {
        let pause = |d: Option<IntOrString>| RolloutPause { duration: d }.duration_seconds();
        assert_eq!(pause(None), None);
        assert_eq!(pause(Some(IntOrString::Int(10))), Some(Ok(10)));
        assert_eq!(pause(Some(IntOrString::String("30".into()))), Some(Ok(30)));
        assert_eq!(pause(Some(IntOrString::String("1m".into()))), Some(Ok(60)));
        assert!(matches!(
            pause(Some(IntOrString::String("1 minute".into()))),
            Some(Err(_))
        ));
    }
}
