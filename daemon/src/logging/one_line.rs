//! One event, one line: the text format's fields with every line break and
//! control character escaped. Clients reach the log with strings of their
//! own (hold and restart reasons, notes, tags, session keys, method names,
//! client ids); a `\n` in one of them must not start a line that reads as
//! moltd's own. Escaping here, where every text line is formatted, covers
//! every call site, present and future. (The JSON format escapes already.)

use std::fmt;

use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::{DefaultFields, Writer};

/// [`DefaultFields`], with what would break the line escaped.
#[derive(Debug, Default)]
pub struct OneLine;

impl<'writer> FormatFields<'writer> for OneLine {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        let mut formatted = String::new();
        DefaultFields::new().format_fields(Writer::new(&mut formatted), fields)?;
        write_escaped(&mut writer, &formatted)
    }
}

/// Whether `c` may not appear raw in a log line: line breaks (also the
/// Unicode ones a viewer may break at), and every other control character
/// but tab (terminal escapes included).
fn breaks_the_line(c: char) -> bool {
    (c.is_control() && c != '\t') || matches!(c, '\u{2028}' | '\u{2029}')
}

fn write_escaped(out: &mut impl fmt::Write, text: &str) -> fmt::Result {
    let mut rest = text;
    while let Some(at) = rest.find(breaks_the_line) {
        out.write_str(&rest[..at])?;
        let c = rest[at..].chars().next().unwrap_or_default();
        match c {
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            c => write!(out, "\\u{{{:x}}}", c as u32)?,
        }
        rest = &rest[at + c.len_utf8()..];
    }
    out.write_str(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(text: &str) -> String {
        let mut out = String::new();
        write_escaped(&mut out, text).unwrap();
        out
    }

    #[test]
    fn line_breaks_and_control_characters_are_escaped_and_the_rest_kept() {
        assert_eq!(
            escaped("plain \"text\"\tand tab"),
            "plain \"text\"\tand tab"
        );
        assert_eq!(
            escaped("a\nb\r\nc\u{1b}[31md\u{85}e\u{2028}f"),
            "a\\nb\\r\\nc\\u{1b}[31md\\u{85}e\\u{2028}f"
        );
        assert_eq!(escaped("€\n€"), "€\\n€");
    }
}
