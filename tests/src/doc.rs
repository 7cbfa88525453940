//! Reading `docs/` in tests: a section under a heading, its tables, the
//! backticked names in a cell and fenced code blocks. Tests that hold the
//! docs to the code parse them with these, so every check reads a table
//! the same way a person does.

use std::path::Path;

/// The text of `docs/<name>` in this workspace.
pub fn read(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../docs")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The lines under the heading whose text is `title` (any level), up to
/// the next heading of the same or a higher level. Panics naming the
/// heading when there is none, so a renamed section fails loudly.
pub fn section<'a>(doc: &'a str, title: &str) -> &'a str {
    let mut offset = 0;
    let mut start = None;
    let mut in_fence = false;
    for line in doc.split_inclusive('\n') {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
        }
        let level = heading_level(line).filter(|_| !in_fence);
        match (start, level) {
            (None, Some(level)) if line[level..].trim() == title => {
                start = Some((offset + line.len(), level));
            }
            (Some((from, own)), Some(level)) if level <= own => return &doc[from..offset],
            _ => {}
        }
        offset += line.len();
    }
    match start {
        Some((from, _)) => &doc[from..],
        None => panic!("no heading {title:?} in the doc"),
    }
}

fn heading_level(line: &str) -> Option<usize> {
    let level = line.bytes().take_while(|b| *b == b'#').count();
    (level > 0 && line[level..].starts_with(' ')).then_some(level)
}

/// A markdown table: its header cells and rows, cells trimmed, `\|`
/// read as `|`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// The column named `name`, one cell a row.
    pub fn column(&self, name: &str) -> Vec<&str> {
        let i = self
            .header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no column {name:?} in {:?}", self.header));
        self.rows.iter().map(|row| row[i].as_str()).collect()
    }
}

/// Every table in `text`, in order.
pub fn tables(text: &str) -> Vec<Table> {
    let mut tables = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let is_separator = |l: &str| {
            let cells = cells(l);
            !cells.is_empty()
                && cells
                    .iter()
                    .all(|c| !c.is_empty() && c.chars().all(|ch| "-: ".contains(ch)))
        };
        if !line.trim_start().starts_with('|') || !lines.peek().is_some_and(|l| is_separator(l)) {
            continue;
        }
        lines.next();
        let header = cells(line);
        let mut rows = Vec::new();
        while let Some(row) = lines.next_if(|l| l.trim_start().starts_with('|')) {
            let row = cells(row);
            assert_eq!(
                row.len(),
                header.len(),
                "a row of {header:?} has {} cells: {row:?}",
                row.len()
            );
            rows.push(row);
        }
        tables.push(Table { header, rows });
    }
    tables
}

/// The one table in the section under `title`.
pub fn table(doc: &str, title: &str) -> Table {
    let mut found = tables(section(doc, title));
    assert_eq!(found.len(), 1, "expected one table under {title:?}");
    found.remove(0)
}

/// The table under `title` whose header is exactly `header`.
pub fn table_with(doc: &str, title: &str, header: &[&str]) -> Table {
    tables(section(doc, title))
        .into_iter()
        .find(|t| t.header == header)
        .unwrap_or_else(|| panic!("no table {header:?} under {title:?}"))
}

fn cells(line: &str) -> Vec<String> {
    let line = line.trim();
    let line = line.strip_prefix('|').unwrap_or(line);
    let line = line.strip_suffix('|').unwrap_or(line);
    let mut cells = vec![String::new()];
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                chars.next();
                cells.last_mut().unwrap().push('|');
            }
            '|' => cells.push(String::new()),
            c => cells.last_mut().unwrap().push(c),
        }
    }
    cells.iter().map(|c| c.trim().to_owned()).collect()
}

/// The backticked spans of a cell or sentence, in order.
pub fn ticked(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

/// The bodies of the fenced code blocks marked `lang`.
pub fn code_blocks<'a>(text: &'a str, lang: &str) -> Vec<&'a str> {
    let mut blocks = Vec::new();
    let mut rest = text;
    let open = format!("```{lang}\n");
    while let Some(start) = rest.find(&open) {
        let body = &rest[start + open.len()..];
        let end = body.find("```").expect("an unclosed code block");
        blocks.push(&body[..end]);
        rest = &body[end + 3..];
    }
    blocks
}

/// The wire names of a struct's fields, as serde sees them (after
/// `rename_all`): a deserializer that records the field list serde asks
/// for and stops there. Panics for a type that is not a plain struct.
pub fn fields<'de, T: serde::Deserialize<'de>>() -> &'static [&'static str] {
    match T::deserialize(FieldNames) {
        Err(Traced::Fields(fields)) => fields,
        Err(Traced::Other(e)) => panic!("not a struct: {e}"),
        Ok(_) => panic!("not a struct"),
    }
}

struct FieldNames;

#[derive(Debug)]
enum Traced {
    Fields(&'static [&'static str]),
    Other(String),
}

impl std::fmt::Display for Traced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

impl std::error::Error for Traced {}

impl serde::de::Error for Traced {
    fn custom<M: std::fmt::Display>(msg: M) -> Self {
        Traced::Other(msg.to_string())
    }
}

impl<'de> serde::Deserializer<'de> for FieldNames {
    type Error = Traced;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Traced> {
        Err(Traced::Other("not a struct".to_owned()))
    }

    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Traced> {
        Err(Traced::Fields(fields))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

/// Whether `actual` is what `expected` shows, with placeholders for what
/// changes from run to run: `[..]` in a line stands for any text, and a
/// line `...` for any number of lines.
pub fn matches(expected: &str, actual: &str) -> bool {
    let expected: Vec<&str> = expected.lines().collect();
    let actual: Vec<&str> = actual.lines().collect();
    lines_match(&expected, &actual)
}

fn lines_match(expected: &[&str], actual: &[&str]) -> bool {
    match expected.split_first() {
        None => actual.is_empty(),
        Some((&"...", rest)) => (0..=actual.len()).any(|skip| lines_match(rest, &actual[skip..])),
        Some((line, rest)) => actual
            .split_first()
            .is_some_and(|(got, more)| line_matches(line, got) && lines_match(rest, more)),
    }
}

fn line_matches(expected: &str, actual: &str) -> bool {
    match expected.split_once("[..]") {
        None => expected == actual,
        Some((head, tail)) => actual.strip_prefix(head).is_some_and(|rest| {
            rest.char_indices()
                .map(|(i, _)| i)
                .chain([rest.len()])
                .any(|at| line_matches(tail, &rest[at..]))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "# A\n\n## B\n\n| a | b |\n| --- | --- |\n| `x` | y \\| z |\n| | w |\n\n```sh\n# not a heading\n```\n\n## C\n\n| c |\n| --- |\n| 1 |\n";

    #[test]
    fn a_section_ends_at_the_next_heading_of_its_level() {
        let b = section(DOC, "B");
        assert!(b.contains("# not a heading") && !b.contains("| c |"));
        assert!(section(DOC, "A").contains("| c |"));
    }

    #[test]
    fn tables_read_cells_with_escaped_pipes_and_empty_cells() {
        let t = table(DOC, "B");
        assert_eq!(t.header, ["a", "b"]);
        assert_eq!(t.rows, [vec!["`x`", "y | z"], vec!["", "w"]]);
        assert_eq!(ticked(&t.rows[0][0]), ["x"]);
        assert_eq!(table(DOC, "C").column("c"), ["1"]);
        assert_eq!(code_blocks(DOC, "sh"), ["# not a heading\n"]);
    }

    #[test]
    fn placeholders_stand_for_text_and_lines() {
        assert!(matches(
            "pid [..] at [..]:[..]\n",
            "pid 42 at 127.0.0.1:8080\n"
        ));
        assert!(matches("a\n...\nz\n", "a\nb\nc\nz\n"));
        assert!(matches("a\n...\nz\n", "a\nz\n"));
        assert!(!matches("a\nz\n", "a\nb\nz\n"));
        assert!(!matches("pid [..] ok", "pid 42 failed"));
    }

    #[test]
    fn fields_are_the_wire_names() {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        #[allow(dead_code)]
        struct Params {
            run_id: String,
            limit: Option<u32>,
        }
        assert_eq!(fields::<Params>(), ["runId", "limit"]);
    }
}
