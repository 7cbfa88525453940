//! The contracts moltd and molt share outside the wire frames: the state
//! dir rule, `gateway.lock`, the config's port, close codes, the READY line
//! and the update tag. Table tests; each row is a case one side relied on.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use molt_protocol::close::{self, CloseKind};
use molt_protocol::lock::{LockContent, LockRecord};
use molt_protocol::ready::ReadyLine;
use molt_protocol::state::{self, NoHome};
use molt_protocol::tag::{TagSpec, parse_tag};
use serde_json::json;

const HOME: &str = "/home/op";

fn home() -> Option<&'static Path> {
    Some(Path::new(HOME))
}

#[test]
fn state_dir_flag_then_env_then_home_with_tilde_expanded() {
    let cases: &[(Option<&str>, Option<&str>, &str)] = &[
        (None, None, "/home/op/.openclaw"),
        (None, Some(""), "/home/op/.openclaw"),
        (None, Some("/srv/molt"), "/srv/molt"),
        (None, Some("~/state"), "/home/op/state"),
        (None, Some("~"), "/home/op"),
        (Some("/flag"), Some("/srv/molt"), "/flag"),
        (Some("~/flag"), None, "/home/op/flag"),
        (Some("rel/dir"), None, "rel/dir"),
        // Only a whole leading component is the home directory.
        (Some("~op/x"), None, "~op/x"),
    ];
    for (flag, env, want) in cases {
        let got = state::state_dir(flag.map(Path::new), env.map(OsStr::new), home()).unwrap();
        assert_eq!(got, PathBuf::from(want), "flag {flag:?} env {env:?}");
    }
    assert_eq!(state::state_dir(None, None, None), Err(NoHome));
    assert_eq!(
        state::state_dir(Some(Path::new("~/x")), None, None),
        Err(NoHome)
    );
    assert!(NoHome.to_string().contains("OPENCLAW_STATE_DIR"));
}

#[test]
fn config_path_env_wins_and_expands() {
    let state_dir = Path::new("/flag");
    let cases: &[(Option<&str>, &str)] = &[
        (None, "/flag/openclaw.json"),
        (Some(""), "/flag/openclaw.json"),
        (Some("/etc/molt.json"), "/etc/molt.json"),
        (Some("~/c.json"), "/home/op/c.json"),
    ];
    for (env, want) in cases {
        let got = state::config_path(state_dir, env.map(OsStr::new), home()).unwrap();
        assert_eq!(got, PathBuf::from(want), "{env:?}");
    }
}

#[test]
fn ports_are_integers_also_written_as_whole_floats() {
    let ok = [
        (json!(18789), 18789),
        (json!(18790.0), 18790),
        (json!(0), 0),
        (json!(65535), 65535),
        (json!(65535.0), 65535),
    ];
    for (value, want) in ok {
        assert_eq!(state::parse_port(&value), Ok(want), "{value}");
    }
    for bad in [
        json!(65536),
        json!(1.5),
        json!(-1),
        json!(-1.0),
        json!("18789"),
        json!(true),
        json!(null),
        json!(1e300),
    ] {
        let err = state::parse_port(&bad).unwrap_err();
        assert!(err.to_string().contains("0..=65535"), "{bad}: {err}");
    }
}

#[test]
fn lock_records_round_trip_and_are_read_leniently() {
    let record = LockRecord {
        pid: 4242,
        started_at: 1_700_000_000_000,
        port: 18789,
        version: "1.2.3".into(),
    };
    let text = record.to_json();
    assert_eq!(
        text,
        r#"{"pid":4242,"startedAt":1700000000000,"port":18789,"version":"1.2.3"}"#
    );
    assert_eq!(
        LockRecord::parse(text.as_bytes()),
        Ok(LockContent::Record(record.clone()))
    );
    assert_eq!(record.bound_port(), Some(18789));
    let unbound = LockRecord { port: 0, ..record };
    assert_eq!(unbound.bound_port(), None);
    assert_eq!(LockRecord::parse(b" \n"), Ok(LockContent::Empty));
    let err = LockRecord::parse(b"{pid: oops").unwrap_err();
    assert!(err.contains("not a valid lock record"), "{err}");
    assert_eq!(
        LockRecord::holder(br#"{"pid": 7, "port": 0}"#),
        (Some(7), None)
    );
    assert_eq!(LockRecord::holder(b"garbage"), (None, None));
}

#[test]
fn ready_lines_print_and_parse() {
    let line = ReadyLine {
        addr: "127.0.0.1:41234".into(),
        version: "0.2.0".into(),
        pid: 5151,
    };
    assert_eq!(line.to_string(), "READY 127.0.0.1:41234 0.2.0 5151");
    assert_eq!(ReadyLine::parse(&line.to_string()), Some(line.clone()));
    assert_eq!(
        ReadyLine::parse("READY 127.0.0.1:41234 0.2.0 5151\n"),
        Some(line.clone())
    );
    assert_eq!(line.url(), "ws://127.0.0.1:41234");
    for other in [
        "",
        "READY",
        "READY a b",
        "READY a b c d",
        "INFO READY a b 1",
    ] {
        assert_eq!(ReadyLine::parse(other), None, "{other}");
    }
}

#[test]
fn close_codes_have_one_meaning() {
    let kinds = [
        (close::NORMAL, CloseKind::Normal),
        (close::GOING_AWAY, CloseKind::Stopping),
        (close::ABNORMAL, CloseKind::Dropped),
        (close::POLICY, CloseKind::Refused),
        (close::TOO_BIG, CloseKind::TooBig),
        (close::SERVICE_RESTART, CloseKind::HandOff),
        (close::TICK_TIMEOUT, CloseKind::Silent),
        (1011, CloseKind::Other),
    ];
    for (code, kind) in kinds {
        assert_eq!(CloseKind::of(code), kind, "{code}");
    }
    assert_eq!((close::SERVICE_RESTART, close::GOING_AWAY), (1012, 1001));
}

#[test]
fn tags_are_exact_versions_or_npm_dist_tags() {
    let version = |s: &str| TagSpec::Version(semver::Version::parse(s).unwrap());
    let dist = |s: &str| TagSpec::DistTag(s.to_owned());
    let ok = [
        ("1.2.3", version("1.2.3")),
        ("v1.2.3-beta.1", version("1.2.3-beta.1")),
        ("2026.9.6", version("2026.9.6")),
        ("1.0.0+build.5", version("1.0.0+build.5")),
        ("latest", dist("latest")),
        ("next_2", dist("next_2")),
    ];
    for (input, want) in ok {
        assert_eq!(parse_tag(input), Ok(want), "{input}");
    }
    for (bad, reason) in [
        ("", "empty"),
        ("-rf", "'-'"),
        ("1.2 3", "whitespace"),
        ("a;b", "';'"),
        ("$(x)", "'$'"),
        ("Beta", "expected an exact version"),
        ("1.2", "version range"),
    ] {
        let err = parse_tag(bad).unwrap_err();
        assert!(err.to_string().contains(reason), "{bad}: {err}");
        assert!(
            err.to_string().starts_with("invalid version or dist-tag"),
            "{err}"
        );
    }
    assert!(parse_tag(&"9".repeat(65)).is_err());
}

/// The changelog moltd shows after an update is the repository's own:
/// it parses, its newest release is the version this workspace builds,
/// releases run newest first, and the first release calls out what a
/// client sees.
#[test]
fn the_changelog_parses_and_starts_at_the_version_built() {
    use molt_protocol::changelog;
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../CHANGELOG.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let releases = changelog::releases(&text);
    let versions: Vec<String> = releases.iter().map(|r| r.version.to_string()).collect();
    assert_eq!(
        versions.first().map(String::as_str),
        Some(env!("CARGO_PKG_VERSION")),
        "{versions:?}"
    );
    assert!(
        releases.windows(2).all(|w| w[0].version > w[1].version),
        "newest first, each once: {versions:?}"
    );
    let first = changelog::between(
        &text,
        None,
        releases.last().unwrap().version.to_string().as_str(),
    );
    assert_eq!(first.problem, None);
    assert!(first.entries[0].protocol, "{:?}", first.entries[0]);
    assert!(!first.truncated, "within the bounds moltd keeps");
}
