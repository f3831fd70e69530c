//! Text from outside (hosts, the reports branch, saved plans) on its way to a terminal:
//! control characters escaped so a host cannot move the cursor, retitle the window, hide
//! text or fake a line of patchkeeper's own output; and identifiers shortened on character
//! boundaries so non-ASCII data cannot make a slice panic.
//!
//! Pure. Escaping is idempotent (an escaped string holds no control character), so text
//! escaped where it enters (failure reasons, command output tails) can be escaped again
//! where it is printed.

use std::borrow::Cow;

/// Whether `c` must not reach a terminal raw: C0 controls, DEL, C1 controls, and the Unicode
/// bidirectional overrides and isolates (which reorder what a reader sees).
fn is_hazard(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn escape_with(s: &str, keep_newlines: bool) -> Cow<'_, str> {
    let hazard = |c: char| is_hazard(c) && !(keep_newlines && c == '\n');
    if !s.chars().any(hazard) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            c if !hazard(c) => out.push(c),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
        }
    }
    Cow::Owned(out)
}

/// `s` on one line: every control character (newlines included) escaped as `\n`, `\t`,
/// `\u{1b}` ...
pub fn escape(s: &str) -> Cow<'_, str> {
    escape_with(s, false)
}

/// `s` with its line breaks kept and every other control character escaped.
pub fn escape_lines(s: &str) -> Cow<'_, str> {
    escape_with(s, true)
}

/// The first `n` characters of `s` (an id shortened for display), never splitting one.
pub fn short(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_escaped_and_text_kept() {
        assert_eq!(escape("plain text é"), "plain text é");
        assert!(matches!(escape("plain"), Cow::Borrowed(_)));
        assert_eq!(
            escape("\x1b]0;pwned\x07red\x1b[31m\r\nnext\tcol\u{9b}\u{202e}"),
            r"\u{1b}]0;pwned\u{7}red\u{1b}[31m\r\nnext\tcol\u{9b}\u{202e}"
        );
        assert_eq!(escape_lines("a\nb\x1bc"), "a\nb\\u{1b}c");
        // Idempotent.
        let once = escape("\x1b[2J").into_owned();
        assert_eq!(escape(&once), once);
    }

    #[test]
    fn short_ids_respect_characters() {
        assert_eq!(short("0123456789abcdef", 12), "0123456789ab");
        assert_eq!(short("abc", 12), "abc");
        // Non-ASCII from a reports branch or a plan file: no panic, whole characters.
        assert_eq!(short("ééééééééééééé", 12), "éééééééééééé");
        assert_eq!(short("01234567890é", 12), "01234567890é");
        assert_eq!(short("", 12), "");
    }
}
