//! The ```console examples in docs/console.md, run: each block against a
//! fresh real moltd (its own state dir, port 0), each `$ molt …` line
//! with the real `molt`, which finds the daemon through
//! `OPENCLAW_STATE_DIR` as the doc says. What follows a command is its
//! stdout then its stderr; `[..]` stands for any text in a line and a
//! line `...` for any lines; `? N` is the exit code (0 when absent).

mod support;

use molt_e2e::doc;
use support::{Daemon, molt};

const DOC: &str = include_str!("../../docs/console.md");

/// One `$ molt …` line and what the doc shows for it.
struct Example {
    args: Vec<String>,
    output: String,
    code: i32,
}

fn examples(block: &str) -> Vec<Example> {
    let mut examples: Vec<Example> = Vec::new();
    for line in block.lines() {
        if let Some(command) = line.strip_prefix("$ ") {
            let args = split(command);
            assert_eq!(args[0], "molt", "only molt runs in the examples: {line}");
            examples.push(Example {
                args: args[1..].to_vec(),
                output: String::new(),
                code: 0,
            });
            continue;
        }
        let example = examples.last_mut().expect("a block starts with a command");
        match line.strip_prefix("? ") {
            Some(code) => example.code = code.parse().expect("an exit code"),
            None => {
                example.output.push_str(line);
                example.output.push('\n');
            }
        }
    }
    examples
}

/// Words as a shell splits them, with "double quotes".
fn split(command: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    for c in command.chars() {
        match c {
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

#[test]
fn the_cli_examples_in_console_md_do_what_they_show() {
    let blocks = doc::code_blocks(DOC, "console");
    assert!(
        !blocks.is_empty(),
        "docs/console.md has no ```console examples"
    );
    let mut ran = 0;
    for block in blocks {
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("state");
        let _daemon = Daemon::start(&state);
        for example in examples(block) {
            let out = molt()
                .args(&example.args)
                .env("OPENCLAW_STATE_DIR", &state)
                .output()
                .unwrap();
            let actual = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            let shown = format!("$ molt {}", example.args.join(" "));
            assert!(
                doc::matches(&example.output, &actual),
                "{shown}\n--- the doc shows:\n{}--- molt printed:\n{actual}",
                example.output
            );
            assert_eq!(out.status.code(), Some(example.code), "{shown}\n{actual}");
            ran += 1;
        }
    }
    assert!(ran >= 5, "only {ran} examples");
}
