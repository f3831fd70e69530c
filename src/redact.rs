//! Credentials out of everything patchkeeper prints or writes: the user-info part of URLs
//! (`https://user:token@host/...` becomes `https://***@host/...`), wherever a URL appears
//! in a text (a location, a libgit2 error message, a log line).
//!
//! Pure. Secrets patchkeeper holds itself (the Git token, private keys) are never formatted
//! into text in the first place (see `docs/security.md`); this catches the ones a user put
//! into a URL.

use std::borrow::Cow;

/// Where an authority (`user:pass@host:port`) ends.
fn authority_end(s: &str) -> usize {
    s.find(|c: char| {
        matches!(
            c,
            '/' | '?' | '#' | '\'' | '"' | '`' | '<' | '>' | ')' | ']'
        ) || c.is_whitespace()
    })
    .unwrap_or(s.len())
}

/// `text` with the user info of every URL in it that may carry a secret replaced by `***`:
/// any user info with a password (`user:pass@`), and any user info of an `http(s)` URL
/// (tokens are often passed as the user name). An SSH login name (`ssh://git@host`) stays.
pub fn text(text: &str) -> Cow<'_, str> {
    if !text.contains("://") {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut changed = false;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = authority_end(tail);
        let authority = &tail[..end];
        let scheme: String = head[..i]
            .chars()
            .rev()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<String>()
            .to_ascii_lowercase();
        match authority.rfind('@') {
            Some(at) if authority[..at].contains(':') || scheme.starts_with("http") => {
                out.push_str("***");
                out.push_str(&authority[at..]);
                changed = true;
            }
            _ => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    if changed {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_info_is_replaced_everywhere() {
        assert_eq!(
            text("https://ci:glpat-SECRET@git.example/fleet.git"),
            "https://***@git.example/fleet.git"
        );
        assert_eq!(
            text("fetch https://tok@h/x failed; retry http://u:p@[::1]:8080 next"),
            "fetch https://***@h/x failed; retry http://***@[::1]:8080 next"
        );
        // An `@` in the path is not user info.
        assert_eq!(text("https://h/a@b"), "https://h/a@b");
        assert_eq!(text("ssh://git@h/x"), "ssh://git@h/x");
        assert_eq!(text("ssh://git:pw@h/x"), "ssh://***@h/x");
        assert_eq!(text("HTTPS://tok@h/x"), "HTTPS://***@h/x");
        assert_eq!(text("no url here: a@b"), "no url here: a@b");
        assert!(matches!(text("https://h/x"), Cow::Borrowed(_)));
        // A password holding `@` or `:`.
        assert_eq!(text("https://u:p@ss:w@h/x"), "https://***@h/x");
        assert_eq!(text("`https://u:s3cr3t@h`"), "`https://***@h`");
    }
}
