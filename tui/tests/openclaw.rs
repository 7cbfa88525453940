//! `molt` against real OpenClaw gateways: the pinned `openclaw` npm
//! packages (2026.4.26 and 2026.9.6, installed by
//! `scripts/install-test-tools.sh`) run with node 24 in a scratch `HOME`.
//!
//! Its own test binary: a gateway takes 5–30 s to listen and ~500 MB, and
//! the update test installs OpenClaw through a real registry and follows a
//! restart that was measured at two minutes dark. The rest of the suite
//! does not wait for it.

mod support;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use molt_e2e::Tools;
use molt_e2e::openclaw::{self, Gateway, Install, NEW_OPENCLAW, OLD_OPENCLAW, TOKEN};
use serde_json::Value;
use support::pty::Console;

/// A gateway redraws slowly under load; generous, never a sleep.
const SCREEN_PATIENCE: Duration = Duration::from_secs(90);

fn molt(gateway: &Gateway, args: &[&str]) -> Output {
    support::molt()
        .args(["--url", &gateway.url(), "--token", TOKEN])
        .args(args)
        .output()
        .unwrap()
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", text(out)))
}

/// `molt status --json` once the gateway answers it: a gateway that just
/// came back may still refuse the handshake while it finishes starting.
fn status_json(gateway: &Gateway) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let out = molt(gateway, &["status", "--json"]);
        if out.status.success() {
            return json_of(&out);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "molt status kept failing:\n{}\n{}",
            text(&out),
            gateway.output()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// What the process answering now says it runs (`hello-ok.server.version`),
/// read with the client library: independent of `molt update`'s verdict,
/// and answered even when the gateway fails its `status` (old code over a
/// new tree cannot load its chunks).
fn hello_version(gateway: &Gateway) -> String {
    use molt_console::client::{Client, ClientMode, ConnectOptions};
    let options = ConnectOptions::new(gateway.url(), Some(TOKEN.to_owned()), ClientMode::Cli);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    runtime.block_on(async {
        loop {
            match Client::connect(&options).await {
                Ok((client, _events)) => {
                    let version = client.hello().server.version.clone();
                    client.close().await;
                    return version.expect("hello-ok names a version");
                }
                Err(e) if std::time::Instant::now() < deadline => {
                    eprintln!("not yet: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => panic!("no hello-ok: {e}\n{}", gateway.output()),
            }
        }
    })
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn console(gateway: &Gateway, rows: u16, cols: u16) -> Console {
    let url = gateway.url();
    Console::start_with(rows, cols, &["--url", &url, "--token", TOKEN], &[])
}

fn count(screen: &str, needle: &str) -> usize {
    screen.lines().filter(|l| l.contains(needle)).count()
}

fn write_config(home: &Path, config: Value) {
    let dir = home.join(".openclaw");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("openclaw.json"), config.to_string()).unwrap();
}

#[test]
fn status_and_the_console_on_openclaw_2026_4() {
    let tools = Tools::locate().unwrap();
    let install = Install::locate(OLD_OPENCLAW).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let gateway = Gateway::start(&tools, &install.entry, &home, &[]).unwrap();
    eprintln!(
        "openclaw {OLD_OPENCLAW} listened after {:?}",
        gateway.startup
    );

    // The handshake OpenClaw refused before (client.id molt-console).
    let out = molt(&gateway, &["status", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let status = json_of(&out);
    assert_eq!(status["runtimeVersion"], OLD_OPENCLAW, "{status:#}");
    let out = molt(&gateway, &["status"]);
    assert!(out.status.success(), "{}", text(&out));
    let summary = String::from_utf8_lossy(&out.stdout);
    let first = summary.lines().next().unwrap();
    assert!(
        first.starts_with(&format!(
            "openclaw {OLD_OPENCLAW} (pid not reported) at {}, up ",
            gateway.url()
        )),
        "{summary}"
    );
    for line in [
        "install      unknown",
        "restart      unknown",
        "kill switch  not reported by this gateway",
    ] {
        assert_eq!(count(&summary, line), 1, "{line}\n{summary}");
    }

    let mut c = console(&gateway, 24, 80);
    c.wait_for_within("the overview of 2026.4.26", SCREEN_PATIENCE, |s| {
        s.contains(&format!("openclaw {OLD_OPENCLAW}  protocol 3"))
            && s.contains(&format!("version      {OLD_OPENCLAW}"))
    });
    let screen = c.text();
    for line in [
        "connected",
        "pid          unknown, up ",
        "listen       unknown",
        "strategy     unknown",
        "kill switch  not reported by this gateway",
    ] {
        assert_eq!(count(&screen, line), 1, "{line}\n{screen}");
    }
    c.press("2");
    c.wait_for("the Update screen of the in-gateway generation", |s| {
        s.contains("OpenClaw installs the new version inside the running")
    });
    c.press("3");
    c.wait_for("History saying what it cannot show", |s| {
        s.contains("keeps no update history")
    });
    c.press("4");
    c.wait_for("Config", |s| s.contains("kill switch       not reported"));
    for _ in 0..3 {
        c.press("j");
    }
    c.press("\r");
    c.wait_for("where and how to set the kill switch", |s| {
        s.contains("OPENCLAW_NO_AUTO_UPDATE=1 in the gateway's environment")
    });
    c.press("q");
    assert!(c.child.wait().unwrap().success());
}

#[test]
fn status_the_console_and_config_on_openclaw_2026_9_with_the_kill_switch_set() {
    let tools = Tools::locate().unwrap();
    let install = Install::locate(NEW_OPENCLAW).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    // Automatic updates on in the config, blocked in the gateway's env.
    write_config(
        &home,
        serde_json::json!({"update": {"channel": "stable", "auto": {"enabled": true}}}),
    );
    let env = [("OPENCLAW_NO_AUTO_UPDATE".to_owned(), "1".into())];
    let gateway = Gateway::start(&tools, &install.entry, &home, &env).unwrap();
    eprintln!(
        "openclaw {NEW_OPENCLAW} listened after {:?}",
        gateway.startup
    );

    // The gateway publishes its update schedule (in `hello-ok`) when its
    // start-up update step runs, a while after it accepts clients: wait
    // until the summary shows one.
    let deadline = std::time::Instant::now() + SCREEN_PATIENCE;
    while String::from_utf8_lossy(&molt(&gateway, &["status"]).stdout)
        .contains("auto-update  unknown")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no update schedule reported"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let out = molt(&gateway, &["status", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let status = json_of(&out);
    assert_eq!(status["runtimeVersion"], NEW_OPENCLAW, "{status:#}");
    assert_eq!(status["pid"], gateway.pid(), "{status:#}");
    let out = molt(&gateway, &["status"]);
    let summary = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        summary.starts_with(&format!(
            "openclaw {NEW_OPENCLAW} (pid {}) at {}",
            gateway.pid(),
            gateway.url()
        )),
        "{summary}"
    );
    let boot = summary
        .lines()
        .find_map(|l| l.strip_prefix("boot id      "))
        .unwrap_or_else(|| panic!("a boot id in\n{summary}"))
        .to_owned();
    // With OPENCLAW_NO_AUTO_UPDATE set, 2026.9.6's schedule says off.
    assert!(
        summary.contains("auto-update  disabled, channel stable"),
        "{summary}"
    );

    let mut c = console(&gateway, 40, 120);
    c.wait_for_within("the overview of 2026.9.6", SCREEN_PATIENCE, |s| {
        s.contains(&format!("pid          {},", gateway.pid())) && s.contains("boot id")
    });
    let screen = c.text();
    for line in [
        format!("openclaw {NEW_OPENCLAW}  protocol 4"),
        format!("version      {NEW_OPENCLAW}"),
        format!("boot id      {boot}"),
        "auto-update  disabled, channel stable".to_owned(),
        "kill switch  not reported by this gateway".to_owned(),
    ] {
        assert_eq!(count(&screen, &line), 1, "{line}\n{screen}");
    }
    c.press("4");
    c.wait_for("Config with auto-update configured but not in force", |s| {
        s.contains("auto-update       on")
            && s.contains("the gateway's schedule says automatic updates are off")
    });
    // The channel through config.patch with the hash it was read at.
    c.press("j");
    c.press("\r");
    c.wait_for("the saved channel", |s| {
        s.contains("channel           beta") && s.contains("saved")
    });
    c.press("q");
    assert!(c.child.wait().unwrap().success());
    let out = molt(&gateway, &["config", "get", "update.channel", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(json_of(&out), "beta", "{}", text(&out));

    // A local (not global) install: OpenClaw refuses to update it, and
    // molt says so on stdout for scripts, with OpenClaw's reason.
    let out = molt(&gateway, &["update", "--yes", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let outcome = json_of(&out);
    assert_eq!(outcome["ok"], false, "{outcome:#}");
    assert_eq!(outcome["gateway"], "openclaw", "{outcome:#}");
    assert!(
        outcome["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{outcome:#}"
    );
}

/// OpenClaw 2026.4.26 installed globally from a real registry (verdaccio:
/// the pinned `openclaw` tarballs, everything else proxied from the public
/// registry), updated with `molt update`, followed through its restart to
/// the version the new process reports; then restarted by the operator
/// onto the new tree, and `molt update` on 2026.9.6's durable runs.
#[test]
fn molt_update_on_openclaw_through_a_real_registry() {
    let tools = Tools::locate().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let registry = openclaw::registry(tmp.path()).unwrap();
    let prefix = tmp.path().join("prefix");
    let bin = openclaw::install_global(&registry, &tools, &prefix, OLD_OPENCLAW).unwrap();
    eprintln!("registry and global install: {:?}", started.elapsed());
    let env = openclaw::npm_env(&registry, &tools, &prefix);
    let home = tmp.path().join("home");
    let mut gateway = Gateway::start(&tools, &bin, &home, &env).unwrap();
    eprintln!(
        "openclaw {OLD_OPENCLAW} listened after {:?}",
        gateway.startup
    );

    let update = std::time::Instant::now();
    let out = molt(
        &gateway,
        &["update", "--yes", "--json", "--note", "molt e2e"],
    );
    eprintln!("molt update took {:?}\n{}", update.elapsed(), text(&out));
    let outcome = json_of(&out);
    // What runs now, asked independently of molt update's own verdict.
    let running = hello_version(&gateway);
    let status = molt(&gateway, &["status", "--json"]);
    eprintln!("molt status --json now: {}", text(&status));
    assert_eq!(outcome["claimed"]["version"], NEW_OPENCLAW, "{outcome:#}");
    assert_eq!(outcome["after"]["version"], running.as_str(), "{outcome:#}");
    assert!(outcome["gapMs"].as_u64().is_some(), "{outcome:#}");
    if running == NEW_OPENCLAW {
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        assert_eq!(outcome["outcome"], "verified", "{outcome:#}");
    } else {
        // Measured on two cores: the respawned child is not healthy in
        // time and the old process restarts in place over the new tree.
        // Its sentinel then says `error restart-unhealthy`, or, when the
        // child had already moved the sentinel away, still `ok` for
        // 2026.9.6: either way molt names what the install holds and what
        // the process runs.
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        let said = outcome["outcome"].as_str().unwrap();
        assert!(["mismatch", "failed"].contains(&said), "{outcome:#}");
        let plainly = format!("install says {NEW_OPENCLAW}, process runs {running}");
        assert!(
            outcome["reason"].as_str().unwrap().contains(&plainly),
            "{outcome:#}"
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(&plainly),
            "{}",
            text(&out)
        );
    }
    if outcome["darkMs"].as_u64().is_some() {
        assert!(
            outcome["refusedAttempts"].as_u64().unwrap() > 0,
            "{outcome:#}"
        );
    }

    // The console beside it: what runs, and what the sentinel claims.
    let mut c = console(&gateway, 40, 120);
    c.wait_for_within("connected", SCREEN_PATIENCE, |s| {
        s.contains(&format!("openclaw {running}  protocol"))
    });
    c.press("2");
    c.wait_for_within("the Update screen", SCREEN_PATIENCE, |s| {
        s.contains(&format!("running     {running}")) && s.contains("sentinel    sentinel")
    });
    // After its in-place restart 2026.4.26 rewrites the sentinel's `after`
    // to what runs; what it claims is shown as it says it.
    let screen = c.text();
    eprintln!("the Update screen after the update:\n{screen}");
    assert_eq!(count(&screen, "sentinel    sentinel "), 1, "{screen}");
    c.press("q");
    assert!(c.child.wait().unwrap().success());

    // The operator restarts the gateway: the new tree's code comes up.
    let took = gateway.restart(&tools, &bin).unwrap();
    eprintln!("restarted onto the new tree in {took:?}");
    let status = status_json(&gateway);
    assert_eq!(status["runtimeVersion"], NEW_OPENCLAW, "{status:#}");

    // 2026.9.x: a durable run handed to OpenClaw's detached updater,
    // followed through update.runs.get to its end; latest already runs.
    let update = std::time::Instant::now();
    let out = molt(&gateway, &["update", "--yes", "--json"]);
    eprintln!(
        "molt update on {NEW_OPENCLAW} took {:?}\n{}",
        update.elapsed(),
        text(&out)
    );
    let outcome = json_of(&out);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(outcome["outcome"], "up-to-date", "{outcome:#}");
    assert!(
        outcome["runId"].as_str().is_some_and(|id| id.len() == 36),
        "{outcome:#}"
    );
    assert_eq!(outcome["after"]["version"], NEW_OPENCLAW, "{outcome:#}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("handed to the updater"), "{stderr}");
    eprintln!("whole test: {:?}", started.elapsed());
    drop(registry);
}
