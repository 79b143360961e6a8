//! RFC 7644 §3.4.2.2 filters and §3.5.2 PATCH paths: lexer, recursive-descent parser,
//! resolution against a resource type's schema, and evaluation over stored resources.
//!
//! ```text
//! FILTER    = attrExp / logExp / valuePath / *1"not" "(" FILTER ")"
//! valuePath = attrPath "[" valFilter "]"
//! attrExp   = (attrPath SP "pr") / (attrPath SP compareOp SP compValue)
//! attrPath  = [URI ":"] ATTRNAME *1subAttr
//! PATH      = attrPath / valuePath [subAttr]
//! ```
//!
//! Precedence: grouping, then attribute operators, then `not` over `and` over `or`. Keywords
//! and attribute names are case-insensitive; string comparisons follow the attribute's
//! `caseExact`. Nesting (parentheses, `not`, value paths) is capped at [`MAX_DEPTH`] and the
//! text at [`MAX_FILTER_LEN`], so no input can exhaust the stack. Every failure is an
//! `invalidFilter` (or, for PATCH paths, `invalidPath`) [`ScimError`].

use std::cmp::Ordering;

use chrono::{DateTime, FixedOffset};
use serde_json::{Map, Value as Json};

use super::error::{ScimError, ScimType};
use super::schema::{AttrDef, AttrType, ResourceType};

/// Deepest nesting of parentheses, `not` and value paths accepted.
pub const MAX_DEPTH: usize = 32;
/// Longest filter accepted, in bytes.
pub const MAX_FILTER_LEN: usize = 8192;

/// An attribute path as written: `[urn:...:]attr[.sub]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrPath {
    /// The schema URN prefix, if any.
    pub uri: Option<String>,
    /// The attribute name.
    pub attr: String,
    /// The sub-attribute name, if any.
    pub sub: Option<String>,
}

fn valid_name(s: &str) -> bool {
    if s == "$ref" {
        return true;
    }
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl AttrPath {
    /// Parses `[URI ":"] ATTRNAME *1subAttr`.
    pub fn parse(s: &str) -> Option<Self> {
        let (uri, rest) = if s.len() > 4 && s.get(..4)?.eq_ignore_ascii_case("urn:") {
            let idx = s.rfind(':')?;
            (Some(s.get(..idx)?.to_owned()), s.get(idx + 1..)?)
        } else {
            (None, s)
        };
        let mut parts = rest.split('.');
        let attr = parts.next()?;
        let sub = parts.next();
        if parts.next().is_some() || !valid_name(attr) || !sub.is_none_or(valid_name) {
            return None;
        }
        Some(Self {
            uri,
            attr: attr.to_owned(),
            sub: sub.map(str::to_owned),
        })
    }
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    /// equal
    Eq,
    /// not equal
    Ne,
    /// contains
    Co,
    /// starts with
    Sw,
    /// ends with
    Ew,
    /// greater than
    Gt,
    /// greater than or equal
    Ge,
    /// less than
    Lt,
    /// less than or equal
    Le,
}

impl CompareOp {
    fn parse(word: &str) -> Option<Self> {
        Some(match word.to_ascii_lowercase().as_str() {
            "eq" => Self::Eq,
            "ne" => Self::Ne,
            "co" => Self::Co,
            "sw" => Self::Sw,
            "ew" => Self::Ew,
            "gt" => Self::Gt,
            "ge" => Self::Ge,
            "lt" => Self::Lt,
            "le" => Self::Le,
            _ => return None,
        })
    }
}

/// A literal in a filter.
#[derive(Debug, Clone, PartialEq)]
pub enum CompValue {
    /// null
    Null,
    /// true / false
    Bool(bool),
    /// a JSON number
    Number(f64),
    /// a JSON string
    String(String),
}

/// A parsed, not yet resolved, filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// Both hold.
    And(Box<Filter>, Box<Filter>),
    /// Either holds.
    Or(Box<Filter>, Box<Filter>),
    /// The inner filter does not hold.
    Not(Box<Filter>),
    /// `attr op value`.
    Compare(AttrPath, CompareOp, CompValue),
    /// `attr pr`.
    Present(AttrPath),
    /// `attr[filter]`: some value of a multi-valued attribute satisfies the inner filter,
    /// whose paths name sub-attributes.
    ValuePath(AttrPath, Box<Filter>),
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    LParen,
    RParen,
    LBracket,
    RBracket,
    Str(String),
    Word(String),
}

fn lex(input: &str) -> Result<Vec<Token>, String> {
    let bytes = input.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'(' => {
                tokens.push(Token::LParen);
                i += 1;
            }
            b')' => {
                tokens.push(Token::RParen);
                i += 1;
            }
            b'[' => {
                tokens.push(Token::LBracket);
                i += 1;
            }
            b']' => {
                tokens.push(Token::RBracket);
                i += 1;
            }
            b'"' => {
                let start = i;
                i += 1;
                loop {
                    match bytes.get(i) {
                        None => return Err(format!("unterminated string at {start}")),
                        Some(b'\\') => i += 2,
                        Some(b'"') => break,
                        Some(_) => i += 1,
                    }
                }
                let literal = input
                    .get(start..=i)
                    .ok_or_else(|| format!("unterminated string at {start}"))?;
                let s: String = serde_json::from_str(literal)
                    .map_err(|e| format!("invalid string literal at {start}: {e}"))?;
                tokens.push(Token::Str(s));
                i += 1;
            }
            _ if b.is_ascii_alphanumeric()
                || matches!(b, b'_' | b'-' | b':' | b'.' | b'$' | b'+') =>
            {
                let start = i;
                while bytes.get(i).is_some_and(|b| {
                    b.is_ascii_alphanumeric()
                        || matches!(b, b'_' | b'-' | b':' | b'.' | b'$' | b'+')
                }) {
                    i += 1;
                }
                tokens.push(Token::Word(
                    input.get(start..i).unwrap_or_default().to_owned(),
                ));
            }
            _ => {
                let c = input.get(i..).and_then(|s| s.chars().next()).unwrap_or('?');
                return Err(format!("unexpected character {c:?} at {i}"));
            }
        }
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn peek_keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(w)) if w.eq_ignore_ascii_case(kw))
    }

    fn expect(&mut self, token: Token, what: &str) -> Result<(), String> {
        match self.next() {
            Some(t) if t == token => Ok(()),
            Some(t) => Err(format!("expected {what}, found {}", describe(&t))),
            None => Err(format!("expected {what}, found the end of the filter")),
        }
    }

    fn or(&mut self, depth: usize, in_value_path: bool) -> Result<Filter, String> {
        let mut left = self.and(depth, in_value_path)?;
        while self.peek_keyword("or") {
            self.pos += 1;
            let right = self.and(depth, in_value_path)?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self, depth: usize, in_value_path: bool) -> Result<Filter, String> {
        let mut left = self.unary(depth, in_value_path)?;
        while self.peek_keyword("and") {
            self.pos += 1;
            let right = self.unary(depth, in_value_path)?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self, depth: usize, in_value_path: bool) -> Result<Filter, String> {
        if depth >= MAX_DEPTH {
            return Err(format!("filter nests deeper than {MAX_DEPTH} levels"));
        }
        if self.peek_keyword("not") && matches!(self.tokens.get(self.pos + 1), Some(Token::LParen))
        {
            self.pos += 2;
            let inner = self.or(depth + 1, in_value_path)?;
            self.expect(Token::RParen, "')'")?;
            return Ok(Filter::Not(Box::new(inner)));
        }
        match self.next() {
            Some(Token::LParen) => {
                let inner = self.or(depth + 1, in_value_path)?;
                self.expect(Token::RParen, "')'")?;
                Ok(inner)
            }
            Some(Token::Word(word)) => {
                let path = AttrPath::parse(&word)
                    .ok_or_else(|| format!("{word:?} is not an attribute path"))?;
                if matches!(self.peek(), Some(Token::LBracket)) {
                    if in_value_path {
                        return Err("a value path cannot contain another value path".into());
                    }
                    if path.sub.is_some() {
                        return Err(format!("value path {word:?} must name an attribute"));
                    }
                    self.pos += 1;
                    let inner = self.or(depth + 1, true)?;
                    self.expect(Token::RBracket, "']'")?;
                    return Ok(Filter::ValuePath(path, Box::new(inner)));
                }
                let op = match self.next() {
                    Some(Token::Word(op)) => op,
                    Some(t) => {
                        return Err(format!(
                            "expected an operator after {word:?}, found {}",
                            describe(&t)
                        ));
                    }
                    None => return Err(format!("expected an operator after {word:?}")),
                };
                if op.eq_ignore_ascii_case("pr") {
                    return Ok(Filter::Present(path));
                }
                let op = CompareOp::parse(&op)
                    .ok_or_else(|| format!("{op:?} is not a comparison operator"))?;
                let value = match self.next() {
                    Some(Token::Str(s)) => CompValue::String(s),
                    Some(Token::Word(w)) => literal(&w)?,
                    Some(t) => return Err(format!("expected a value, found {}", describe(&t))),
                    None => return Err("expected a value, found the end of the filter".into()),
                };
                Ok(Filter::Compare(path, op, value))
            }
            Some(t) => Err(format!(
                "expected an attribute or '(', found {}",
                describe(&t)
            )),
            None => Err("unexpected end of the filter".into()),
        }
    }
}

fn literal(word: &str) -> Result<CompValue, String> {
    match word {
        "true" => Ok(CompValue::Bool(true)),
        "false" => Ok(CompValue::Bool(false)),
        "null" => Ok(CompValue::Null),
        _ => {
            // compValue numbers are JSON numbers (RFC 7159), not any float Rust accepts.
            match serde_json::from_str::<serde_json::Number>(word) {
                Ok(n) => n
                    .as_f64()
                    .map(CompValue::Number)
                    .ok_or_else(|| format!("{word:?} is out of range")),
                Err(_) => Err(format!(
                    "{word:?} is not a value: use a quoted string, a number, true, false or null"
                )),
            }
        }
    }
}

fn describe(t: &Token) -> String {
    match t {
        Token::LParen => "'('".into(),
        Token::RParen => "')'".into(),
        Token::LBracket => "'['".into(),
        Token::RBracket => "']'".into(),
        Token::Str(s) => format!("string {s:?}"),
        Token::Word(w) => format!("{w:?}"),
    }
}

fn parse_tokens(tokens: Vec<Token>, in_value_path: bool) -> Result<Filter, String> {
    let mut parser = Parser { tokens, pos: 0 };
    let filter = parser.or(0, in_value_path)?;
    if let Some(t) = parser.peek() {
        return Err(format!("unexpected {} after the filter", describe(t)));
    }
    Ok(filter)
}

/// Parses a filter (syntax only); resolve it with [`resolve`].
pub fn parse(input: &str) -> Result<Filter, ScimError> {
    if input.len() > MAX_FILTER_LEN {
        return Err(ScimError::filter(format!(
            "the filter is {} bytes long; the maximum is {MAX_FILTER_LEN}",
            input.len()
        )));
    }
    if input.trim().is_empty() {
        return Err(ScimError::filter("the filter is empty"));
    }
    lex(input)
        .and_then(|tokens| parse_tokens(tokens, false))
        .map_err(ScimError::filter)
}

/// Where an attribute lives in a stored resource.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// The extension URN holding the attribute, or `None` for core and common attributes.
    pub ext: Option<&'static str>,
    /// The attribute.
    pub attr: &'static AttrDef,
    /// The sub-attribute, if the path named one.
    pub sub: Option<&'static AttrDef>,
}

impl Target {
    /// The definition whose type and case rules apply to the values compared: the
    /// sub-attribute, or `value` of a complex attribute named alone.
    pub fn leaf(&self) -> &'static AttrDef {
        match self.sub {
            Some(sub) => sub,
            None if self.attr.ty == AttrType::Complex => {
                self.attr.sub_attr("value").unwrap_or(self.attr)
            }
            None => self.attr,
        }
    }

    /// Its path, for messages: `emails.value`.
    pub fn display(&self) -> String {
        let mut s = String::new();
        if let Some(ext) = self.ext {
            s.push_str(ext);
            s.push(':');
        }
        s.push_str(self.attr.name);
        if let Some(sub) = self.sub {
            s.push('.');
            s.push_str(sub.name);
        }
        s
    }
}

/// Resolves a written path against `rt` (or, inside a value path, against the sub-attributes
/// of `parent`).
pub fn resolve_path(
    rt: &ResourceType,
    parent: Option<&'static AttrDef>,
    path: &AttrPath,
) -> Result<Target, String> {
    let (ext, attr) = if let Some(parent) = parent {
        if path.uri.is_some() || path.sub.is_some() {
            return Err(format!(
                "inside {}[...] name sub-attributes of {} only",
                parent.name, parent.name
            ));
        }
        let attr = parent
            .sub_attr(&path.attr)
            .ok_or_else(|| format!("{} has no sub-attribute {:?}", parent.name, path.attr))?;
        return Ok(Target {
            ext: None,
            attr,
            sub: None,
        });
    } else {
        match &path.uri {
            Some(uri) if uri.eq_ignore_ascii_case(rt.schema.id) => (None, rt.core_attr(&path.attr)),
            Some(uri) => match rt.extension(uri) {
                Some(ext) => (
                    Some(ext.id),
                    ext.attributes
                        .iter()
                        .find(|a| a.name.eq_ignore_ascii_case(&path.attr)),
                ),
                None => return Err(format!("{uri:?} is not a schema of {}", rt.name)),
            },
            None => (None, rt.core_attr(&path.attr)),
        }
    };
    let attr = attr.ok_or_else(|| format!("{} has no attribute {:?}", rt.name, path.attr))?;
    let sub = match &path.sub {
        None => None,
        Some(sub) => Some(
            attr.sub_attr(sub)
                .ok_or_else(|| format!("{} has no sub-attribute {sub:?}", attr.name))?,
        ),
    };
    Ok(Target { ext, attr, sub })
}

/// A filter resolved against a schema and type-checked: ready to evaluate.
#[derive(Debug, Clone)]
pub enum Expr {
    /// Both.
    And(Box<Expr>, Box<Expr>),
    /// Either.
    Or(Box<Expr>, Box<Expr>),
    /// Negation.
    Not(Box<Expr>),
    /// A comparison.
    Compare(Target, CompareOp, Literal),
    /// Presence.
    Present(Target),
    /// Some value of a multi-valued complex attribute satisfies the inner expression.
    ValuePath(Target, Box<Expr>),
}

/// A literal converted to the compared attribute's type.
#[derive(Debug, Clone)]
pub enum Literal {
    /// null: `eq null` is "unassigned".
    Null,
    /// A boolean.
    Bool(bool),
    /// A number.
    Number(f64),
    /// A string (folded to lowercase when the attribute is not caseExact).
    String(String),
    /// A timestamp.
    Time(DateTime<FixedOffset>),
}

/// Resolves and type-checks a parsed filter against `rt`.
pub fn resolve(rt: &ResourceType, filter: &Filter) -> Result<Expr, ScimError> {
    resolve_in(rt, None, filter).map_err(ScimError::filter)
}

/// Resolves a filter inside a value path of `parent`, for PATCH paths.
pub fn resolve_value_filter(
    rt: &ResourceType,
    parent: &'static AttrDef,
    filter: &Filter,
) -> Result<Expr, String> {
    resolve_in(rt, Some(parent), filter)
}

fn resolve_in(
    rt: &ResourceType,
    parent: Option<&'static AttrDef>,
    filter: &Filter,
) -> Result<Expr, String> {
    Ok(match filter {
        Filter::And(a, b) => Expr::And(
            Box::new(resolve_in(rt, parent, a)?),
            Box::new(resolve_in(rt, parent, b)?),
        ),
        Filter::Or(a, b) => Expr::Or(
            Box::new(resolve_in(rt, parent, a)?),
            Box::new(resolve_in(rt, parent, b)?),
        ),
        Filter::Not(a) => Expr::Not(Box::new(resolve_in(rt, parent, a)?)),
        Filter::Present(path) => Expr::Present(resolve_path(rt, parent, path)?),
        Filter::ValuePath(path, inner) => {
            let target = resolve_path(rt, parent, path)?;
            if target.attr.ty != AttrType::Complex {
                return Err(format!(
                    "{} is not a complex attribute; a value filter needs one",
                    target.display()
                ));
            }
            Expr::ValuePath(target, Box::new(resolve_in(rt, Some(target.attr), inner)?))
        }
        Filter::Compare(path, op, value) => {
            let target = resolve_path(rt, parent, path)?;
            let leaf = target.leaf();
            let literal = check_compare(&target, leaf, *op, value)?;
            Expr::Compare(target, *op, literal)
        }
    })
}

fn check_compare(
    target: &Target,
    leaf: &AttrDef,
    op: CompareOp,
    value: &CompValue,
) -> Result<Literal, String> {
    use CompareOp::*;
    let name = target.display();
    if leaf.ty == AttrType::Complex {
        return Err(format!(
            "{name} is complex: compare one of its sub-attributes"
        ));
    }
    if leaf.returned == super::schema::Returned::Never {
        return Err(format!("{name} cannot be filtered on"));
    }
    if matches!(op, Gt | Ge | Lt | Le) && matches!(leaf.ty, AttrType::Boolean | AttrType::Binary) {
        return Err(format!("{name} is {:?}: it has no order", leaf.ty));
    }
    if matches!(op, Co | Sw | Ew)
        && !matches!(
            leaf.ty,
            AttrType::String | AttrType::Reference | AttrType::Binary
        )
    {
        return Err(format!(
            "co, sw and ew apply to strings; {name} is {:?}",
            leaf.ty
        ));
    }
    match value {
        CompValue::Null => {
            if matches!(op, Eq | Ne) {
                Ok(Literal::Null)
            } else {
                Err(format!("null can only be compared with eq or ne ({name})"))
            }
        }
        CompValue::Bool(b) => match leaf.ty {
            AttrType::Boolean => Ok(Literal::Bool(*b)),
            _ => Err(format!("{name} is not a boolean")),
        },
        CompValue::Number(n) => match leaf.ty {
            AttrType::Integer | AttrType::Decimal => Ok(Literal::Number(*n)),
            _ => Err(format!("{name} is not a number")),
        },
        CompValue::String(s) => match leaf.ty {
            AttrType::DateTime if matches!(op, Co | Sw | Ew) => Ok(Literal::String(s.clone())),
            AttrType::DateTime => DateTime::parse_from_rfc3339(s)
                .map(Literal::Time)
                .map_err(|_| format!("{s:?} is not an RFC 3339 dateTime ({name})")),
            AttrType::String | AttrType::Reference | AttrType::Binary => {
                Ok(Literal::String(if leaf.case_exact {
                    s.clone()
                } else {
                    s.to_lowercase()
                }))
            }
            AttrType::Boolean => Err(format!("{name} is a boolean: compare with true or false")),
            _ => Err(format!("{name} is a number: compare with a number")),
        },
    }
}

/// The values a target holds in `obj`, flattened over multi-valued attributes.
pub fn values<'a>(obj: &'a Map<String, Json>, target: &Target) -> Vec<&'a Json> {
    let container = match target.ext {
        Some(ext) => match obj.get(ext) {
            Some(Json::Object(o)) => o,
            _ => return Vec::new(),
        },
        None => obj,
    };
    let Some(value) = container.get(target.attr.name) else {
        return Vec::new();
    };
    let sub = match target.sub {
        Some(sub) => Some(sub.name),
        None if target.attr.ty == AttrType::Complex => {
            target.attr.sub_attr("value").map(|s| s.name)
        }
        None => None,
    };
    let items: Vec<&Json> = match value {
        Json::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    match sub {
        None => items,
        Some(sub) => items
            .into_iter()
            .filter_map(|item| item.as_object().and_then(|o| o.get(sub)))
            .collect(),
    }
}

fn present(v: &Json) -> bool {
    match v {
        Json::Null => false,
        Json::String(s) => !s.is_empty(),
        Json::Array(a) => a.iter().any(present),
        Json::Object(o) => o.values().any(present),
        _ => true,
    }
}

fn compare_one(leaf: &AttrDef, op: CompareOp, literal: &Literal, value: &Json) -> bool {
    use CompareOp::*;
    let ordering = |o: Option<Ordering>| match (op, o) {
        (Eq, Some(o)) => o == Ordering::Equal,
        (Ne, Some(o)) => o != Ordering::Equal,
        (Gt, Some(o)) => o == Ordering::Greater,
        (Ge, Some(o)) => o != Ordering::Less,
        (Lt, Some(o)) => o == Ordering::Less,
        (Le, Some(o)) => o != Ordering::Greater,
        _ => false,
    };
    match literal {
        Literal::Null => false,
        Literal::Bool(b) => ordering(value.as_bool().map(|v| v.cmp(b))),
        Literal::Number(n) => ordering(value.as_f64().and_then(|v| v.partial_cmp(n))),
        Literal::Time(t) => ordering(
            value
                .as_str()
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                .map(|v| v.cmp(t)),
        ),
        Literal::String(s) => {
            let Some(v) = value.as_str() else {
                return false;
            };
            let folded;
            let v = if leaf.case_exact || leaf.ty == AttrType::DateTime {
                v
            } else {
                folded = v.to_lowercase();
                folded.as_str()
            };
            match op {
                Co => v.contains(s.as_str()),
                Sw => v.starts_with(s.as_str()),
                Ew => v.ends_with(s.as_str()),
                _ => ordering(Some(v.cmp(s.as_str()))),
            }
        }
    }
}

/// Evaluates `expr` on a resource (or, inside a value path, on one value of a complex
/// attribute).
pub fn matches(expr: &Expr, obj: &Map<String, Json>) -> bool {
    match expr {
        Expr::And(a, b) => matches(a, obj) && matches(b, obj),
        Expr::Or(a, b) => matches(a, obj) || matches(b, obj),
        Expr::Not(a) => !matches(a, obj),
        Expr::Present(target) => values(obj, target).into_iter().any(present),
        Expr::ValuePath(target, inner) => {
            let container = match target.ext {
                Some(ext) => obj.get(ext).and_then(Json::as_object),
                None => Some(obj),
            };
            match container.and_then(|c| c.get(target.attr.name)) {
                Some(Json::Array(items)) => items
                    .iter()
                    .filter_map(Json::as_object)
                    .any(|item| matches(inner, item)),
                Some(Json::Object(item)) => matches(inner, item),
                _ => false,
            }
        }
        Expr::Compare(target, op, literal) => {
            let vals = values(obj, target);
            match (op, literal) {
                (CompareOp::Eq, Literal::Null) => !vals.into_iter().any(present),
                (CompareOp::Ne, Literal::Null) => vals.into_iter().any(present),
                // "ne" holds when no value equals: the negation of "eq", so that an absent
                // attribute is "not equal" to anything.
                (CompareOp::Ne, _) => !vals
                    .into_iter()
                    .any(|v| compare_one(target.leaf(), CompareOp::Eq, literal, v)),
                _ => vals
                    .into_iter()
                    .any(|v| compare_one(target.leaf(), *op, literal, v)),
            }
        }
    }
}

/// If the filter pins the unique attribute, `externalId` or `id` with `eq` (alone or in a
/// conjunction), returns which and the value, so the store can use an index before the
/// filter is evaluated on the candidates.
pub fn index_hint(expr: &Expr) -> Option<(&'static str, String)> {
    match expr {
        Expr::Compare(target, CompareOp::Eq, Literal::String(s))
            if target.ext.is_none() && target.sub.is_none() =>
        {
            let name = target.attr.name;
            (target.attr.unique || name == "externalId").then(|| (name, s.clone()))
        }
        Expr::And(a, b) => index_hint(a).or_else(|| index_hint(b)),
        _ => None,
    }
}

/// A parsed PATCH path: `attrPath`, or `attrPath[valFilter][.subAttr]`, or a whole
/// extension schema URN.
#[derive(Debug, Clone)]
pub struct PatchPath {
    /// The extension named by its URN alone, if that is the whole path.
    pub whole_extension: Option<&'static str>,
    /// The attribute (and sub-attribute) targeted.
    pub target: Option<Target>,
    /// The value filter, if any.
    pub filter: Option<Expr>,
}

/// Parses and resolves a PATCH `path` against `rt`. Errors are `invalidPath`.
pub fn parse_patch_path(rt: &ResourceType, input: &str) -> Result<PatchPath, ScimError> {
    let err = |m: String| ScimError::bad_request(ScimType::InvalidPath, m);
    let input = input.trim();
    if input.is_empty() || input.len() > MAX_FILTER_LEN {
        return Err(err(format!("{input:?} is not a valid path")));
    }
    if let Some(ext) = rt.extension(input) {
        return Ok(PatchPath {
            whole_extension: Some(ext.id),
            target: None,
            filter: None,
        });
    }
    let Some(open) = input.find('[') else {
        let path =
            AttrPath::parse(input).ok_or_else(|| err(format!("{input:?} is not a valid path")))?;
        let target = resolve_path(rt, None, &path).map_err(err)?;
        return Ok(PatchPath {
            whole_extension: None,
            target: Some(target),
            filter: None,
        });
    };
    let close = input
        .rfind(']')
        .filter(|c| *c > open)
        .ok_or_else(|| err(format!("{input:?} has an unclosed '['")))?;
    let head = input.get(..open).unwrap_or_default();
    let inner = input.get(open + 1..close).unwrap_or_default();
    let tail = input.get(close + 1..).unwrap_or_default();
    let mut path =
        AttrPath::parse(head).ok_or_else(|| err(format!("{head:?} is not an attribute path")))?;
    if path.sub.is_some() {
        return Err(err(format!(
            "{head:?}: a value filter follows an attribute"
        )));
    }
    if !tail.is_empty() {
        let sub = tail
            .strip_prefix('.')
            .filter(|s| valid_name(s))
            .ok_or_else(|| err(format!("{tail:?} after ']' is not .subAttribute")))?;
        path.sub = Some(sub.to_owned());
    }
    let target = resolve_path(rt, None, &path).map_err(err)?;
    if target.attr.ty != AttrType::Complex || !target.attr.multi {
        return Err(err(format!(
            "{} is not multi-valued and complex; it takes no value filter",
            target.attr.name
        )));
    }
    let filter = lex(inner)
        .and_then(|tokens| parse_tokens(tokens, true))
        .and_then(|f| resolve_value_filter(rt, target.attr, &f))
        .map_err(|m| err(format!("value filter: {m}")))?;
    Ok(PatchPath {
        whole_extension: None,
        target: Some(target),
        filter: Some(filter),
    })
}

/// A sort key: the first (or primary) value of the sort attribute.
pub fn sort_value<'a>(obj: &'a Map<String, Json>, target: &Target) -> Option<&'a Json> {
    if target.attr.multi && target.sub.is_none() {
        let container = match target.ext {
            Some(ext) => obj.get(ext)?.as_object()?,
            None => obj,
        };
        if let Some(Json::Array(items)) = container.get(target.attr.name) {
            let primary = items
                .iter()
                .find(|i| i.get("primary").and_then(Json::as_bool) == Some(true))
                .or_else(|| items.first())?;
            return primary.get("value").filter(|v| present(v));
        }
    }
    values(obj, target).into_iter().find(|v| present(v))
}

/// Orders two sort values by the attribute's type and case rules.
pub fn compare_values(leaf: &AttrDef, a: &Json, b: &Json) -> Ordering {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Json::Bool(x), Json::Bool(y)) => x.cmp(y),
        (Json::String(x), Json::String(y)) => {
            if leaf.ty == AttrType::DateTime {
                match (
                    DateTime::parse_from_rfc3339(x),
                    DateTime::parse_from_rfc3339(y),
                ) {
                    (Ok(x), Ok(y)) => return x.cmp(&y),
                    _ => return x.cmp(y),
                }
            }
            if leaf.case_exact {
                x.cmp(y)
            } else {
                x.to_lowercase().cmp(&y.to_lowercase())
            }
        }
        _ => Ordering::Equal,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::scim::schema::RESOURCE_TYPES;

    fn user() -> &'static ResourceType {
        &RESOURCE_TYPES[0]
    }

    fn eval(filter: &str, doc: Json) -> bool {
        let f = parse(filter).unwrap();
        let e = resolve(user(), &f).unwrap();
        matches(&e, doc.as_object().unwrap())
    }

    fn err(filter: &str) -> ScimError {
        parse(filter)
            .and_then(|f| resolve(user(), &f))
            .expect_err(filter)
    }

    #[test]
    fn rfc_7644_examples_parse() {
        for f in [
            r#"userName Eq "john""#,
            r#"Username eq "john""#,
            r#"userName eq "bjensen""#,
            r#"name.familyName co "O'Malley""#,
            r#"userName sw "J""#,
            r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "J""#,
            r#"title pr"#,
            r#"meta.lastModified gt "2011-05-13T04:42:34Z""#,
            r#"meta.lastModified ge "2011-05-13T04:42:34Z""#,
            r#"meta.lastModified lt "2011-05-13T04:42:34Z""#,
            r#"meta.lastModified le "2011-05-13T04:42:34Z""#,
            r#"title pr and userType eq "Employee""#,
            r#"title pr or userType eq "Intern""#,
            r#"schemas eq "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User""#,
            r#"userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")"#,
            r#"userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")"#,
            r#"userType eq "Employee" and (emails.type eq "work")"#,
            r#"userType eq "Employee" and emails[type eq "work" and value co "@example.com"]"#,
            r#"emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]"#,
        ] {
            let parsed = parse(f);
            assert!(parsed.is_ok(), "{f}: {parsed:?}");
        }
    }

    #[test]
    fn evaluation_follows_case_rules_and_value_paths() {
        let doc = json!({
            "userName": "BJensen", "id": "Abc", "title": "Tour Guide", "userType": "Employee",
            "name": {"familyName": "O'Malley"},
            "emails": [{"value": "bjensen@example.com", "type": "work"},
                       {"value": "babs@jensen.org", "type": "home"}],
            "meta": {"lastModified": "2011-05-13T04:42:34Z"}
        });
        assert!(eval(r#"userName eq "bjensen""#, doc.clone()));
        assert!(!eval(r#"id eq "abc""#, doc.clone()));
        assert!(eval(r#"emails co "EXAMPLE.com""#, doc.clone()));
        assert!(eval(
            r#"emails[type eq "work" and value co "@example.com"]"#,
            doc.clone()
        ));
        assert!(!eval(
            r#"emails[type eq "home" and value co "@example.com"]"#,
            doc.clone()
        ));
        assert!(eval(
            r#"meta.lastModified ge "2011-05-13T04:42:34Z""#,
            doc.clone()
        ));
        assert!(!eval(
            r#"meta.lastModified gt "2011-05-13T04:42:34Z""#,
            doc.clone()
        ));
        assert!(eval(r#"title pr and not (nickName pr)"#, doc.clone()));
        assert!(eval(r#"nickName ne "x""#, doc.clone()));
        assert!(eval(r#"nickName eq null"#, doc.clone()));
        assert!(eval(r#"userName eq "x" or userType eq "employee""#, doc));
    }

    #[test]
    fn precedence_is_not_then_and_then_or() {
        let doc = json!({"userName": "a", "title": "t"});
        // a or (b and c): true because the left side holds.
        assert!(eval(
            r#"userName eq "a" or title eq "x" and title eq "y""#,
            doc.clone()
        ));
        // (a or b) and c: false.
        assert!(!eval(
            r#"(userName eq "a" or title eq "x") and title eq "y""#,
            doc
        ));
    }

    #[test]
    fn malformed_filters_are_invalid_filter() {
        for f in [
            "",
            "userName",
            "userName eq",
            r#"userName eq "x"#,
            r#"userName xx "x""#,
            r#"(userName eq "x""#,
            r#"userName eq "x")"#,
            r#"userName eq "x" and"#,
            r#"not userName eq "x""#,
            r#"emails[type eq "work""#,
            r#"emails[type[value eq "x"]]"#,
            r#"userName eq bjensen"#,
            r#"1userName eq "x""#,
            r#"nosuch eq "x""#,
            r#"name.nosuch eq "x""#,
            r#"active gt true"#,
            r#"active eq "yes""#,
            r#"meta.lastModified gt "yesterday""#,
            r#"name eq "x""#,
            r#"userName eq 1e999999"#,
            r#"urn:nope:User:userName eq "x""#,
            "userName eq \"x\" ; drop table",
            r#"emails[nosuch eq "x"]"#,
            r#"password eq "x""#,
        ] {
            let e = err(f);
            assert_eq!(e.scim_type, Some(ScimType::InvalidFilter), "{f}: {e:?}");
        }
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        let deep = format!("{}userName pr{}", "(".repeat(10_000), ")".repeat(10_000));
        assert_eq!(err(&deep).scim_type, Some(ScimType::InvalidFilter));
        let nots = format!("{}userName pr{}", "not (".repeat(40), ")".repeat(40));
        assert_eq!(err(&nots).scim_type, Some(ScimType::InvalidFilter));
        let ok = format!("{}userName pr{}", "(".repeat(20), ")".repeat(20));
        assert!(parse(&ok).is_ok());
    }

    #[test]
    fn patch_paths() {
        let rt = user();
        for p in [
            "members",
            "name.familyName",
            r#"addresses[type eq "work"]"#,
            r#"emails[type eq "work" and value ew "example.com"]"#,
            r#"emails[type eq "work"].value"#,
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
        ] {
            let r = parse_patch_path(rt, p);
            if p == "members" {
                assert!(r.is_err());
            } else {
                assert!(r.is_ok(), "{p}: {r:?}");
            }
        }
        for p in [
            "",
            "emails[",
            r#"emails[type eq "work"]value"#,
            r#"name[givenName eq "x"]"#,
            "a.b.c",
            r#"emails[type eq]"#,
        ] {
            let e = parse_patch_path(rt, p).expect_err(p);
            assert_eq!(e.scim_type, Some(ScimType::InvalidPath), "{p}");
        }
    }
}
