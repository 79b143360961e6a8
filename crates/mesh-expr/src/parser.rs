//! The parser: tokens to a syntax tree, by recursive descent.
//!
//! Grammar, from the loosest binding to the tightest (docs/transform-script.md has the same
//! table for authors):
//!
//! ```text
//! script   = or EOF
//! or       = and { ("||" | "or") and }
//! and      = not { ("&&" | "and") not }
//! not      = ("!" | "not") not | compare
//! compare  = primary [ ("==" | "!=" | "<" | "<=" | ">" | ">=" | "in") primary ]
//! primary  = literal | "-" number | list | call | attribute | "(" or ")"
//! list     = "[" [ or { "," or } [","] ] "]"
//! call     = NAME "(" [ or { "," or } [","] ] ")"
//! ```
//!
//! `not` binds looser than comparison, as in SQL, so `not department == "IT"` negates the
//! comparison. Comparisons do not chain. Every step into `not`, `(`, `[` or a call counts
//! towards [`MAX_DEPTH`], which bounds the recursion of this parser and of every later pass.

use mesh_model::{AttributeName, Value};

use crate::ast::{CmpOp, Expr, ExprKind};
use crate::diagnostic::{Code, Diagnostic};
use crate::lexer::{Tok, Token, lex};
use crate::limits::{MAX_DEPTH, MAX_LIST_LEN, MAX_SOURCE_LEN};
use crate::span::Span;

/// Parses a whole script.
pub(crate) fn parse(source: &str) -> Result<Expr, Diagnostic> {
    if source.len() > MAX_SOURCE_LEN {
        let mut start = MAX_SOURCE_LEN;
        while !source.is_char_boundary(start) {
            start -= 1;
        }
        return Err(Diagnostic::new(
            Code::SourceTooLong,
            Span::new(start, source.len()),
            format!(
                "the script is {} bytes long; the maximum is {MAX_SOURCE_LEN}",
                source.len()
            ),
        ));
    }
    let tokens = lex(source)?;
    let mut parser = Parser {
        source,
        tokens,
        pos: 0,
        depth: 0,
    };
    if parser.peek().tok == Tok::Eof {
        return Err(Diagnostic::new(
            Code::EmptySource,
            Span::new(0, source.len()),
            "the script is empty",
        )
        .with_suggestion("write an expression, such as ToLower(mail)"));
    }
    let expr = parser.or()?;
    let next = parser.peek();
    if next.tok != Tok::Eof {
        let diagnostic = Diagnostic::new(
            Code::UnexpectedToken,
            next.span,
            format!(
                "expected an operator or the end of the script, found {}",
                next.tok.describe()
            ),
        );
        return Err(match next.tok {
            Tok::RParen | Tok::RBracket => {
                diagnostic.with_suggestion("remove the unmatched closing bracket")
            }
            Tok::Comma => diagnostic.with_suggestion(
                "a script is one expression; use Concat(a, b) to join several values",
            ),
            _ => diagnostic,
        });
    }
    Ok(expr)
}

struct Parser<'s> {
    source: &'s str,
    tokens: Vec<Token>,
    pos: usize,
    depth: usize,
}

const EOF: Token = Token {
    tok: Tok::Eof,
    span: Span::new(0, 0),
};

impl Parser<'_> {
    fn peek(&self) -> &Token {
        // The lexer always ends with Eof, so falling off the end cannot happen; the fallback
        // keeps this total without a panic path.
        self.tokens
            .get(self.pos)
            .or(self.tokens.last())
            .unwrap_or(&EOF)
    }

    fn next(&mut self) -> Token {
        let token = self.peek().clone();
        if self.pos < self.tokens.len() {
            self.pos += 1;
        }
        token
    }

    fn enter(&mut self, span: Span) -> Result<(), Diagnostic> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Diagnostic::new(
                Code::TooDeep,
                span,
                format!("the script nests deeper than {MAX_DEPTH} levels"),
            )
            .with_suggestion("split the logic over several rules or simplify it"));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    fn or(&mut self) -> Result<Expr, Diagnostic> {
        let first = self.and()?;
        if self.peek().tok != Tok::Or {
            return Ok(first);
        }
        let mut operands = vec![first];
        while self.peek().tok == Tok::Or {
            self.next();
            operands.push(self.and()?);
        }
        Ok(n_ary(operands, ExprKind::Or))
    }

    fn and(&mut self) -> Result<Expr, Diagnostic> {
        let first = self.not()?;
        if self.peek().tok != Tok::And {
            return Ok(first);
        }
        let mut operands = vec![first];
        while self.peek().tok == Tok::And {
            self.next();
            operands.push(self.not()?);
        }
        Ok(n_ary(operands, ExprKind::And))
    }

    fn not(&mut self) -> Result<Expr, Diagnostic> {
        if self.peek().tok != Tok::Not {
            return self.compare();
        }
        let op = self.next();
        self.enter(op.span)?;
        let operand = self.not()?;
        self.leave();
        Ok(Expr {
            span: op.span.to(operand.span),
            kind: ExprKind::Not(Box::new(operand)),
        })
    }

    fn compare(&mut self) -> Result<Expr, Diagnostic> {
        let lhs = self.primary()?;
        let Some(op) = comparison(&self.peek().tok) else {
            return Ok(lhs);
        };
        let op_span = self.next().span;
        let rhs = self.primary()?;
        if let Some(_next) = comparison(&self.peek().tok) {
            return Err(Diagnostic::new(
                Code::ChainedComparison,
                self.peek().span,
                "comparisons cannot be chained",
            )
            .with_suggestion("combine two comparisons with `and`: `a < b and b < c`"));
        }
        let span = lhs.span.to(rhs.span);
        let (lhs, rhs) = (Box::new(lhs), Box::new(rhs));
        let kind = match op {
            Comparison::In => ExprKind::In { op_span, lhs, rhs },
            Comparison::Cmp(op) => ExprKind::Compare {
                op,
                op_span,
                lhs,
                rhs,
            },
        };
        Ok(Expr { kind, span })
    }

    fn primary(&mut self) -> Result<Expr, Diagnostic> {
        let token = self.next();
        let span = token.span;
        let literal = |value: Value| {
            Ok(Expr {
                kind: ExprKind::Literal(value),
                span,
            })
        };
        match token.tok {
            Tok::Null => literal(Value::Null),
            Tok::True => literal(Value::Bool(true)),
            Tok::False => literal(Value::Bool(false)),
            Tok::Str(s) => literal(Value::from(s)),
            Tok::Dec(d) => literal(Value::Decimal(d)),
            Tok::Int(i) => match i64::try_from(i) {
                Ok(i) => literal(Value::Integer(i)),
                Err(_) => Err(integer_range(span)),
            },
            Tok::Minus => self.negative(span),
            Tok::LParen => {
                self.enter(span)?;
                let inner = self.or()?;
                let close = self.expect_close(Tok::RParen, span, "`)`")?;
                self.leave();
                Ok(Expr {
                    kind: inner.kind,
                    span: span.to(close),
                })
            }
            Tok::LBracket => {
                self.enter(span)?;
                let (items, close) = self.sequence(Tok::RBracket, span, "`]`")?;
                self.leave();
                Ok(Expr {
                    kind: ExprKind::List(items),
                    span: span.to(close),
                })
            }
            Tok::QuotedIdent(name) => Ok(Expr {
                kind: ExprKind::Attribute(attribute_name(&name, span)?),
                span,
            }),
            Tok::Ident => {
                let name = self.source.get(span.range()).unwrap_or("").to_owned();
                if self.peek().tok != Tok::LParen {
                    return Ok(Expr {
                        kind: ExprKind::Attribute(attribute_name(&name, span)?),
                        span,
                    });
                }
                let open = self.next().span;
                self.enter(open)?;
                let (args, close) = self.sequence(Tok::RParen, open, "`)`")?;
                self.leave();
                Ok(Expr {
                    kind: ExprKind::Call {
                        name,
                        name_span: span,
                        args,
                    },
                    span: span.to(close),
                })
            }
            Tok::Not => Err(Diagnostic::new(
                Code::UnexpectedToken,
                span,
                "`not` cannot appear inside a comparison",
            )
            .with_suggestion("put the negation in parentheses: `a == (not b)`")),
            Tok::Eof => Err(Diagnostic::new(
                Code::UnexpectedEnd,
                span,
                "the script ends where an expression was expected",
            )),
            other => Err(Diagnostic::new(
                Code::UnexpectedToken,
                span,
                format!("expected an expression, found {}", other.describe()),
            )),
        }
    }

    fn negative(&mut self, minus: Span) -> Result<Expr, Diagnostic> {
        let token = self.next();
        let span = minus.to(token.span);
        let kind = match token.tok {
            Tok::Int(i) => {
                let value = 0i64
                    .checked_sub_unsigned(i)
                    .ok_or_else(|| integer_range(span))?;
                ExprKind::Literal(Value::Integer(value))
            }
            Tok::Dec(d) => ExprKind::Literal(Value::Decimal(-d)),
            Tok::Eof => {
                return Err(Diagnostic::new(
                    Code::UnexpectedEnd,
                    token.span,
                    "the script ends after `-`",
                ));
            }
            _ => {
                return Err(Diagnostic::new(
                    Code::UnexpectedToken,
                    minus,
                    "`-` can only stand before a number: there is no arithmetic",
                ));
            }
        };
        Ok(Expr { kind, span })
    }

    /// Parses `item, item, ... close` after an opening bracket; a trailing comma is allowed.
    fn sequence(
        &mut self,
        close: Tok,
        open: Span,
        close_text: &str,
    ) -> Result<(Vec<Expr>, Span), Diagnostic> {
        let mut items = Vec::new();
        loop {
            if self.peek().tok == close {
                return Ok((items, self.next().span));
            }
            if items.len() >= MAX_LIST_LEN {
                return Err(Diagnostic::new(
                    Code::ListTooLong,
                    open.to(self.peek().span),
                    format!("more than {MAX_LIST_LEN} elements"),
                ));
            }
            items.push(self.or()?);
            let next = self.peek();
            if next.tok == Tok::Comma {
                self.next();
                continue;
            }
            if next.tok == close {
                continue;
            }
            return Err(self.unclosed(open, close_text, true));
        }
    }

    fn expect_close(
        &mut self,
        close: Tok,
        open: Span,
        close_text: &str,
    ) -> Result<Span, Diagnostic> {
        if self.peek().tok == close {
            return Ok(self.next().span);
        }
        Err(self.unclosed(open, close_text, false))
    }

    fn unclosed(&self, open: Span, close_text: &str, comma_allowed: bool) -> Diagnostic {
        let next = self.peek();
        let expected = if comma_allowed {
            format!("`,` or {close_text}")
        } else {
            close_text.to_owned()
        };
        if next.tok == Tok::Eof {
            return Diagnostic::new(
                Code::UnexpectedEnd,
                open,
                format!("this bracket is never closed: expected {expected}"),
            )
            .with_suggestion(format!("add {close_text} at the end"));
        }
        let diagnostic = Diagnostic::new(
            Code::UnexpectedToken,
            next.span,
            format!("expected {expected}, found {}", next.tok.describe()),
        );
        if comma_allowed && starts_expression(&next.tok) {
            diagnostic.with_suggestion("add a `,` between the arguments")
        } else {
            diagnostic
        }
    }
}

enum Comparison {
    Cmp(CmpOp),
    In,
}

fn comparison(tok: &Tok) -> Option<Comparison> {
    Some(match tok {
        Tok::Eq => Comparison::Cmp(CmpOp::Eq),
        Tok::Ne => Comparison::Cmp(CmpOp::Ne),
        Tok::Lt => Comparison::Cmp(CmpOp::Lt),
        Tok::Le => Comparison::Cmp(CmpOp::Le),
        Tok::Gt => Comparison::Cmp(CmpOp::Gt),
        Tok::Ge => Comparison::Cmp(CmpOp::Ge),
        Tok::In => Comparison::In,
        _ => return None,
    })
}

fn starts_expression(tok: &Tok) -> bool {
    matches!(
        tok,
        Tok::Ident
            | Tok::QuotedIdent(_)
            | Tok::Str(_)
            | Tok::Int(_)
            | Tok::Dec(_)
            | Tok::True
            | Tok::False
            | Tok::Null
            | Tok::LParen
            | Tok::LBracket
            | Tok::Minus
    )
}

fn n_ary(operands: Vec<Expr>, make: fn(Vec<Expr>) -> ExprKind) -> Expr {
    let span = match (operands.first(), operands.last()) {
        (Some(first), Some(last)) => first.span.to(last.span),
        _ => Span::default(),
    };
    Expr {
        kind: make(operands),
        span,
    }
}

fn integer_range(span: Span) -> Diagnostic {
    Diagnostic::new(
        Code::InvalidNumber,
        span,
        format!(
            "integer out of range: integers are 64-bit, from {} to {}",
            i64::MIN,
            i64::MAX
        ),
    )
}

fn attribute_name(name: &str, span: Span) -> Result<AttributeName, Diagnostic> {
    AttributeName::parse(name).map_err(|err| {
        Diagnostic::new(
            Code::InvalidAttributeName,
            span,
            format!("invalid attribute name: {err}"),
        )
    })
}
