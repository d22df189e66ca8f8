//! Field validation that reports every broken rule at once.

use crate::error::{ApiError, FieldError};

/// Collects broken rules; `finish` turns them into a 422.
#[derive(Debug, Default)]
pub struct Checks {
    errors: Vec<FieldError>,
}

impl Checks {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a broken rule.
    pub fn fail(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    /// Trims `value` and checks its length in characters and that it holds no
    /// control characters (line breaks allowed only if `multiline`).
    pub fn text(
        &mut self,
        field: &str,
        value: &str,
        min: usize,
        max: usize,
        multiline: bool,
    ) -> String {
        let trimmed = value.trim();
        let len = trimmed.chars().count();
        if len < min || len > max {
            if min == max {
                self.fail(field, format!("must be {min} characters"));
            } else if min == 0 {
                self.fail(field, format!("must be at most {max} characters"));
            } else {
                self.fail(field, format!("must be {min} to {max} characters"));
            }
        }
        let bad_control = trimmed
            .chars()
            .any(|c| c.is_control() && !(multiline && (c == '\n' || c == '\t' || c == '\r')));
        if bad_control {
            self.fail(field, "must not contain control characters");
        }
        trimmed.to_owned()
    }

    /// Like `text`, for text that other people see (display names): also
    /// refuses bidirectional controls and text that shows nothing (see
    /// [`crate::text::refusal`]).
    pub fn display_text(&mut self, field: &str, value: &str, min: usize, max: usize) -> String {
        let trimmed = self.text(field, value, min, max, false);
        if let Some(message) = crate::text::refusal(&trimmed) {
            self.fail(field, message);
        }
        trimmed
    }

    /// Like `text`, for an optional field; an empty string becomes `None`.
    pub fn optional_text(
        &mut self,
        field: &str,
        value: Option<&str>,
        max: usize,
        multiline: bool,
    ) -> Option<String> {
        let value = value?;
        let trimmed = self.text(field, value, 0, max, multiline);
        (!trimmed.is_empty()).then_some(trimmed)
    }

    /// Checks that a number lies in `min..=max`.
    pub fn range(&mut self, field: &str, value: u64, min: u64, max: u64) {
        if value < min || value > max {
            self.fail(field, format!("must be between {min} and {max}"));
        }
    }

    pub fn finish(self) -> Result<(), ApiError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::validation(self.errors))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_every_broken_rule() {
        let mut checks = Checks::new();
        assert_eq!(checks.text("title", "  Soup  ", 1, 200, false), "Soup");
        checks.text("name", "", 1, 10, false);
        checks.text("label", "a\u{0}b", 0, 10, false);
        checks.range("servings", 0, 1, 100);
        let err = checks.finish().unwrap_err();
        match err {
            ApiError::Client { errors, .. } => {
                let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
                assert_eq!(fields, ["name", "label", "servings"]);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn display_text_refuses_bidi_controls_and_invisible_only_names() {
        let mut checks = Checks::new();
        assert_eq!(
            checks.display_text("display_name", " 👩‍🍳 Anna ", 1, 64),
            "👩‍🍳 Anna"
        );
        assert!(checks.finish().is_ok());
        for name in ["\u{202E}annA", "\u{200B}", "\u{3164}\u{3164}"] {
            let mut checks = Checks::new();
            checks.display_text("display_name", name, 1, 64);
            assert!(checks.finish().is_err(), "{name:?}");
        }
    }

    #[test]
    fn newlines_only_in_multiline_fields() {
        let mut checks = Checks::new();
        checks.text("text", "line 1\nline 2", 1, 100, true);
        assert!(checks.finish().is_ok());
        let mut checks = Checks::new();
        checks.text("title", "line 1\nline 2", 1, 100, false);
        assert!(checks.finish().is_err());
    }
}
