//! Bounds checked before a recursive parser sees config text: the JSON5
//! parser, `serde_json::Value` and the merge patch all recurse once per
//! level, so a document nested a few hundred thousand levels deep would
//! overflow the stack and abort the daemon.

/// Largest config file, or `config.patch` `raw`, moltd parses. Real
/// configs are a few KiB.
pub const MAX_CONFIG_BYTES: usize = 1024 * 1024;
/// Deepest nesting of objects and arrays in a config document.
pub const MAX_CONFIG_DEPTH: usize = 64;

/// Why config text was refused before parsing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("it is {size} bytes, over the {MAX_CONFIG_BYTES}-byte limit")]
    TooLarge { size: usize },
    #[error("it nests deeper than {MAX_CONFIG_DEPTH} levels at line {line} column {column}")]
    TooDeep { line: usize, column: usize },
}

/// Checks size and nesting depth of JSON5 text without parsing it.
pub fn check(text: &str) -> Result<(), LimitError> {
    if text.len() > MAX_CONFIG_BYTES {
        return Err(LimitError::TooLarge { size: text.len() });
    }
    match deeper_than(text, MAX_CONFIG_DEPTH) {
        Some((line, column)) => Err(LimitError::TooDeep { line, column }),
        None => Ok(()),
    }
}

/// Where (1-based line and column) the nesting of `[` and `{` first goes
/// past `max`, counting only brackets outside strings and comments; `None`
/// if it never does. Unbalanced text is the parser's to report.
fn deeper_than(text: &str, max: usize) -> Option<(usize, usize)> {
    #[derive(Clone, Copy)]
    enum In {
        Code,
        Str { quote: char, escaped: bool },
        LineComment,
        BlockComment { star: bool },
    }
    let mut state = In::Code;
    let mut depth = 0usize;
    let (mut line, mut column) = (1, 0);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\n' {
            line += 1;
            column = 0;
        } else {
            column += 1;
        }
        state = match state {
            In::Code => match c {
                '[' | '{' => {
                    depth += 1;
                    if depth > max {
                        return Some((line, column));
                    }
                    In::Code
                }
                ']' | '}' => {
                    depth = depth.saturating_sub(1);
                    In::Code
                }
                '"' | '\'' => In::Str {
                    quote: c,
                    escaped: false,
                },
                '/' if chars.peek() == Some(&'/') => In::LineComment,
                '/' if chars.peek() == Some(&'*') => {
                    chars.next();
                    column += 1;
                    In::BlockComment { star: false }
                }
                _ => In::Code,
            },
            In::Str { quote, escaped } => match c {
                _ if escaped => In::Str {
                    quote,
                    escaped: false,
                },
                '\\' => In::Str {
                    quote,
                    escaped: true,
                },
                _ if c == quote => In::Code,
                _ => In::Str { quote, escaped },
            },
            In::LineComment if c == '\n' => In::Code,
            In::LineComment => In::LineComment,
            In::BlockComment { star: true } if c == '/' => In::Code,
            In::BlockComment { .. } => In::BlockComment { star: c == '*' },
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn depth_counts_only_brackets_outside_strings_and_comments() {
        let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert_eq!(deeper_than(&nested(64), 64), None);
        assert_eq!(deeper_than(&nested(65), 64), Some((1, 65)));
        let hidden = format!(
            "{{a: '{}', b: \"{}\", // {}\n /* {} */ c: 1}}",
            "[".repeat(100),
            "{\\\"".repeat(100),
            "[".repeat(100),
            "{*".repeat(100)
        );
        assert_eq!(deeper_than(&hidden, 2), None);
        assert_eq!(deeper_than("{\n  a: [[\n[", 3), Some((3, 1)));
    }

    #[test]
    fn the_errors_name_the_limit() {
        let deep = format!("{{a:{}{}}}", "[".repeat(200_000), "]".repeat(200_000));
        assert_eq!(
            check(&deep).unwrap_err().to_string(),
            "it nests deeper than 64 levels at line 1 column 67"
        );
        let big = format!("{{a: \"{}\"}}", "x".repeat(MAX_CONFIG_BYTES));
        assert_eq!(
            check(&big).unwrap_err().to_string(),
            format!(
                "it is {} bytes, over the {MAX_CONFIG_BYTES}-byte limit",
                big.len()
            )
        );
    }

    proptest! {
        #[test]
        fn text_that_passes_the_check_parses_without_overflowing(
            text in "[\\[\\]{}a:1,'\"/*\\\\\n ]{0,400}",
        ) {
            // Any text at all: the check must never panic, and whatever it
            // lets through the parser must survive (error or value).
            if check(&text).is_ok() {
                let _ = json5::from_str::<serde_json::Value>(&text);
            }
        }

        #[test]
        fn nesting_past_the_limit_is_always_refused(depth in 65usize..5_000, open in "[\\[{]") {
            let text = open.repeat(depth);
            let refused = matches!(check(&text), Err(LimitError::TooDeep { .. }));
            prop_assert!(refused, "depth {} passed", depth);
        }
    }
}
