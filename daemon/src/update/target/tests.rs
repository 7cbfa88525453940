use std::path::Path;

use molt_protocol::update::{Channel, InstallMode};
use semver::Version;

use super::*;

fn v(s: &str) -> Version {
    Version::parse(s).unwrap()
}

fn tag(s: &str) -> TagSpec {
    TagSpec::DistTag(s.to_owned())
}

#[test]
fn parse_tag_accepts_versions_and_dist_tags() {
    let cases = [
        ("1.2.3", TagSpec::Version(v("1.2.3"))),
        ("v1.2.3", TagSpec::Version(v("1.2.3"))),
        ("0.0.0", TagSpec::Version(v("0.0.0"))),
        ("2.0.0-beta.1", TagSpec::Version(v("2.0.0-beta.1"))),
        (
            "v2.0.0-rc.1+build.5",
            TagSpec::Version(v("2.0.0-rc.1+build.5")),
        ),
        ("2026.9.6", TagSpec::Version(v("2026.9.6"))),
        ("latest", tag("latest")),
        ("beta", tag("beta")),
        ("next", tag("next")),
        ("vnext", tag("vnext")),
        ("v", tag("v")),
        ("canary-2024.1", tag("canary-2024.1")),
        ("release_candidate", tag("release_candidate")),
        ("1-2", tag("1-2")),           // npm: not a range
        ("01", tag("01")),             // leading zero: not a range
        ("1.2-beta", tag("1.2-beta")), // prerelease needs three parts
        (&"a".repeat(64), tag(&"a".repeat(64))),
    ];
    for (input, want) in cases {
        assert_eq!(parse_tag(input), Ok(want), "{input}");
    }
}

#[test]
fn parse_tag_rejects_bad_input_naming_it() {
    let cases: &[(&str, &str)] = &[
        ("", "it is empty"),
        ("-latest", "must not start with '-'"),
        ("--registry=http://evil", "must not start with '-'"),
        ("-1.2.3", "must not start with '-'"),
        ("beta ", "whitespace"),
        (" 1.2.3", "whitespace"),
        ("be\tta", "whitespace"),
        ("beta\n", "whitespace"),
        ("a/b", "contains '/'"),
        ("../../etc", "contains '/'"),
        ("git:main", "contains ':'"),
        ("1.2.3;rm", "shell metacharacter ';'"),
        ("$(id)", "shell metacharacter '$'"),
        ("`id`", "shell metacharacter '`'"),
        ("a|b", "shell metacharacter '|'"),
        ("a&b", "shell metacharacter '&'"),
        ("a>b", "shell metacharacter '>'"),
        ("*", "shell metacharacter '*'"),
        ("^1.2.3", "shell metacharacter '^'"),
        ("~1.2.3", "shell metacharacter '~'"),
        (">=1.0.0", "shell metacharacter '>'"),
        ("pkg@1.0.0", "shell metacharacter '@'"),
        ("Beta", "expected an exact version"),
        ("V1.2.3", "expected an exact version"),
        ("_beta", "expected an exact version"),
        (".beta", "expected an exact version"),
        ("béta", "expected an exact version"),
        ("a+b", "expected an exact version"),
        ("1.2.3-", "looks like a version but is not valid semver"),
        ("1.2.3.4", "looks like a version but is not valid semver"),
        ("v01.2.3", "looks like a version but is not valid semver"),
        (
            "1.2.3-beta_1",
            "looks like a version but is not valid semver",
        ),
        ("1.2.3+", "looks like a version but is not valid semver"),
        ("1", "version range"),
        ("1.2", "version range"),
        ("1.x", "version range"),
        ("1.2.x", "version range"),
        ("x", "version range"),
        ("x.x.x", "version range"),
        ("v1", "version range"),
        ("vv1.x", "version range"),
        ("1.2.x-beta", "version range"),
        ("0", "version range"),
        (&"a".repeat(65), "at most 64 characters"),
        (&"1".repeat(300), "too long"),
    ];
    for (input, reason) in cases {
        let err = parse_tag(input).expect_err(input);
        let msg = err.to_string();
        assert!(msg.contains(reason), "{input:?}: {msg}");
        let shown: String = format!("{input:?}").chars().take(40).collect();
        assert!(
            msg.contains(shown.trim_end_matches('"')),
            "{input:?} not named in: {msg}"
        );
    }
}

#[test]
fn tag_spec_displays_as_given() {
    assert_eq!(parse_tag("v1.2.3").unwrap().to_string(), "1.2.3");
    assert_eq!(parse_tag("beta").unwrap().to_string(), "beta");
}

fn meta(tags: &[(&str, &str)], versions: &[&str]) -> Metadata {
    Metadata {
        dist_tags: tags.iter().map(|(t, x)| ((*t).to_owned(), v(x))).collect(),
        versions: versions.iter().map(|x| v(x)).collect(),
    }
}

/// name, channel, tag, metadata, the version or an error substring.
type ResolveCase = (
    &'static str,
    Channel,
    Option<TagSpec>,
    Metadata,
    Result<&'static str, &'static str>,
);

#[test]
fn resolve_table() {
    use Channel::{Beta, Dev, Stable};
    let all = [
        "1.0.0",
        "1.1.0",
        "1.2.0-rc.1",
        "1.2.0",
        "2.0.0-beta.1",
        "2.0.0-beta.2",
    ];
    let cases: Vec<ResolveCase> = vec![
        (
            "stable → latest",
            Stable,
            None,
            meta(&[("latest", "1.1.0"), ("beta", "2.0.0-beta.1")], &all),
            Ok("1.1.0"),
        ),
        (
            "stable without latest",
            Stable,
            None,
            meta(&[("beta", "2.0.0-beta.1")], &all),
            Err("no dist-tag latest is published (dist-tags: beta)"),
        ),
        (
            "beta newer than latest → beta",
            Beta,
            None,
            meta(&[("latest", "1.1.0"), ("beta", "2.0.0-beta.1")], &all),
            Ok("2.0.0-beta.1"),
        ),
        (
            "beta equal to latest → that version",
            Beta,
            None,
            meta(&[("latest", "1.1.0"), ("beta", "1.1.0")], &all),
            Ok("1.1.0"),
        ),
        (
            "beta older than latest → latest",
            Beta,
            None,
            meta(&[("latest", "1.2.0"), ("beta", "1.1.0")], &all),
            Ok("1.2.0"),
        ),
        (
            "beta a prerelease of latest → latest",
            Beta,
            None,
            meta(&[("latest", "1.2.0"), ("beta", "1.2.0-rc.1")], &all),
            Ok("1.2.0"),
        ),
        (
            "beta prerelease above latest → beta",
            Beta,
            None,
            meta(&[("latest", "1.2.0"), ("beta", "2.0.0-beta.1")], &all),
            Ok("2.0.0-beta.1"),
        ),
        (
            "beta missing → latest",
            Beta,
            None,
            meta(&[("latest", "1.1.0")], &all),
            Ok("1.1.0"),
        ),
        (
            "beta without latest → beta",
            Beta,
            None,
            meta(&[("beta", "2.0.0-beta.2")], &all),
            Ok("2.0.0-beta.2"),
        ),
        (
            "beta and latest both missing",
            Beta,
            None,
            meta(&[("next", "2.0.0-beta.2")], &all),
            Err("no dist-tag latest is published (dist-tags: next)"),
        ),
        (
            "dev is git only",
            Dev,
            None,
            meta(&[("latest", "1.1.0")], &all),
            Err("the dev channel follows git main"),
        ),
        (
            "tag version wins over channel (downgrade)",
            Stable,
            Some(TagSpec::Version(v("1.0.0"))),
            meta(&[("latest", "1.2.0")], &all),
            Ok("1.0.0"),
        ),
        (
            "tag version wins over beta",
            Beta,
            Some(TagSpec::Version(v("1.1.0"))),
            meta(&[("latest", "1.2.0"), ("beta", "2.0.0-beta.2")], &all),
            Ok("1.1.0"),
        ),
        (
            "tag version wins over dev",
            Dev,
            Some(TagSpec::Version(v("1.1.0"))),
            meta(&[("latest", "1.2.0")], &all),
            Ok("1.1.0"),
        ),
        (
            "tag prerelease version",
            Stable,
            Some(TagSpec::Version(v("2.0.0-beta.1"))),
            meta(&[("latest", "1.2.0")], &all),
            Ok("2.0.0-beta.1"),
        ),
        (
            "tag version not published",
            Stable,
            Some(TagSpec::Version(v("9.9.9"))),
            meta(&[("latest", "1.2.0")], &all),
            Err("version 9.9.9 is not published (latest is 1.2.0)"),
        ),
        (
            "tag version not published, no latest",
            Stable,
            Some(TagSpec::Version(v("9.9.9"))),
            meta(&[], &all),
            Err("version 9.9.9 is not published (no latest dist-tag)"),
        ),
        (
            "tag version differs in build metadata",
            Stable,
            Some(TagSpec::Version(v("1.0.0+b1"))),
            meta(&[("latest", "1.2.0")], &all),
            Err("version 1.0.0+b1 is not published"),
        ),
        (
            "dist-tag wins over channel",
            Stable,
            Some(tag("beta")),
            meta(&[("latest", "1.2.0"), ("beta", "2.0.0-beta.2")], &all),
            Ok("2.0.0-beta.2"),
        ),
        (
            "dist-tag older than latest is honoured",
            Beta,
            Some(tag("beta")),
            meta(&[("latest", "1.2.0"), ("beta", "1.0.0")], &all),
            Ok("1.0.0"),
        ),
        (
            "custom dist-tag",
            Stable,
            Some(tag("next")),
            meta(&[("latest", "1.2.0"), ("next", "2.0.0-beta.1")], &all),
            Ok("2.0.0-beta.1"),
        ),
        (
            "dist-tag missing",
            Stable,
            Some(tag("nightly")),
            meta(&[("latest", "1.2.0"), ("beta", "2.0.0-beta.1")], &all),
            Err("no dist-tag nightly is published (dist-tags: beta, latest)"),
        ),
        (
            "dist-tag naming a missing version",
            Stable,
            None,
            meta(&[("latest", "3.0.0")], &all),
            Err("dist-tag latest points at 3.0.0, which is not a published version"),
        ),
        (
            "no dist-tags at all",
            Stable,
            None,
            meta(&[], &all),
            Err("no dist-tag latest is published (dist-tags: none)"),
        ),
    ];
    for (name, channel, tag, meta, want) in cases {
        let got = resolve(channel, tag.as_ref(), &meta);
        match (got, want) {
            (Ok(got), Ok(want)) => assert_eq!(got, v(want), "{name}"),
            (Err(e), Err(want)) => {
                assert!(e.to_string().contains(want), "{name}: {e}")
            }
            (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn errors_can_name_the_package() {
    let m = meta(&[("latest", "1.2.0")], &["1.2.0"]);
    let err = resolve(Channel::Stable, Some(&tag("beta")), &m)
        .unwrap_err()
        .in_package("@molt/moltd");
    assert_eq!(
        err.to_string(),
        "package @molt/moltd: no dist-tag beta is published (dist-tags: latest)"
    );
}

#[test]
fn metadata_commands() {
    let argv = |mode, tool: &str| metadata_argv(mode, Path::new(tool), "@molt/moltd");
    assert_eq!(
        argv(InstallMode::Npm, "/usr/bin/npm"),
        [
            "/usr/bin/npm",
            "view",
            "--json",
            "--",
            "@molt/moltd",
            "dist-tags",
            "versions"
        ]
    );
    assert_eq!(
        argv(InstallMode::Pnpm, "/opt/pnpm/pnpm"),
        [
            "/opt/pnpm/pnpm",
            "view",
            "--json",
            "--",
            "@molt/moltd",
            "dist-tags",
            "versions"
        ]
    );
    assert_eq!(
        argv(InstallMode::Bun, "/root/.bun/bin/bun"),
        [
            "/root/.bun/bin/bun",
            "info",
            "--json",
            "--",
            "@molt/moltd",
            "dist-tags",
            "versions"
        ]
    );
    for mode in [
        InstallMode::Git,
        InstallMode::Unmanaged,
        InstallMode::External,
        InstallMode::Unknown,
    ] {
        assert!(argv(mode, "/usr/bin/git").is_empty(), "{mode:?}");
    }
}

/// Output of `npm view --json -- @molt/moltd dist-tags versions` (npm 11.19
/// against verdaccio); pnpm 10 prints the same (it runs npm), and so does
/// `bun info --json` 1.4.5.
const NPM_OUTPUT: &str = r#"{
  "dist-tags": {
    "latest": "1.1.0",
    "beta": "2.0.0-beta.1"
  },
  "versions": [
    "1.0.0",
    "1.1.0",
    "2.0.0-beta.1"
  ]
}
"#;

#[test]
fn parse_metadata_of_every_manager() {
    let want = meta(
        &[("latest", "1.1.0"), ("beta", "2.0.0-beta.1")],
        &["1.0.0", "1.1.0", "2.0.0-beta.1"],
    );
    for mode in [InstallMode::Npm, InstallMode::Pnpm, InstallMode::Bun] {
        assert_eq!(
            parse_metadata(mode, NPM_OUTPUT),
            Ok(want.clone()),
            "{mode:?}"
        );
    }
}

#[test]
fn parse_metadata_single_version_as_string_or_array() {
    let want = meta(&[("latest", "1.0.0")], &["1.0.0"]);
    for out in [
        r#"{"dist-tags":{"latest":"1.0.0"},"versions":"1.0.0"}"#,
        r#"{"dist-tags":{"latest":"1.0.0"},"versions":["1.0.0"]}"#,
    ] {
        assert_eq!(
            parse_metadata(InstallMode::Npm, out),
            Ok(want.clone()),
            "{out}"
        );
    }
}

#[test]
fn parse_metadata_skips_entries_that_are_not_semver() {
    let out = r#"{"dist-tags":{"latest":"1.0.0","odd":"banana","num":7},
                  "versions":["1.0.0","banana",7,"2.0"]}"#;
    assert_eq!(
        parse_metadata(InstallMode::Bun, out),
        Ok(meta(&[("latest", "1.0.0")], &["1.0.0"]))
    );
}

#[test]
fn parse_metadata_reports_registry_errors() {
    // npm 11 / pnpm 10 on a missing package, exit status 1.
    let out = r#"{
  "error": {
    "code": "E404",
    "summary": "Not Found - GET http://127.0.0.1:4873/@molt%2fnope - no such package available",
    "detail": "The requested resource '@molt/nope@*' could not be found."
  }
}"#;
    let err = parse_metadata(InstallMode::Pnpm, out).unwrap_err();
    assert!(
        matches!(err, TargetError::Registry { ref code, .. } if code == "E404"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "pnpm: registry error E404: Not Found - GET http://127.0.0.1:4873/@molt%2fnope - no such package available"
    );
}

#[test]
fn parse_metadata_rejects_unexpected_output() {
    let cases = [
        ("", "no output"),
        ("  \n", "no output"),
        ("npm WARN something", "not JSON"),
        ("[1,2]", "not a JSON object"),
        (r#"{"dist-tags":{}}"#, "no \"versions\""),
        (
            r#"{"versions":{"1.0.0":{}}}"#,
            "neither a string nor an array",
        ),
        (r#"{"versions":[]}"#, "no valid semver versions"),
        (
            r#"{"versions":["1.0.0"],"dist-tags":[]}"#,
            "\"dist-tags\" is not an object",
        ),
    ];
    for (out, want) in cases {
        let err = parse_metadata(InstallMode::Npm, out)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("npm: unexpected metadata output"),
            "{out:?}: {err}"
        );
        assert!(err.contains(want), "{out:?}: {err}");
    }
    let err = parse_metadata(InstallMode::Git, NPM_OUTPUT).unwrap_err();
    assert_eq!(err, TargetError::UnsupportedMode { mode: "git" });
}
