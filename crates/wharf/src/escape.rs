//! Escaping of untrusted text (user names from failed logins, audit details, ...) at output:
//! the text log and the CLI's tables and JSON lines. A raw newline would forge a line, and a
//! terminal escape sequence would rewrite what an operator sees, so control characters are
//! shown as visible escapes instead.

use std::borrow::Cow;
use std::fmt::{self, Write as _};

/// Characters that must not reach a terminal or a line-oriented log raw: C0 controls (newline,
/// carriage return and tab included), DEL, C1 controls, the bidirectional overrides and
/// isolates (which reorder what is displayed), and the Unicode line and paragraph separators.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{2066}'..='\u{2069}'
        )
}

/// `s` with every unsafe character written as a visible escape (`\n`, `\r`, `\t`, or
/// `\u{1b}`); borrowed when there is none.
pub fn escape_controls(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_unsafe(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// One line of JSON (serde_json's output) made safe for a terminal: serde_json escapes C0
/// controls already; DEL, C1 controls and bidirectional overrides, which can only occur inside
/// strings there, become `\uXXXX` escapes, so the line is still the same JSON.
pub fn escape_json_line(json: &str) -> Cow<'_, str> {
    if !json.chars().any(is_unsafe) {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if is_unsafe(c) {
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A [`fmt::Write`] that escapes unsafe characters on their way to `inner`.
struct Escaping<'a, W: fmt::Write>(&'a mut W);

impl<W: fmt::Write> fmt::Write for Escaping<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.write_str(&escape_controls(s))
    }
}

/// The text log's field formatter: tracing-subscriber's default layout (`message key=value`),
/// with control characters in every field, the message included, escaped. Display-formatted
/// fields (`user = %name`) reach the default formatter raw, so this is what keeps a user name
/// with a newline from starting a forged log line. Field names lose their terminal styling;
/// the timestamp and level keep theirs.
#[derive(Debug, Default)]
pub struct EscapedFields(tracing_subscriber::fmt::format::DefaultFields);

impl<'w> tracing_subscriber::fmt::FormatFields<'w> for EscapedFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        mut writer: tracing_subscriber::fmt::format::Writer<'w>,
        fields: R,
    ) -> fmt::Result {
        let mut escaping = Escaping(&mut writer);
        let plain = tracing_subscriber::fmt::format::Writer::new(&mut escaping);
        self.0.format_fields(plain, fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_escaped_and_clean_text_is_borrowed() {
        assert!(matches!(escape_controls("alice"), Cow::Borrowed("alice")));
        assert_eq!(
            escape_controls("a\nb\r\t\x1b[31m\u{7f}\u{85}\u{202e}é"),
            "a\\nb\\r\\t\\u{1b}[31m\\u{7f}\\u{85}\\u{202e}é"
        );
    }

    #[test]
    fn json_lines_stay_json() {
        let v = serde_json::json!({"actor": "m\n\x1b\u{85}\u{202e}x"});
        let line = serde_json::to_string(&v).unwrap();
        let safe = escape_json_line(&line);
        assert!(!safe.chars().any(is_unsafe), "{safe}");
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn log_fields_are_escaped() {
        use tracing_subscriber::fmt::MakeWriter;
        #[derive(Clone, Default)]
        struct Buf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        impl<'a> MakeWriter<'a> for Buf {
            type Writer = Buf;
            fn make_writer(&'a self) -> Buf {
                self.clone()
            }
        }
        let buf = Buf::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(buf.clone())
            .with_ansi(false)
            .fmt_fields(EscapedFields::default())
            .finish();
        let name = "eve\nFORGED line\x1b[31m";
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("req", user = %name);
            let _g = span.enter();
            tracing::info!(actor = %name, quoted = name, "login of {name} failed");
        });
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(!out.contains('\x1b'), "{out}");
        assert!(out.contains("actor=eve\\nFORGED line\\u{1b}[31m"), "{out}");
        assert!(out.contains("login of eve\\nFORGED"), "{out}");
    }
}
