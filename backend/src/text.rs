//! Text that other people see (display names, chat): the one rule for what
//! is refused, shared by REST (`Checks::display_text`) and the chat itself
//! (REST and `/ws` post through the same `ChatLog::accept`).
//!
//! Refused, not stripped: a client learns at once that its text was not
//! taken as sent, and what is stored is exactly what was acknowledged.

use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// Why `text` may not be shown to others as it is, or `None` when it may.
/// Length and control characters are checked by the caller.
pub fn refusal(text: &str) -> Option<&'static str> {
    if text.chars().any(is_bidi_control) {
        return Some(
            "must not contain bidirectional control characters \
             (U+202A–U+202E, U+2066–U+2069, U+200E, U+200F, U+061C)",
        );
    }
    if !text.is_empty() && text.chars().all(is_invisible) {
        return Some("must contain a visible character");
    }
    None
}

/// Characters that reorder the text around them: a name or message with one
/// can make what follows it read backwards (a spoofed name, a hidden link).
fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}'
    )
}

/// Characters that show nothing by themselves: white space, format
/// characters (general category Cf: zero-width space and joiners, word
/// joiner, BOM, ...), variation selectors, the combining grapheme joiner,
/// Hangul fillers, the blank Braille pattern, and Khmer's invisible vowels.
/// A text made of these only looks empty (or like someone else's name with
/// a different invisible tail). Inside visible text they stay allowed: an
/// emoji sequence such as 👩‍🍳 holds a zero-width joiner.
fn is_invisible(c: char) -> bool {
    c.is_whitespace()
        || c.general_category() == GeneralCategory::Format
        || matches!(
            c,
            '\u{034F}'
                | '\u{115F}'
                | '\u{1160}'
                | '\u{17B4}'
                | '\u{17B5}'
                | '\u{180B}'..='\u{180F}'
                | '\u{2800}'
                | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FFA0}'
                | '\u{E0100}'..='\u{E01EF}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bidi_controls_are_refused_anywhere() {
        for c in [
            '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}', '\u{2066}', '\u{2067}',
            '\u{2068}', '\u{2069}', '\u{200E}', '\u{200F}', '\u{061C}',
        ] {
            let text = format!("Chef{c}Anna");
            assert!(refusal(&text).is_some(), "U+{:04X}", c as u32);
        }
    }

    #[test]
    fn invisible_only_text_is_refused() {
        for text in [
            "\u{200B}",
            "\u{200C}\u{200D}",
            "\u{2060}",
            "\u{FEFF}",
            "\u{FE0F}",
            "\u{3164}",
            "\u{115F}\u{1160}",
            "\u{FFA0}",
            "\u{2800}",
            "\u{00AD}",
            "\u{200B} \u{3000}\u{200B}",
            "\u{E0020}\u{E007F}",
        ] {
            assert_eq!(
                refusal(text),
                Some("must contain a visible character"),
                "{:?}",
                text.chars().map(|c| c as u32).collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn ordinary_text_and_emoji_sequences_pass() {
        for text in [
            "Anna",
            "👩‍🍳",
            "❤️",
            "🏳️‍🌈 pride",
            "שלום",
            "مرحبا",
            "김치",
            "a\u{200B}b",
            "",
        ] {
            assert_eq!(refusal(text), None, "{text}");
        }
    }
}
