//! Byte ranges into a program's source.

use std::fmt;
use std::ops::Range;

/// A half-open byte range `start..end` into the source of a program.
///
/// Spans always lie on UTF-8 character boundaries of the source they were made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Span {
    /// The offset of the first byte.
    pub start: usize,
    /// The offset one past the last byte.
    pub end: usize,
}

impl Span {
    /// Returns the span `start..end`.
    pub const fn new(start: usize, end: usize) -> Self {
        Self { start, end }
    }

    /// Returns the smallest span that covers both `self` and `other`.
    pub fn to(self, other: Span) -> Span {
        Span {
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }

    /// Returns the length in bytes.
    pub const fn len(self) -> usize {
        self.end.saturating_sub(self.start)
    }

    /// Returns true when the span covers no byte.
    pub const fn is_empty(self) -> bool {
        self.len() == 0
    }

    /// Returns the span as a range.
    pub const fn range(self) -> Range<usize> {
        self.start..self.end
    }

    /// Returns the 1-based line and column (in characters) where the span starts in `source`.
    pub fn position(self, source: &str) -> (usize, usize) {
        let mut start = self.start.min(source.len());
        while !source.is_char_boundary(start) {
            start -= 1;
        }
        let before = source.get(..start).unwrap_or("");
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let line = before.matches('\n').count() + 1;
        let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
        (line, column)
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..{}", self.start, self.end)
    }
}
