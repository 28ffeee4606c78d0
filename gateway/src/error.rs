//! The error every config check returns: a field path and a message. A leaf module, so
//! `resources/` and `annotations/` both use it without importing each other.

use std::fmt;

/// A problem with one field of an object: where (a dotted path such as
/// `spec.rules[0].http.paths[1].pathType`) and what.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

impl FieldError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            path: path.into(),
            message: message.into(),
        }
    }

    /// `<field path>: <message>`, the path `.` when the problem is the whole document
    /// (what `gateway validate` and the rejection log print after the file and object).
    pub fn located(&self) -> String {
        let path = if self.path.is_empty() {
            "."
        } else {
            self.path.as_str()
        };
        format!("{path}: {}", self.message)
    }

    /// The same error below `prefix` (e.g. `data.higress`).
    pub fn under(mut self, prefix: &str) -> Self {
        self.path = if self.path.is_empty() {
            prefix.to_string()
        } else if self.path.starts_with('[') {
            format!("{prefix}{}", self.path)
        } else {
            format!("{prefix}.{}", self.path)
        };
        self
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}
