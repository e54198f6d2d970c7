//! Making hook-supplied text safe to log and to return: every string a hook
//! hands the host (error messages, log lines, panic output, tensor names
//! echoed in errors) passes through [`sanitize`] before it reaches a log
//! line or a response.

use std::fmt::Write;

/// Longest error message kept from a hook (after escaping).
pub const MAX_ERROR_MESSAGE: usize = 4 * 1024;

/// `text` on one line and at most `max_bytes` long: control characters
/// (newlines, tabs, escape sequences, Unicode line separators…) are written
/// as escapes (`\n`, `\u{1b}`), so a hook cannot forge log lines or
/// terminal output; text over the limit is cut on a character boundary and
/// ends with `… (truncated, N bytes)`, N being the original length.
pub fn sanitize(text: &str, max_bytes: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_bytes) + 32);
    let mut escaped = String::new();
    for c in text.chars() {
        escaped.clear();
        push_escaped(&mut escaped, c);
        if out.len() + escaped.len() > max_bytes {
            let _ = write!(out, "… (truncated, {} bytes)", text.len());
            return out;
        }
        out.push_str(&escaped);
    }
    out
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if needs_escape(c) => {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        }
        c => out.push(c),
    }
}

/// C0 and C1 controls, DEL, and the characters that break or reorder lines
/// in logs and terminals (line/paragraph separators, bidi controls).
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newlines_and_escape_sequences_are_escaped() {
        let forged = "ok\n2026-01-01T00:00:00Z ERROR forged\r\x1b[31mred\u{2028}";
        let clean = sanitize(forged, 1024);
        assert_eq!(
            clean,
            "ok\\n2026-01-01T00:00:00Z ERROR forged\\r\\u{1b}[31mred\\u{2028}"
        );
        assert!(!clean.chars().any(char::is_control));
    }

    #[test]
    fn long_text_is_cut_with_its_original_length() {
        let long = "é".repeat(100_000);
        let cut = sanitize(&long, 1024);
        assert!(cut.len() <= 1024 + 40, "{}", cut.len());
        assert!(cut.ends_with("… (truncated, 200000 bytes)"), "{cut}");
    }

    #[test]
    fn short_text_is_kept_as_is() {
        assert_eq!(sanitize("fine: 'x' \\ y", 100), "fine: 'x' \\ y");
    }

    #[test]
    fn escapes_count_against_the_limit() {
        let cut = sanitize(&"\n".repeat(1000), 100);
        assert!(cut.starts_with("\\n\\n"));
        assert!(cut.len() <= 100 + 40, "{}", cut.len());
        assert!(cut.ends_with("(truncated, 1000 bytes)"), "{cut}");
    }
}
