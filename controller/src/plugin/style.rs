//! Symbols and colours. Every status maps to a [`Tone`]; a [`Style`] turns a tone into ANSI
//! colour or into nothing (`--no-color`, `NO_COLOR`, output that is not a terminal). Layout is
//! always computed on the plain text, so colour never shifts a column.

/// How a status feels, which decides its symbol's colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tone {
    /// Healthy, Running, Successful.
    Ok,
    /// Progressing, Pending, Running analysis.
    Progressing,
    /// Paused.
    Paused,
    /// Degraded, Failed, CrashLoopBackOff.
    Bad,
    /// Error, InvalidSpec, Inconclusive.
    Warning,
    /// Scaled down, finished and out of the way.
    Neutral,
    /// Unknown.
    Unknown,
    /// Stable and active ReplicaSets.
    Stable,
    /// Canary and preview ReplicaSets.
    Canary,
}

/// Symbols in front of statuses.
pub mod symbol {
    pub const OK: &str = "✔";
    pub const PROGRESSING: &str = "◌";
    pub const PAUSED: &str = "॥";
    pub const BAD: &str = "✖";
    pub const WARNING: &str = "⚠";
    pub const NEUTRAL: &str = "•";
    pub const UNKNOWN: &str = "?";
    pub const WAITING: &str = "◷";
}

/// Symbols in front of object names in the tree.
pub mod kind_symbol {
    pub const ROLLOUT: &str = "⟳";
    pub const REVISION: &str = "#";
    pub const REPLICA_SET: &str = "⧉";
    pub const POD: &str = "□";
    pub const ANALYSIS_RUN: &str = "α";
    pub const JOB: &str = "⊞";
}

impl Tone {
    /// The symbol shown for a status of this tone.
    pub fn symbol(self) -> &'static str {
        match self {
            Tone::Ok | Tone::Stable => symbol::OK,
            Tone::Progressing | Tone::Canary => symbol::PROGRESSING,
            Tone::Paused => symbol::PAUSED,
            Tone::Bad => symbol::BAD,
            Tone::Warning => symbol::WARNING,
            Tone::Neutral => symbol::NEUTRAL,
            Tone::Unknown => symbol::UNKNOWN,
        }
    }

    fn ansi(self) -> &'static str {
        match self {
            Tone::Ok | Tone::Stable => "\x1b[32m",
            Tone::Progressing => "\x1b[33m",
            Tone::Paused => "\x1b[36m",
            Tone::Bad => "\x1b[31m",
            Tone::Warning => "\x1b[35m",
            Tone::Neutral | Tone::Unknown => "\x1b[90m",
            Tone::Canary => "\x1b[93m",
        }
    }
}

/// Whether to colour the output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Style {
    pub color: bool,
}

impl Style {
    pub const PLAIN: Style = Style { color: false };
    pub const COLOR: Style = Style { color: true };

    /// `text` in the tone's colour, or as is.
    pub fn paint(self, tone: Tone, text: &str) -> String {
        if self.color && !text.is_empty() {
            format!("{}{text}\x1b[0m", tone.ansi())
        } else {
            text.to_string()
        }
    }
}

/// The number of terminal columns `text` takes (every character counts one; the symbols used
/// here are all narrow).
pub fn width(text: &str) -> usize {
    text.chars().count()
}

/// `text` followed by spaces up to `columns`.
pub fn pad(text: &str, columns: usize) -> String {
    let mut padded = text.to_string();
    padded.extend(std::iter::repeat_n(
        ' ',
        columns.saturating_sub(width(text)),
    ));
    padded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_style_adds_nothing() {
        assert_eq!(Style::PLAIN.paint(Tone::Bad, "x"), "x");
        assert_eq!(Style::COLOR.paint(Tone::Bad, "x"), "\x1b[31mx\x1b[0m");
        assert_eq!(Style::COLOR.paint(Tone::Bad, ""), "");
    }

    #[test]
    fn padding_counts_characters_not_bytes() {
        assert_eq!(pad("॥ Paused", 10), "॥ Paused  ");
        assert_eq!(width("✔ ok"), 4);
    }
}
