//! Errors of the condition language: what went wrong and where in the expression.

use std::fmt;

/// A mistake found while parsing or evaluating a condition, with its position.
///
/// Renders as `unexpected token ')' at column 13 in "result[0] < )"`; the column counts
/// characters from 1, [`offset`](Self::offset) is the byte offset from 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError {
    message: String,
    offset: usize,
    column: usize,
    source: String,
}

impl ExprError {
    pub(crate) fn new(source: &str, fault: Fault) -> Self {
        let mut offset = fault.offset.min(source.len());
        while !source.is_char_boundary(offset) {
            offset -= 1;
        }
        let column = source[..offset].chars().count() + 1;
        ExprError {
            message: fault.message,
            offset,
            column,
            source: source.to_string(),
        }
    }

    /// What went wrong, without the position.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Byte offset of the mistake in the expression (0-based).
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Column of the mistake in the expression, in characters (1-based).
    pub fn column(&self) -> usize {
        self.column
    }

    /// The expression the mistake is in.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The expression as shown in messages: whole when short, otherwise a window around the
    /// mistake.
    fn excerpt(&self) -> String {
        const WINDOW: usize = 40;
        let chars: Vec<char> = self.source.chars().collect();
        if chars.len() <= 2 * WINDOW {
            return format!("{:?}", self.source);
        }
        let at = self.column - 1;
        let start = at.saturating_sub(WINDOW);
        let end = (at + WINDOW).min(chars.len());
        let middle: String = chars[start..end].iter().collect();
        let mut text = format!("{middle:?}");
        if start > 0 {
            text.insert(0, '…');
        }
        if end < chars.len() {
            text.push('…');
        }
        text
    }
}

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at column {} in {}",
            self.message,
            self.column,
            self.excerpt()
        )
    }
}

impl std::error::Error for ExprError {}

/// An error before it is bound to the expression's text.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Fault {
    pub offset: usize,
    pub message: String,
}

impl Fault {
    pub fn new(offset: usize, message: impl Into<String>) -> Self {
        Fault {
            offset,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_column_and_source() {
        let err = ExprError::new("result[0] < )", Fault::new(12, "unexpected token ')'"));
        assert_eq!(err.column(), 13);
        assert_eq!(err.offset(), 12);
        assert_eq!(
            err.to_string(),
            r#"unexpected token ')' at column 13 in "result[0] < )""#
        );
    }

    #[test]
    fn columns_count_characters_and_offsets_are_clamped() {
        let err = ExprError::new("'é' == x", Fault::new(7, "unknown name x"));
        assert_eq!(err.column(), 7);
        let err = ExprError::new("é", Fault::new(1, "inside a character"));
        assert_eq!((err.offset(), err.column()), (0, 1));
        let err = ExprError::new("ab", Fault::new(99, "past the end"));
        assert_eq!((err.offset(), err.column()), (2, 3));
    }

    #[test]
    fn long_sources_are_shown_around_the_mistake() {
        let source = format!("{} + )", "a + ".repeat(50));
        let err = ExprError::new(
            &source,
            Fault::new(source.len() - 1, "unexpected token ')'"),
        );
        let shown = err.to_string();
        assert!(shown.contains("…\""), "{shown}");
        assert!(shown.ends_with("+ )\""), "{shown}");
        assert!(shown.len() < 140, "{shown}");
    }
}
