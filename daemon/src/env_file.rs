//! The state dir's `.env` file and the process env layered over it.
//!
//! Format: `KEY=VALUE` lines, blank lines and `#` comments ignored, optional
//! `export ` prefix, values optionally wrapped in matching `'` or `"` (taken
//! verbatim: there are no escape sequences). An unquoted value ends at a `#`
//! that follows whitespace. Malformed lines are skipped with a warning.

use std::collections::HashMap;
use std::io;
use std::path::Path;

use crate::fsutil::{path_error, write_atomic};

/// Where a value in [`Env`] came from.
pub use molt_protocol::status::EnvSource;

/// The process env over the `.env` file: the file never overrides the
/// process. Both layers are snapshots, so reads are pure.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env {
    process: HashMap<String, String>,
    file: HashMap<String, String>,
}

impl Env {
    pub fn new(process: HashMap<String, String>, file: HashMap<String, String>) -> Self {
        Self { process, file }
    }

    /// The process value if the variable is set (even to ""), else the file's.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.process
            .get(key)
            .or_else(|| self.file.get(key))
            .map(String::as_str)
    }

    pub fn source(&self, key: &str) -> Option<EnvSource> {
        if self.process.contains_key(key) {
            Some(EnvSource::ProcessEnv)
        } else if self.file.contains_key(key) {
            Some(EnvSource::EnvFile)
        } else {
            None
        }
    }

    /// Whether `key` is set to a truthy value (see [`is_truthy`]).
    pub fn flag(&self, key: &str) -> bool {
        self.get(key).is_some_and(is_truthy)
    }

    /// Mirrors a write to the `.env` file (see [`set_env_file_key`]) so it
    /// applies live. A process value still wins, as at start.
    pub fn set_file_var(&mut self, key: &str, value: Option<&str>) {
        match value {
            Some(v) => self.file.insert(key.to_owned(), v.to_owned()),
            None => self.file.remove(key),
        };
    }
}

/// "1", "true", "yes", "on" (any case, surrounding spaces ignored) are true.
/// Everything else, including "0", "false", "no", "off" and "", is false.
pub fn is_truthy(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "1" | "true" | "yes" | "on"
    )
}

/// A line of a `.env` file that was skipped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct LineWarning {
    /// 1-based.
    pub line: usize,
    pub message: String,
}

/// Parses `.env` text into assignments in file order (a later one for the
/// same key wins when collected) and warnings for skipped lines.
pub fn parse_env(text: &str) -> (Vec<(String, String)>, Vec<LineWarning>) {
    let mut vars = Vec::new();
    let mut warnings = Vec::new();
    for (i, line) in text.lines().enumerate() {
        match parse_line(line) {
            Ok(Some(a)) => vars.push((a.key.to_owned(), a.value.to_owned())),
            Ok(None) => {}
            Err(message) => warnings.push(LineWarning {
                line: i + 1,
                message,
            }),
        }
    }
    (vars, warnings)
}

/// Largest `.env` file moltd reads: a few settings take a few hundred
/// bytes.
pub const MAX_ENV_FILE_BYTES: u64 = 64 * 1024;

/// Reads a `.env` file; a missing file is empty, one over
/// [`MAX_ENV_FILE_BYTES`] an error naming the limit. Skipped lines are
/// logged with the file and line number.
pub fn read_env_file(path: &Path) -> io::Result<HashMap<String, String>> {
    let text = match read_text(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(e) => return Err(e),
    };
    let (vars, warnings) = parse_env(&text);
    for w in warnings {
        tracing::warn!("{}: {w}; line ignored", path.display());
    }
    Ok(vars.into_iter().collect())
}

#[derive(Debug, thiserror::Error)]
pub enum EnvFileError {
    #[error(
        "invalid env variable name {0:?}: use letters, digits and _, not starting with a digit"
    )]
    InvalidKey(String),
    #[error("value for {key} cannot be stored in .env: {reason}")]
    InvalidValue { key: String, reason: &'static str },
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Sets (`Some`) or removes (`None`) `key` in the `.env` file at `path`,
/// keeping every other line verbatim. The first line for `key` is replaced
/// (keeping its `export `), later duplicates are dropped so they cannot
/// shadow it; a new key is appended. The file is replaced atomically.
pub fn set_env_file_key(path: &Path, key: &str, value: Option<&str>) -> Result<(), EnvFileError> {
    if !is_valid_key(key) {
        return Err(EnvFileError::InvalidKey(key.to_owned()));
    }
    let new_value = value.map(|v| quote_value(key, v)).transpose()?;
    let text = match read_text(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e.into()),
    };

    let mut out = String::with_capacity(text.len() + 64);
    let mut written = false;
    for line in text.split_inclusive('\n') {
        let (body, eol) = split_eol(line);
        let existing = match parse_line(body) {
            Ok(Some(a)) if a.key == key => a,
            _ => {
                out.push_str(line);
                continue;
            }
        };
        if let (Some(v), false) = (&new_value, written) {
            let export = if existing.exported { "export " } else { "" };
            out.push_str(&format!("{export}{key}={v}"));
            out.push_str(if eol.is_empty() { "\n" } else { eol });
            written = true;
        }
    }
    if let (Some(v), false) = (&new_value, written) {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&format!("{key}={v}\n"));
    }
    if out != text {
        write_atomic(path, out.as_bytes())?;
    }
    Ok(())
}

/// The file as text, bounded by [`MAX_ENV_FILE_BYTES`].
fn read_text(path: &Path) -> io::Result<String> {
    let bytes = crate::fsutil::read_bounded(path, MAX_ENV_FILE_BYTES)?;
    String::from_utf8(bytes).map_err(|e| {
        path_error(
            io::Error::new(io::ErrorKind::InvalidData, format!("not UTF-8: {e}")),
            "read",
            path,
        )
    })
}

fn split_eol(line: &str) -> (&str, &str) {
    for eol in ["\r\n", "\n"] {
        if let Some(body) = line.strip_suffix(eol) {
            return (body, eol);
        }
    }
    (line, "")
}

/// Renders `value` so that [`parse_line`] reads it back unchanged.
fn quote_value(key: &str, value: &str) -> Result<String, EnvFileError> {
    let invalid = |reason| EnvFileError::InvalidValue {
        key: key.to_owned(),
        reason,
    };
    if value.contains(['\n', '\r', '\0']) {
        return Err(invalid("it contains a line break or NUL"));
    }
    let needs_quotes = value.contains(char::is_whitespace) || value.starts_with(['"', '\'', '#']);
    if !needs_quotes {
        Ok(value.to_owned())
    } else if !value.contains('\'') {
        Ok(format!("'{value}'"))
    } else if !value.contains('"') {
        Ok(format!("\"{value}\""))
    } else {
        Err(invalid("it needs quoting but contains both ' and \""))
    }
}

fn is_valid_key(key: &str) -> bool {
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

struct Assignment<'a> {
    key: &'a str,
    value: &'a str,
    exported: bool,
}

/// `Ok(None)` for blank and comment lines, `Err(reason)` for malformed ones.
fn parse_line(line: &str) -> Result<Option<Assignment<'_>>, String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let (line, exported) = match line.strip_prefix("export") {
        Some(rest) if rest.starts_with([' ', '\t']) => (rest.trim_start(), true),
        _ => (line, false),
    };
    let Some((key, raw)) = line.split_once('=') else {
        return Err("expected KEY=VALUE".to_owned());
    };
    let key = key.trim_end();
    if !is_valid_key(key) {
        return Err(format!("invalid variable name {key:?}"));
    }
    let raw = raw.trim();
    let value = match raw.chars().next() {
        Some(q @ ('"' | '\'')) => {
            let Some(end) = raw[1..].find(q) else {
                return Err(format!("unterminated {q} quote in value of {key}"));
            };
            let after = raw[1 + end + 1..].trim_start();
            if !after.is_empty() && !after.starts_with('#') {
                return Err(format!("unexpected text after the quoted value of {key}"));
            }
            &raw[1..1 + end]
        }
        _ => match raw.find([' ', '\t']).map(|i| (i, raw[i..].trim_start())) {
            Some((i, rest)) if rest.starts_with('#') => raw[..i].trim_end(),
            _ => raw,
        },
    };
    Ok(Some(Assignment {
        key,
        value,
        exported,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn parsed(text: &str) -> HashMap<String, String> {
        let (vars, warnings) = parse_env(text);
        assert!(warnings.is_empty(), "{warnings:?}");
        vars.into_iter().collect()
    }

    #[test]
    fn parses_assignments_comments_export_and_quotes() {
        let text = "\
# comment
  
A=1
export B = two
C=\"quoted # not a comment\"
D='single \"inner\"'
E=plain # trailing comment
F=
G=a#b
H=\"x\"  # comment after quotes
I = spaced value
";
        assert_eq!(
            parsed(text),
            map(&[
                ("A", "1"),
                ("B", "two"),
                ("C", "quoted # not a comment"),
                ("D", "single \"inner\""),
                ("E", "plain"),
                ("F", ""),
                ("G", "a#b"),
                ("H", "x"),
                ("I", "spaced value"),
            ])
        );
    }

    #[test]
    fn later_duplicate_wins_and_crlf_is_accepted() {
        assert_eq!(parsed("A=1\r\nA=2\r\n"), map(&[("A", "2")]));
    }

    #[test]
    fn malformed_lines_are_skipped_with_their_line_number() {
        let text = "OK=1\nno equals sign\n1BAD=x\nQ=\"open\n=novalue\nR='a' junk\nLAST=yes";
        let (vars, warnings) = parse_env(text);
        assert_eq!(
            vars.into_iter().collect::<HashMap<_, _>>(),
            map(&[("OK", "1"), ("LAST", "yes")])
        );
        let lines: Vec<usize> = warnings.iter().map(|w| w.line).collect();
        assert_eq!(lines, [2, 3, 4, 5, 6]);
        assert!(warnings[0].to_string().starts_with("line 2: "));
    }

    #[test]
    fn truthy_values() {
        for v in ["1", "true", "TRUE", "Yes", "on", " on "] {
            assert!(is_truthy(v), "{v:?}");
        }
        for v in ["0", "false", "no", "off", "", "OFF", "2", "maybe"] {
            assert!(!is_truthy(v), "{v:?}");
        }
    }

    #[test]
    fn process_env_wins_over_file_and_sources_are_reported() {
        let mut env = Env::new(
            map(&[("P", "proc"), ("BOTH", "proc"), ("EMPTY", "")]),
            map(&[("F", "file"), ("BOTH", "file"), ("EMPTY", "1")]),
        );
        assert_eq!(env.get("P"), Some("proc"));
        assert_eq!(env.get("F"), Some("file"));
        assert_eq!(env.get("BOTH"), Some("proc"));
        assert_eq!(env.get("EMPTY"), Some(""), "set-but-empty still wins");
        assert_eq!(env.get("NONE"), None);
        assert_eq!(env.source("BOTH"), Some(EnvSource::ProcessEnv));
        assert_eq!(env.source("F"), Some(EnvSource::EnvFile));
        assert_eq!(env.source("NONE"), None);
        assert!(!env.flag("EMPTY"));

        env.set_file_var("K", Some("yes"));
        assert!(env.flag("K"));
        assert_eq!(env.source("K"), Some(EnvSource::EnvFile));
        env.set_file_var("K", None);
        assert!(!env.flag("K"));
        env.set_file_var("P", Some("file"));
        assert_eq!(env.get("P"), Some("proc"));
    }

    #[test]
    fn the_file_is_read_and_a_missing_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        assert!(read_env_file(&path).unwrap().is_empty());
        std::fs::write(&path, "MOLT_TEST_ONLY_IN_FILE_7f3a=1\n").unwrap();
        let env = Env::new(HashMap::new(), read_env_file(&path).unwrap());
        assert_eq!(env.get("MOLT_TEST_ONLY_IN_FILE_7f3a"), Some("1"));
        assert_eq!(
            env.source("MOLT_TEST_ONLY_IN_FILE_7f3a"),
            Some(EnvSource::EnvFile)
        );
    }

    #[test]
    fn a_file_over_the_limit_is_refused_naming_file_and_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        let line = "A=1\n";
        std::fs::write(
            &path,
            line.repeat(MAX_ENV_FILE_BYTES as usize / line.len() + 1),
        )
        .unwrap();
        for err in [
            read_env_file(&path).unwrap_err().to_string(),
            set_env_file_key(&path, "B", Some("2"))
                .unwrap_err()
                .to_string(),
        ] {
            assert!(err.contains(&*path.to_string_lossy()), "{err}");
            assert!(err.contains("65536-byte limit"), "{err}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_text_parses_to_assignments_that_write_back(text in "\\PC{0,300}") {
            // Never a panic; every value parsed is one set_env_file_key can
            // store or refuses with a reason.
            let (vars, _) = parse_env(&text);
            for (key, value) in vars {
                proptest::prop_assert!(is_valid_key(&key), "{:?}", key);
                let _ = quote_value(&key, &value);
            }
        }
    }

    #[test]
    fn set_key_replaces_in_place_and_keeps_everything_else_verbatim() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        let before = "# keep me\nexport A=1  # old\n\nmalformed line\nB=2\nA=dup\nC='x'";
        std::fs::write(&path, before).unwrap();

        set_env_file_key(&path, "A", Some("new")).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "# keep me\nexport A=new\n\nmalformed line\nB=2\nC='x'"
        );

        set_env_file_key(&path, "D", Some("with space")).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "# keep me\nexport A=new\n\nmalformed line\nB=2\nC='x'\nD='with space'\n"
        );
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn set_key_none_removes_every_line_for_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        std::fs::write(&path, "X=1\r\n# c\r\nX=2\r\nY=3\r\n").unwrap();
        set_env_file_key(&path, "X", None).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "# c\r\nY=3\r\n");
        // Removing an absent key from an absent file creates nothing.
        let other = dir.path().join("none.env");
        set_env_file_key(&other, "X", None).unwrap();
        assert!(!other.exists());
    }

    #[test]
    fn set_key_creates_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        set_env_file_key(&path, "OPENCLAW_NO_AUTO_UPDATE", Some("1")).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "OPENCLAW_NO_AUTO_UPDATE=1\n"
        );
    }

    #[test]
    fn written_values_read_back_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        for v in [
            "",
            "plain",
            "a b",
            " lead",
            "#hash",
            "x #y",
            "it's",
            "say \"hi\"",
            "'q'",
            "a=b",
        ] {
            set_env_file_key(&path, "K", Some(v)).unwrap();
            let text = std::fs::read_to_string(&path).unwrap();
            assert_eq!(
                parsed(&text).get("K").map(String::as_str),
                Some(v),
                "{text}"
            );
        }
    }

    #[test]
    fn set_key_rejects_bad_keys_and_values_without_writing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        std::fs::write(&path, "A=1\n").unwrap();
        for bad in ["", "1A", "A-B", "A B", "Ä"] {
            assert!(matches!(
                set_env_file_key(&path, bad, Some("1")),
                Err(EnvFileError::InvalidKey(_))
            ));
        }
        for bad in ["a\nB=2", "a\rb", "both ' and \""] {
            let err = set_env_file_key(&path, "A", Some(bad)).unwrap_err();
            assert!(matches!(err, EnvFileError::InvalidValue { .. }), "{err}");
            assert!(err.to_string().contains("A"));
        }
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "A=1\n");
    }
}
