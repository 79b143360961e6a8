//! The lexer: source text to tokens.
//!
//! The lexer stops at the first error: a script is short, and one precise message with a
//! suggestion helps an author more than a cascade. Keywords (`and`, `or`, `not`, `in`,
//! `true`, `false`, `null`) are case-insensitive like everything else in the language except
//! string contents.

use crate::diagnostic::{Code, Diagnostic};
use crate::span::Span;

/// What a token is.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    /// A bare name: an attribute, or a function when followed by `(`.
    Ident,
    /// A name in backticks; the content is in the token.
    QuotedIdent(String),
    Str(String),
    /// An integer literal without its sign; the parser applies `-` and checks the range.
    Int(u64),
    Dec(f64),
    True,
    False,
    Null,
    And,
    Or,
    Not,
    In,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Minus,
    Eof,
}

impl Tok {
    /// Describes the token for "expected …, found …" messages.
    pub(crate) fn describe(&self) -> &'static str {
        match self {
            Tok::Ident => "a name",
            Tok::QuotedIdent(_) => "a quoted name",
            Tok::Str(_) => "a string",
            Tok::Int(_) => "an integer",
            Tok::Dec(_) => "a decimal",
            Tok::True | Tok::False => "a boolean",
            Tok::Null => "`null`",
            Tok::And => "`and`",
            Tok::Or => "`or`",
            Tok::Not => "`not`",
            Tok::In => "`in`",
            Tok::LParen => "`(`",
            Tok::RParen => "`)`",
            Tok::LBracket => "`[`",
            Tok::RBracket => "`]`",
            Tok::Comma => "`,`",
            Tok::Eq => "`==`",
            Tok::Ne => "`!=`",
            Tok::Lt => "`<`",
            Tok::Le => "`<=`",
            Tok::Gt => "`>`",
            Tok::Ge => "`>=`",
            Tok::Minus => "`-`",
            Tok::Eof => "the end of the script",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub(crate) tok: Tok,
    pub(crate) span: Span,
}

/// Splits `source` into tokens, ending with [`Tok::Eof`].
pub(crate) fn lex(source: &str) -> Result<Vec<Token>, Diagnostic> {
    let mut lexer = Lexer {
        src: source,
        pos: 0,
        tokens: Vec::new(),
    };
    lexer.run()?;
    Ok(lexer.tokens)
}

struct Lexer<'s> {
    src: &'s str,
    pos: usize,
    tokens: Vec<Token>,
}

impl<'s> Lexer<'s> {
    fn peek(&self) -> Option<char> {
        self.src.get(self.pos..).and_then(|s| s.chars().next())
    }

    fn peek2(&self) -> Option<char> {
        let mut chars = self.src.get(self.pos..)?.chars();
        chars.next();
        chars.next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn push(&mut self, tok: Tok, start: usize) {
        self.tokens.push(Token {
            tok,
            span: Span::new(start, self.pos),
        });
    }

    fn run(&mut self) -> Result<(), Diagnostic> {
        while let Some(c) = self.peek() {
            let start = self.pos;
            if c.is_whitespace() {
                self.bump();
                continue;
            }
            if c.is_alphabetic() || c == '_' {
                self.ident(start);
                continue;
            }
            if c.is_ascii_digit() {
                self.number(start)?;
                continue;
            }
            self.bump();
            let two = |lexer: &mut Self, next: char| {
                if lexer.peek() == Some(next) {
                    lexer.bump();
                    true
                } else {
                    false
                }
            };
            let tok = match c {
                '"' => Tok::Str(self.string(start)?),
                '`' => Tok::QuotedIdent(self.quoted_name(start)?),
                '(' => Tok::LParen,
                ')' => Tok::RParen,
                '[' => Tok::LBracket,
                ']' => Tok::RBracket,
                ',' => Tok::Comma,
                '-' => Tok::Minus,
                '=' if two(self, '=') => Tok::Eq,
                '!' if two(self, '=') => Tok::Ne,
                '!' => Tok::Not,
                '<' if two(self, '=') => Tok::Le,
                '<' if two(self, '>') => {
                    return Err(self
                        .unexpected(start, "`<>` is not an operator")
                        .with_suggestion("use `!=` for \"not equal\""));
                }
                '<' => Tok::Lt,
                '>' if two(self, '=') => Tok::Ge,
                '>' => Tok::Gt,
                '&' if two(self, '&') => Tok::And,
                '|' if two(self, '|') => Tok::Or,
                '=' => {
                    return Err(self
                        .unexpected(start, "`=` is not an operator")
                        .with_suggestion("use `==` to compare"));
                }
                '&' => {
                    return Err(self
                        .unexpected(start, "`&` is not an operator")
                        .with_suggestion("use `&&` or `and`"));
                }
                '|' => {
                    return Err(self
                        .unexpected(start, "`|` is not an operator")
                        .with_suggestion("use `||` or `or`"));
                }
                '\'' => {
                    return Err(self
                        .unexpected(start, "unexpected character `'`")
                        .with_suggestion("strings are written in double quotes: \"text\""));
                }
                '+' | '*' | '/' | '%' => {
                    return Err(self
                        .unexpected(
                            start,
                            format!("`{c}` is not an operator: there is no arithmetic"),
                        )
                        .with_suggestion("use Concat(a, b) to join strings"));
                }
                c => {
                    return Err(self.unexpected(start, format!("unexpected character {c:?}")));
                }
            };
            self.push(tok, start);
        }
        let end = self.src.len();
        self.tokens.push(Token {
            tok: Tok::Eof,
            span: Span::new(end, end),
        });
        Ok(())
    }

    fn unexpected(&self, start: usize, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(
            Code::UnexpectedCharacter,
            Span::new(start, self.pos),
            message,
        )
    }

    fn ident(&mut self, start: usize) {
        while let Some(c) = self.peek() {
            if c.is_alphanumeric() || c == '_' || c == '.' {
                self.bump();
            } else {
                break;
            }
        }
        let text = self.src.get(start..self.pos).unwrap_or("");
        let keyword = |k: &str| text.eq_ignore_ascii_case(k);
        let tok = if keyword("true") {
            Tok::True
        } else if keyword("false") {
            Tok::False
        } else if keyword("null") {
            Tok::Null
        } else if keyword("and") {
            Tok::And
        } else if keyword("or") {
            Tok::Or
        } else if keyword("not") {
            Tok::Not
        } else if keyword("in") {
            Tok::In
        } else {
            Tok::Ident
        };
        self.push(tok, start);
    }

    fn number(&mut self, start: usize) -> Result<(), Diagnostic> {
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.bump();
        }
        let mut decimal = false;
        if self.peek() == Some('.') {
            if !self.peek2().is_some_and(|c| c.is_ascii_digit()) {
                self.bump();
                return Err(Diagnostic::new(
                    Code::InvalidNumber,
                    Span::new(start, self.pos),
                    "a decimal point must be followed by digits",
                )
                .with_suggestion("write `1.0` rather than `1.`"));
            }
            decimal = true;
            self.bump();
            while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                self.bump();
            }
        }
        // `12abc` is almost certainly a typo, not `12` followed by the attribute `abc`.
        if self.peek().is_some_and(|c| c.is_alphanumeric() || c == '_') {
            while self
                .peek()
                .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.')
            {
                self.bump();
            }
            return Err(Diagnostic::new(
                Code::InvalidNumber,
                Span::new(start, self.pos),
                "malformed number",
            )
            .with_suggestion(
                "names cannot start with a digit; quote the attribute name in backticks",
            ));
        }
        let span = Span::new(start, self.pos);
        let text = self.src.get(start..self.pos).unwrap_or("");
        let tok = if decimal {
            match text.parse::<f64>() {
                Ok(d) if d.is_finite() => Tok::Dec(d),
                _ => {
                    return Err(Diagnostic::new(
                        Code::InvalidNumber,
                        span,
                        "decimal out of range",
                    ));
                }
            }
        } else {
            match text.parse::<u64>() {
                Ok(i) => Tok::Int(i),
                Err(_) => {
                    return Err(Diagnostic::new(
                        Code::InvalidNumber,
                        span,
                        format!(
                            "integer out of range: integers are 64-bit, from {} to {}",
                            i64::MIN,
                            i64::MAX
                        ),
                    ));
                }
            }
        };
        self.push(tok, start);
        Ok(())
    }

    /// Reads a string literal after its opening quote.
    fn string(&mut self, start: usize) -> Result<String, Diagnostic> {
        let mut out = String::new();
        loop {
            let Some(c) = self.bump() else {
                return Err(Diagnostic::new(
                    Code::UnterminatedString,
                    Span::new(start, self.pos),
                    "unterminated string",
                )
                .with_suggestion("add the closing `\"`"));
            };
            match c {
                '"' => return Ok(out),
                '\\' => {
                    let escape_start = self.pos - 1;
                    let escaped = match self.bump() {
                        Some('"') => '"',
                        Some('\\') => '\\',
                        Some('n') => '\n',
                        Some('r') => '\r',
                        Some('t') => '\t',
                        Some('u') => self.unicode_escape(escape_start)?,
                        other => {
                            let span = Span::new(escape_start, self.pos);
                            let what = match other {
                                Some(c) => format!("unknown escape sequence `\\{c}`"),
                                None => "unterminated escape sequence".to_owned(),
                            };
                            return Err(Diagnostic::new(Code::InvalidEscape, span, what)
                                .with_suggestion(
                                    "valid escapes are \\\" \\\\ \\n \\r \\t and \\u{XXXX}",
                                ));
                        }
                    };
                    out.push(escaped);
                }
                c => out.push(c),
            }
        }
    }

    /// Reads `{XXXX}` after `\u`.
    fn unicode_escape(&mut self, escape_start: usize) -> Result<char, Diagnostic> {
        let bad = |lexer: &Self| {
            Diagnostic::new(
                Code::InvalidEscape,
                Span::new(escape_start, lexer.pos),
                "malformed unicode escape",
            )
            .with_suggestion("write a code point as \\u{1F600}: 1 to 6 hex digits in braces")
        };
        if self.bump() != Some('{') {
            return Err(bad(self));
        }
        let mut code: u32 = 0;
        let mut digits = 0;
        loop {
            match self.bump() {
                Some('}') if digits > 0 => break,
                Some(c) if digits < 6 => match c.to_digit(16) {
                    Some(d) => {
                        code = code * 16 + d;
                        digits += 1;
                    }
                    None => return Err(bad(self)),
                },
                _ => return Err(bad(self)),
            }
        }
        char::from_u32(code).ok_or_else(|| {
            Diagnostic::new(
                Code::InvalidEscape,
                Span::new(escape_start, self.pos),
                format!("\\u{{{code:X}}} is not a Unicode scalar value"),
            )
        })
    }

    /// Reads a backtick-quoted attribute name after its opening backtick.
    fn quoted_name(&mut self, start: usize) -> Result<String, Diagnostic> {
        let content_start = self.pos;
        loop {
            match self.bump() {
                Some('`') => {
                    let end = self.pos - 1;
                    return Ok(self.src.get(content_start..end).unwrap_or("").to_owned());
                }
                Some(_) => {}
                None => {
                    return Err(Diagnostic::new(
                        Code::UnterminatedString,
                        Span::new(start, self.pos),
                        "unterminated quoted attribute name",
                    )
                    .with_suggestion("add the closing backtick"));
                }
            }
        }
    }
}
