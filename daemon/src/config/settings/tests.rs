use super::*;
use serde_json::json;

fn settings(v: Value) -> Settings {
    Settings::from_value(&v).unwrap()
}

fn error(v: Value) -> String {
    Settings::from_value(&v).unwrap_err().to_string()
}

#[test]
fn empty_config_gives_the_documented_defaults() {
    let s = settings(json!({}));
    assert_eq!(s, Settings::default());
    assert_eq!(s.gateway.port, 18789);
    assert_eq!(s.gateway.bind, Bind::Loopback);
    assert_eq!(s.gateway.auth_mode, AuthMode::Token);
    assert_eq!(s.gateway.auth_token, None);
    assert_eq!(s.gateway.deferral_timeout_ms, 300_000);
    assert!(s.restart_enabled);
    assert_eq!(s.update.channel, Channel::Stable);
    assert!(s.update.check_on_start);
    assert!(!s.update.auto.enabled);
    assert_eq!(s.update.auto.stable_delay, Duration::from_secs(6 * 3600));
    assert_eq!(s.update.auto.stable_jitter, Duration::from_secs(12 * 3600));
    assert_eq!(s.update.auto.beta_check_interval, Duration::from_secs(3600));
    assert_eq!(s.update.package, None);
    assert_eq!(s.update.git_build_command, None);
    assert_eq!(s.bind_addr(), IpAddr::from([127, 0, 0, 1]));
}

#[test]
fn every_key_is_read() {
    let s = settings(json!({
        "gateway": {
            "port": 0, "bind": "custom", "customBindHost": "::1",
            "auth": {"mode": "none", "token": "t0k"},
            "reload": {"deferralTimeoutMs": 0},
        },
        "commands": {"restart": false},
        "update": {
            "channel": "beta", "checkOnStart": false, "package": "@molt/moltd",
            "auto": {
                "enabled": true, "stableDelayHours": 0.001,
                "stableJitterHours": 0, "betaCheckIntervalHours": 0.5,
            },
            "git": {"buildCommand": ["cargo", "build", "--release"]},
        },
        "unknown": {"kept": "ignored"},
    }));
    assert_eq!(s.gateway.port, 0);
    assert_eq!(s.gateway.bind, Bind::Custom("::1".parse().unwrap()));
    assert_eq!(s.gateway.auth_mode, AuthMode::None);
    assert_eq!(s.gateway.auth_token.as_deref(), Some("t0k"));
    assert_eq!(s.gateway.deferral_timeout_ms, 0);
    assert!(!s.restart_enabled);
    assert_eq!(s.update.channel, Channel::Beta);
    assert!(!s.update.check_on_start);
    assert!(s.update.auto.enabled);
    assert_eq!(s.update.auto.stable_delay, Duration::from_secs_f64(3.6));
    assert_eq!(s.update.auto.stable_jitter, Duration::ZERO);
    assert_eq!(s.update.auto.beta_check_interval, Duration::from_secs(1800));
    assert_eq!(s.update.package.as_deref(), Some("@molt/moltd"));
    assert_eq!(
        s.update.git_build_command,
        Some(vec!["cargo".into(), "build".into(), "--release".into()])
    );
}

#[test]
fn bind_addresses() {
    assert_eq!(
        settings(json!({"gateway": {"bind": "lan"}})).bind_addr(),
        IpAddr::from([0, 0, 0, 0])
    );
    let custom = json!({"gateway": {"bind": "custom", "customBindHost": "10.1.2.3"}});
    assert_eq!(settings(custom).bind_addr(), IpAddr::from([10, 1, 2, 3]));
    // customBindHost only matters for custom.
    let ignored = json!({"gateway": {"bind": "loopback", "customBindHost": "not an ip"}});
    assert_eq!(settings(ignored).gateway.bind, Bind::Loopback);
}

#[test]
fn null_counts_as_absent() {
    let s = settings(json!({"gateway": {"port": null}, "update": null}));
    assert_eq!(s, Settings::default());
}

#[test]
fn integral_floats_are_integers() {
    assert_eq!(
        settings(json!({"gateway": {"port": 8080.0}})).gateway.port,
        8080
    );
}

#[test]
fn wrong_values_name_the_key_and_what_was_expected() {
    let cases = [
        (
            json!({"gateway": {"port": "abc"}}),
            "gateway.port: expected an integer 0..=65535, got \"abc\"",
        ),
        (
            json!({"gateway": {"port": 65536}}),
            "gateway.port: expected an integer 0..=65535, got 65536",
        ),
        (
            json!({"gateway": {"port": 1.5}}),
            "gateway.port: expected an integer",
        ),
        (
            json!({"gateway": {"port": -1}}),
            "gateway.port: expected an integer",
        ),
        (
            json!({"gateway": {"bind": "wan"}}),
            "gateway.bind: expected one of \"loopback\", \"lan\", \"custom\", got \"wan\"",
        ),
        (
            json!({"gateway": {"bind": "custom"}}),
            "gateway.customBindHost: expected an IP address (required when gateway.bind is \"custom\"), got nothing",
        ),
        (
            json!({"gateway": {"bind": "custom", "customBindHost": "example.com"}}),
            "gateway.customBindHost: expected an IP address",
        ),
        (
            json!({"gateway": {"auth": {"mode": "password"}}}),
            "gateway.auth.mode: expected one of \"token\", \"none\", got \"password\"",
        ),
        (
            json!({"gateway": {"auth": {"token": ""}}}),
            "gateway.auth.token: expected a non-empty string",
        ),
        (
            json!({"gateway": {"auth": {"token": 5}}}),
            "gateway.auth.token: expected a",
        ),
        (
            json!({"gateway": {"reload": {"deferralTimeoutMs": -5}}}),
            "gateway.reload.deferralTimeoutMs: expected a non-negative integer",
        ),
        (
            json!({"commands": {"restart": "yes"}}),
            "commands.restart: expected true or false, got \"yes\"",
        ),
        (
            json!({"update": {"channel": "nightly"}}),
            "update.channel: expected one of \"stable\", \"beta\", \"dev\"",
        ),
        (
            json!({"update": {"checkOnStart": 1}}),
            "update.checkOnStart: expected true or false",
        ),
        (
            json!({"update": {"auto": {"enabled": "true"}}}),
            "update.auto.enabled: expected",
        ),
        (
            json!({"update": {"auto": {"stableDelayHours": -1}}}),
            "update.auto.stableDelayHours: expected a non-negative number of hours, got -1",
        ),
        (
            json!({"update": {"auto": {"stableJitterHours": "6"}}}),
            "update.auto.stableJitterHours: expected a non-negative number",
        ),
        (
            json!({"update": {"auto": {"betaCheckIntervalHours": 0}}}),
            "update.auto.betaCheckIntervalHours: expected a positive number of hours, got 0",
        ),
        (
            json!({"update": {"auto": {"stableDelayHours": 1e300}}}),
            "update.auto.stableDelayHours: expected",
        ),
        (
            json!({"update": {"package": "Molt Daemon"}}),
            "update.package: expected an npm package name",
        ),
        (
            json!({"update": {"git": {"buildCommand": "cargo build --release"}}}),
            "update.git.buildCommand: expected an argv array of strings",
        ),
        (
            json!({"update": {"git": {"buildCommand": []}}}),
            "update.git.buildCommand",
        ),
        (
            json!({"update": {"git": {"buildCommand": ["a", 1]}}}),
            "update.git.buildCommand",
        ),
        (
            json!({"update": {"git": {"buildCommand": [""]}}}),
            "update.git.buildCommand",
        ),
        (json!({"gateway": 5}), "gateway: expected an object, got 5"),
        (
            json!({"gateway": {"auth": []}}),
            "gateway.auth: expected an object, got []",
        ),
        (json!([1]), "config: expected an object, got [1]"),
    ];
    for (value, want) in cases {
        let got = error(value.clone());
        assert!(got.starts_with(want), "{value}\n got: {got}\nwant: {want}");
    }
}

#[test]
fn plain_string_build_command_says_it_must_be_argv() {
    let err = error(json!({"update": {"git": {"buildCommand": "make"}}}));
    assert!(
        err.contains("plain command string is not accepted"),
        "{err}"
    );
}

#[test]
fn non_loopback_bind_without_auth_is_refused() {
    let err = error(json!({"gateway": {"bind": "lan", "auth": {"mode": "none"}}}));
    assert!(
        err.starts_with("gateway.auth.mode: expected \"token\""),
        "{err}"
    );
    assert!(err.contains("0.0.0.0"), "{err}");
    let custom = json!({"gateway": {
        "bind": "custom", "customBindHost": "127.0.0.2", "auth": {"mode": "none"}
    }});
    assert_eq!(settings(custom).gateway.auth_mode, AuthMode::None);
    assert_eq!(
        settings(json!({"gateway": {"auth": {"mode": "none"}}}))
            .gateway
            .auth_mode,
        AuthMode::None
    );
    let mut s = Settings::default();
    s.gateway.auth_mode = AuthMode::None;
    s.gateway.bind = Bind::Lan;
    assert!(s.check_exposure().is_err(), "flags can be re-checked");
}

#[test]
fn long_values_are_shortened_in_messages() {
    let err = error(json!({"gateway": {"port": "x".repeat(500)}}));
    assert!(err.len() < 200, "{err}");
    assert!(err.ends_with('…'), "{err}");
}

#[test]
fn npm_package_names() {
    for ok in [
        "moltd",
        "molt-daemon",
        "a.b_c",
        "@molt/moltd",
        "@a-b/c.d",
        "x1",
    ] {
        assert!(is_valid_npm_package_name(ok), "{ok}");
    }
    let long = "a".repeat(215);
    for bad in [
        "",
        "Moltd",
        "molt d",
        ".hidden",
        "_x",
        "-g",
        "--prefix=/",
        "@scope",
        "@/x",
        "@scope/",
        "@s/x/y",
        "a@1.0.0",
        "a/b",
        "ünï",
        "a:b",
        &long,
    ] {
        assert!(!is_valid_npm_package_name(bad), "{bad}");
    }
}

#[test]
fn logging_format_and_file_cap() {
    let d = settings(json!({}));
    assert_eq!(d.logging.format, LogFormat::Text);
    assert_eq!(d.logging.max_file_bytes, 32 * 1024 * 1024);
    let s = settings(json!({"logging": {"format": "json", "maxFileBytes": 2_097_152}}));
    assert_eq!(s.logging.format, LogFormat::Json);
    assert_eq!(s.logging.max_file_bytes, 2_097_152);
    assert_eq!(
        error(json!({"logging": {"format": "xml"}})),
        "logging.format: expected one of \"text\", \"json\", got \"xml\""
    );
    assert_eq!(
        error(json!({"logging": {"maxFileBytes": 1000}})),
        "logging.maxFileBytes: expected an integer 1048576..=1099511627776 (bytes), got 1000"
    );
}
