//! Kubernetes resource quantities (`500m`, `1Gi`, `2.5`, `1e3`), parsed as the API server
//! parses them, so that a bad `resources.requests.memory` is caught before it is applied.

/// A parsed quantity as a floating-point value (precise enough to compare requests with
/// limits, which is all validation needs).
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
pub struct Quantity(pub f64);

/// Parses a quantity string; `None` when it is not a quantity.
pub fn parse_quantity(text: &str) -> Option<Quantity> {
    let (sign, rest) = match text.as_bytes().first()? {
        b'+' => (1.0, &text[1..]),
        b'-' => (-1.0, &text[1..]),
        _ => (1.0, text),
    };
    let number_end = rest
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(number_end);
    let valid_number = match number.split_once('.') {
        Some((whole, fraction)) => {
            let has_digits = !whole.is_empty() || !fraction.is_empty();
            has_digits && !fraction.contains('.')
        }
        None => !number.is_empty(),
    };
    if !valid_number {
        return None;
    }
    let value: f64 = number.parse().ok()?;
    let multiplier = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exponent => {
            let digits = exponent.strip_prefix(['e', 'E'])?;
            let digits_only = digits.strip_prefix(['+', '-']).unwrap_or(digits);
            if digits_only.is_empty() || !digits_only.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            10f64.powi(digits.parse::<i32>().ok()?)
        }
    };
    Some(Quantity(sign * value * multiplier))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_kubernetes_accepts() {
        for (text, value) in [
            ("1", 1.0),
            ("500m", 0.5),
            ("1Gi", 1073741824.0),
            ("128Mi", 134217728.0),
            ("1.5", 1.5),
            (".5", 0.5),
            ("1e3", 1000.0),
            ("1E-3", 0.001),
            ("+2k", 2000.0),
            ("-1", -1.0),
            ("5.", 5.0),
        ] {
            assert_eq!(parse_quantity(text), Some(Quantity(value)), "{text}");
        }
    }

    #[test]
    fn rejects_what_kubernetes_rejects() {
        for text in [
            "", "invalid", "1Gb", "Mi", "1.2.3", "1 Gi", ".", "1e", "1e1.5", "--1", "1mi",
        ] {
            assert_eq!(parse_quantity(text), None, "{text:?}");
        }
    }
}
