//! Explanations: what a stage decided and why, in sentences people read.
//!
//! Every stage returns a [`Trace`] next to its outcome; lineage, audit and `meshctl simulate`
//! print it. Building the sentences costs time on the hot path, so a trace can be switched off
//! (`Trace::disabled`) by callers that only want outcomes, such as the benchmark; the
//! sentences are then never formatted.

use serde::Serialize;

/// The ordered explanation of one stage's decisions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Trace {
    #[serde(skip)]
    enabled: bool,
    lines: Vec<String>,
}

impl Default for Trace {
    fn default() -> Self {
        Self::enabled()
    }
}

impl Trace {
    /// Returns an empty trace that records.
    #[inline]
    pub fn enabled() -> Self {
        Self {
            enabled: true,
            lines: Vec::new(),
        }
    }

    /// Returns a trace that records nothing.
    #[inline]
    pub fn disabled() -> Self {
        Self {
            enabled: false,
            lines: Vec::new(),
        }
    }

    /// Returns a new empty trace that records when `self` does.
    pub fn child(&self) -> Self {
        Self {
            enabled: self.enabled,
            lines: Vec::new(),
        }
    }

    /// Returns true when the trace records.
    #[inline]
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Records a sentence; `line` is only called when the trace records.
    #[inline]
    pub fn note(&mut self, line: impl FnOnce() -> String) {
        if self.enabled {
            self.lines.push(line());
        }
    }

    /// Appends another trace's lines.
    #[inline]
    pub fn extend(&mut self, other: Trace) {
        if self.enabled {
            self.lines.extend(other.lines);
        }
    }

    /// Returns the sentences in order.
    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    /// Returns the sentences, consuming the trace.
    #[inline]
    pub fn into_lines(self) -> Vec<String> {
        self.lines
    }
}

/// Renders a value for a sentence: strings quoted, everything else as displayed.
pub(crate) fn show(value: &mesh_model::Value) -> String {
    match value {
        mesh_model::Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}
