//! Splits an expression into tokens, following expr's lexical rules: `'` and `"` strings with
//! escapes, backtick raw strings, numbers with `_`, `0x`/`0o`/`0b` prefixes and exponents,
//! `//` and `/* */` comments, word operators (`and`, `in`, `matches`, ...) and `#` pointers.

use super::error::Fault;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Identifier,
    Number,
    String,
    Operator,
    Bracket,
    /// `#` or `#name` inside a predicate; the value is the name (empty for `#`).
    Pointer,
    Eof,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub kind: Kind,
    /// The token's text; for strings, the unescaped content.
    pub value: String,
    /// Byte offset of the token's first character.
    pub offset: usize,
}

impl Token {
    pub fn is(&self, kind: Kind, value: &str) -> bool {
        self.kind == kind && self.value == value
    }

    pub fn is_op(&self, value: &str) -> bool {
        self.is(Kind::Operator, value)
    }

    pub fn is_bracket(&self, value: &str) -> bool {
        self.is(Kind::Bracket, value)
    }

    /// How the token is shown in error messages.
    pub fn describe(&self) -> String {
        match self.kind {
            Kind::Eof => "end of expression".to_string(),
            Kind::String => format!("string {:?}", self.value),
            Kind::Pointer => format!("'#{}'", self.value),
            _ => format!("'{}'", self.value),
        }
    }
}

/// Words that are operators rather than names.
const WORD_OPERATORS: &[&str] = &[
    "and",
    "or",
    "not",
    "in",
    "matches",
    "contains",
    "startsWith",
    "endsWith",
];

pub(crate) fn is_name_start(c: char) -> bool {
    c == '_' || c == '$' || c.is_alphabetic()
}

pub(crate) fn is_name_char(c: char) -> bool {
    is_name_start(c) || c.is_numeric()
}

struct Lexer<'s> {
    src: &'s str,
    pos: usize,
    tokens: Vec<Token>,
}

/// Tokenizes `src`; the last token is always [`Kind::Eof`].
pub(crate) fn lex(src: &str) -> Result<Vec<Token>, Fault> {
    let mut lexer = Lexer {
        src,
        pos: 0,
        tokens: Vec::new(),
    };
    lexer.run()?;
    Ok(lexer.tokens)
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn peek_at(&self, n: usize) -> Option<char> {
        self.src[self.pos..].chars().nth(n)
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn push(&mut self, kind: Kind, value: impl Into<String>, offset: usize) {
        self.tokens.push(Token {
            kind,
            value: value.into(),
            offset,
        });
    }

    fn run(&mut self) -> Result<(), Fault> {
        while let Some(c) = self.peek() {
            let start = self.pos;
            match c {
                c if c.is_whitespace() => {
                    self.bump();
                }
                '\'' | '"' => {
                    let text = self.quoted(c)?;
                    self.push(Kind::String, text, start);
                }
                '`' => {
                    self.bump();
                    let Some(len) = self.src[self.pos..].find('`') else {
                        return Err(Fault::new(start, "literal not terminated"));
                    };
                    let text = self.src[self.pos..self.pos + len].replace("\r\n", "\n");
                    self.pos += len + 1;
                    self.push(Kind::String, text, start);
                }
                '0'..='9' => self.number()?,
                '.' if self.peek_at(1).is_some_and(|d| d.is_ascii_digit()) => self.number()?,
                '.' => {
                    self.bump();
                    let op = if self.eat('.') { ".." } else { "." };
                    self.push(Kind::Operator, op, start);
                }
                '?' => {
                    self.bump();
                    let op = if self.eat('.') {
                        "?."
                    } else if self.eat('?') {
                        "??"
                    } else {
                        "?"
                    };
                    self.push(Kind::Operator, op, start);
                }
                '/' => {
                    self.bump();
                    if self.eat('/') {
                        while let Some(c) = self.bump() {
                            if c == '\n' {
                                break;
                            }
                        }
                    } else if self.eat('*') {
                        match self.src[self.pos..].find("*/") {
                            Some(end) => self.pos += end + 2,
                            None => return Err(Fault::new(start, "unclosed comment")),
                        }
                    } else {
                        self.push(Kind::Operator, "/", start);
                    }
                }
                '#' => {
                    self.bump();
                    let name_start = self.pos;
                    while self.peek().is_some_and(is_name_char) {
                        self.bump();
                    }
                    let name = &self.src[name_start..self.pos];
                    self.push(Kind::Pointer, name, start);
                }
                '(' | ')' | '[' | ']' | '{' | '}' => {
                    self.bump();
                    self.push(Kind::Bracket, c.to_string(), start);
                }
                c if is_name_start(c) => {
                    while self.peek().is_some_and(is_name_char) {
                        self.bump();
                    }
                    let word = &self.src[start..self.pos];
                    let kind = if WORD_OPERATORS.contains(&word) {
                        Kind::Operator
                    } else {
                        Kind::Identifier
                    };
                    self.push(kind, word, start);
                }
                _ => {
                    let op = self.symbol().ok_or_else(|| {
                        Fault::new(start, format!("unrecognized character {c:?}"))
                    })?;
                    self.push(Kind::Operator, op, start);
                }
            }
        }
        let end = self.src.len();
        self.push(Kind::Eof, "", end);
        Ok(())
    }

    /// One- and two-character symbols.
    fn symbol(&mut self) -> Option<&'static str> {
        let c = self.bump()?;
        let op = match c {
            '|' => {
                if self.eat('|') {
                    "||"
                } else {
                    "|"
                }
            }
            '&' if self.eat('&') => "&&",
            '=' => {
                if self.eat('=') {
                    "=="
                } else {
                    "="
                }
            }
            '!' => {
                if self.eat('=') {
                    "!="
                } else {
                    "!"
                }
            }
            '<' => {
                if self.eat('=') {
                    "<="
                } else {
                    "<"
                }
            }
            '>' => {
                if self.eat('=') {
                    ">="
                } else {
                    ">"
                }
            }
            '*' => {
                if self.eat('*') {
                    "**"
                } else {
                    "*"
                }
            }
            ':' => ":",
            ',' => ",",
            ';' => ";",
            '+' => "+",
            '-' => "-",
            '%' => "%",
            '^' => "^",
            _ => return None,
        };
        Some(op)
    }

    fn number(&mut self) -> Result<(), Fault> {
        let start = self.pos;
        let mut digits: fn(char) -> bool = |c| c.is_ascii_digit() || c == '_';
        if self.eat('0') {
            if self.eat('x') || self.eat('X') {
                digits = |c| c.is_ascii_hexdigit() || c == '_';
            } else if self.eat('o') || self.eat('O') {
                digits = |c| matches!(c, '0'..='7' | '_');
            } else if self.eat('b') || self.eat('B') {
                digits = |c| matches!(c, '0' | '1' | '_');
            }
        }
        self.take_while(digits);
        // `1..3` is a range, not the float `1.` followed by `.3`.
        if self.peek() == Some('.') && self.peek_at(1) != Some('.') {
            self.bump();
            self.take_while(digits);
        }
        if matches!(self.peek(), Some('e' | 'E')) {
            self.bump();
            if matches!(self.peek(), Some('+' | '-')) {
                self.bump();
            }
            self.take_while(digits);
        }
        if self.peek().is_some_and(is_name_char) {
            self.bump();
            return Err(Fault::new(
                start,
                format!("bad number syntax: {:?}", &self.src[start..self.pos]),
            ));
        }
        let text = &self.src[start..self.pos];
        self.push(Kind::Number, text, start);
        Ok(())
    }

    fn take_while(&mut self, accept: fn(char) -> bool) {
        while self.peek().is_some_and(accept) {
            self.bump();
        }
    }

    /// A `'` or `"` string: finds the closing quote, then resolves the escapes.
    fn quoted(&mut self, quote: char) -> Result<String, Fault> {
        let start = self.pos;
        self.bump();
        let mut out = String::new();
        loop {
            let at = self.pos;
            match self.bump() {
                None => return Err(Fault::new(start, "literal not terminated")),
                Some(c) if c == quote => return Ok(out),
                Some('\\') => out.push(self.escape(at)?),
                Some('\r') => {
                    self.eat('\n');
                    out.push('\n');
                }
                Some(c) => out.push(c),
            }
        }
    }

    /// The character an escape sequence stands for; `at` is the offset of its backslash.
    fn escape(&mut self, at: usize) -> Result<char, Fault> {
        let bad = |what: &str| Fault::new(at, format!("invalid escape sequence in string: {what}"));
        let Some(c) = self.bump() else {
            return Err(bad("'\\' at the end"));
        };
        let simple = match c {
            'a' => Some('\u{7}'),
            'b' => Some('\u{8}'),
            'f' => Some('\u{c}'),
            'n' => Some('\n'),
            'r' => Some('\r'),
            't' => Some('\t'),
            'v' => Some('\u{b}'),
            '\\' | '\'' | '"' | '`' | '?' => Some(c),
            _ => None,
        };
        if let Some(simple) = simple {
            return Ok(simple);
        }
        let (width, radix) = match c {
            'x' | 'X' => (2, 16),
            'u' => (4, 16),
            'U' => (8, 16),
            '0'..='3' => (2, 8),
            _ => return Err(bad(&format!("'\\{c}'"))),
        };
        let mut code: u32 = if radix == 8 { c as u32 - '0' as u32 } else { 0 };
        for _ in 0..width {
            let digit = self
                .bump()
                .and_then(|d| d.to_digit(radix))
                .ok_or_else(|| bad(&format!("'\\{c}' needs {width} more digits")))?;
            code = code * radix + digit;
        }
        char::from_u32(code).ok_or_else(|| bad(&format!("U+{code:X} is not a character")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds_and_values(src: &str) -> Vec<(Kind, String)> {
        lex(src)
            .unwrap()
            .into_iter()
            .map(|t| (t.kind, t.value))
            .collect()
    }

    #[test]
    fn splits_a_typical_condition() {
        let tokens = kinds_and_values("len(result) > 0 && result[0] >= 0.95");
        let values: Vec<&str> = tokens.iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(
            values,
            [
                "len", "(", "result", ")", ">", "0", "&&", "result", "[", "0", "]", ">=", "0.95",
                ""
            ]
        );
        assert_eq!(tokens[12].0, Kind::Number);
        assert_eq!(tokens[13].0, Kind::Eof);
    }

    #[test]
    fn strings_resolve_escapes_in_both_quote_styles() {
        let tokens = lex(r#"'it\'s' "a\"b" "\n\t\\" "\x41\u00e9\101" `raw\n`"#).unwrap();
        let strings: Vec<&str> = tokens[..5].iter().map(|t| t.value.as_str()).collect();
        assert_eq!(strings, ["it's", "a\"b", "\n\t\\", "AéA", "raw\\n"]);
        assert!(tokens[..5].iter().all(|t| t.kind == Kind::String));
    }

    #[test]
    fn bad_strings_are_errors_with_positions() {
        assert_eq!(lex("x == 'abc").unwrap_err().offset, 5);
        assert_eq!(lex(r#""\q""#).unwrap_err().offset, 1);
        assert_eq!(lex(r#""\u12""#).unwrap_err().offset, 1);
        assert!(lex(r#""\uD800""#).is_err());
        assert!(lex("`open").is_err());
    }

    #[test]
    fn numbers_ranges_and_member_dots() {
        let tokens = kinds_and_values("1..3 1.5 .5 1e-3 0x1F 1_000 a.b");
        let values: Vec<&str> = tokens.iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(
            values,
            [
                "1", "..", "3", "1.5", ".5", "1e-3", "0x1F", "1_000", "a", ".", "b", ""
            ]
        );
        assert_eq!(lex("12abc").unwrap_err().offset, 0);
    }

    #[test]
    fn operators_words_comments_and_pointers() {
        let tokens = kinds_and_values("a?.b ?? c // comment\n /* x */ not in ** #index # ||");
        let expected = [
            (Kind::Identifier, "a"),
            (Kind::Operator, "?."),
            (Kind::Identifier, "b"),
            (Kind::Operator, "??"),
            (Kind::Identifier, "c"),
            (Kind::Operator, "not"),
            (Kind::Operator, "in"),
            (Kind::Operator, "**"),
            (Kind::Pointer, "index"),
            (Kind::Pointer, ""),
            (Kind::Operator, "||"),
            (Kind::Eof, ""),
        ];
        let got: Vec<(Kind, &str)> = tokens.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(got, expected);
        assert!(lex("a /* open").is_err());
        assert_eq!(lex("a & b").unwrap_err().offset, 2);
        assert_eq!(lex("a @ b").unwrap_err().offset, 2);
    }
}
