//! docs/protocol.md against the code: the method table and the `hello-ok`
//! example name exactly what this version serves, with each method's
//! scope. A method or event added without the doc fails here.

use molt_daemon::methods::SERVED;
use molt_protocol::Method;
use molt_protocol::event::EventName;
use molt_protocol::scope::Scope;

const DOC: &str = include_str!("../../docs/protocol.md");

/// The `| `name` | scope | yes |` rows of the Scopes section.
fn method_rows() -> Vec<(String, String)> {
    DOC.lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            match cells.as_slice() {
                ["", name, scope @ ("read" | "admin"), "yes", ""] => {
                    Some((name.trim_matches('`').to_owned(), (*scope).to_owned()))
                }
                _ => None,
            }
        })
        .collect()
}

/// The JSON array after `"<key>": [` in the `hello-ok` example.
fn example_list(key: &str) -> Vec<String> {
    let start = DOC
        .find(&format!("\"{key}\": ["))
        .unwrap_or_else(|| panic!("no {key} in the hello-ok example"));
    let rest = &DOC[start..];
    let list = &rest[rest.find('[').unwrap()..=rest.find(']').unwrap()];
    serde_json::from_str(list).unwrap_or_else(|e| panic!("{key}: {e}: {list}"))
}

#[test]
fn the_method_table_names_every_served_method_with_its_scope() {
    let scope = |m: &Method| match m.required_scope() {
        Scope::Read => "read",
        Scope::Admin => "admin",
    };
    let mut documented = method_rows();
    documented.sort();
    let mut served: Vec<(String, String)> = SERVED
        .iter()
        .map(|m| (m.as_str().to_owned(), scope(m).to_owned()))
        .collect();
    served.sort();
    assert_eq!(documented, served);
}

#[test]
fn the_hello_ok_example_lists_what_hello_ok_sends() {
    let methods: Vec<String> = SERVED.iter().map(|m| m.as_str().to_owned()).collect();
    assert_eq!(example_list("methods"), methods);
    let events: Vec<String> = EventName::ALL
        .iter()
        .map(|e| e.as_str().to_owned())
        .collect();
    assert_eq!(example_list("events"), events);
}
