//! Text that tenants choose (file names in their volumes, and whatever `tar` or a helper prints
//! about them) made safe to show: control characters escaped before the text reaches the history,
//! logs, the CLI or the page, so that a file name cannot forge log lines (`\n`, `\r`), drive a
//! terminal (`\x1b[…`) or reorder what a reader sees (bidirectional overrides).

use std::borrow::Cow;
use std::fmt::Write as _;

/// `text` with every control character escaped: `\n`, `\r` and `\t` by name, other C0 controls,
/// DEL and C1 controls as `\xNN`, and invisible formatting characters that change how the text
/// reads (bidirectional embeddings, overrides and isolates, zero-width joiners, the BOM, line and
/// paragraph separators) as `\u{NNNN}`. Backslashes are kept as they are, so escaping twice changes
/// nothing and ordinary paths stay readable. Borrows `text` when nothing needs escaping.
#[must_use]
pub fn escape_control(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() && u32::from(c) <= 0xff => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:04x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Whether [`escape_control`] escapes `c`.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
                | '\u{061c}'
                | '\u{feff}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_text_is_borrowed_unchanged() {
        for text in ["", "./a/b c.txt", "ünïcødé ✓ файл", r"C:\path\n"] {
            assert!(matches!(escape_control(text), Cow::Borrowed(t) if t == text));
        }
    }

    #[test]
    fn line_breaks_and_terminal_escapes_are_escaped() {
        assert_eq!(
            escape_control("evil\nnkvm: backup succeeded\r\x1b[2Kok\t"),
            r"evil\nnkvm: backup succeeded\r\x1b[2Kok\t"
        );
        assert_eq!(
            escape_control("\0\x07\x7f\u{85}\u{9b}"),
            r"\x00\x07\x7f\x85\x9b"
        );
    }

    #[test]
    fn invisible_reordering_characters_are_escaped() {
        assert_eq!(
            escape_control("invoice\u{202e}fdp.exe\u{2066}\u{200b}\u{2028}\u{feff}"),
            r"invoice\u{202e}fdp.exe\u{2066}\u{200b}\u{2028}\u{feff}"
        );
    }

    #[test]
    fn escaping_twice_changes_nothing() {
        let once = escape_control("a\nb\x1b[31m\u{202e}").into_owned();
        assert_eq!(escape_control(&once), once);
        assert!(!once.chars().any(needs_escape));
    }
}
