//! `molt fleet` against real moltd processes, each on its own state dir
//! and port: status side by side, and rolling updates of gateways
//! installed with npm from the test registry: ten for the rolling update
//! (a canary and waves of three, a prober on every port), three where a
//! rule needs fewer (a killed gateway, the Fleet screen's rollout).

mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use molt_e2e::PackageManager;
use molt_e2e::client::TOKEN;
use molt_e2e::moltd::{Moltd, write_config};
use molt_e2e::ports::refusing_addr;
use molt_e2e::restarts::Probe;
use molt_e2e::updates::{NEW, OLD, UpdateFixture};
use molt_e2e::versions::moltd_binary;
use serde_json::{Value, json};

/// `molt fleet <args> --fleet <file>` with its own config and state dirs.
fn molt_fleet(home: &Path, fleet: &Path, args: &[&str]) -> std::process::Command {
    let mut cmd = support::molt();
    cmd.arg("fleet")
        .args(args)
        .arg("--fleet")
        .arg(fleet)
        .env("XDG_STATE_HOME", home.join("state"))
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("HOME", home);
    cmd
}

fn json_of(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn rows(status: &Value) -> Vec<(String, String, Value, Value)> {
    status["gateways"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_owned(),
                r["state"].as_str().unwrap().to_owned(),
                r["version"].clone(),
                r["pid"].clone(),
            )
        })
        .collect()
}

#[test]
fn fleet_status_shows_every_gateway_and_names_the_one_it_cannot_reach() {
    let tmp = tempfile::tempdir().unwrap();
    let binary = moltd_binary(OLD).unwrap();
    let mut daemons = Vec::new();
    for name in ["a", "b", "c"] {
        let state = tmp.path().join(name);
        std::fs::create_dir_all(&state).unwrap();
        write_config(&state, json!({}));
        daemons.push((
            state.clone(),
            Moltd::start_from(&binary, &state, &["--port", "0"]),
        ));
    }
    let token_file = tmp.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let (_refusing, dead) = refusing_addr();
    let fleet = tmp.path().join("fleet.toml");
    std::fs::write(
        &fleet,
        format!(
            r#"[[gateway]]
name = "a"
url = "ws://{a}"
token_env = "FLEET_A_TOKEN"
groups = ["canary"]

[[gateway]]
name = "b"
url = "ws://{b}"
token_file = "{token}"

[[gateway]]
name = "c"
state_dir = "{c}"

[[gateway]]
name = "typo"
url = "ws://{b}"
tokn_file = "x"

[[gateway]]
name = "dead"
url = "ws://{dead}"
groups = ["canary"]
"#,
            a = daemons[0].1.first.addr,
            b = daemons[1].1.first.addr,
            token = token_file.display(),
            c = daemons[2].0.display(),
        ),
    )
    .unwrap();

    let output = molt_fleet(tmp.path(), &fleet, &["status", "--json"])
        .env("FLEET_A_TOKEN", TOKEN)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("line 16: gateway \"typo\""), "{stderr}");
    assert!(stderr.contains("could not reach dead"), "{stderr}");
    let status = json_of(&output);
    let pid = |i: usize| json!(daemons[i].1.first.pid);
    assert_eq!(
        rows(&status),
        vec![
            ("a".into(), "connected".into(), json!(OLD), pid(0)),
            ("b".into(), "connected".into(), json!(OLD), pid(1)),
            ("c".into(), "connected".into(), json!(OLD), pid(2)),
            (
                "dead".into(),
                "unreachable".into(),
                Value::Null,
                Value::Null
            ),
        ]
    );
    assert_eq!(status["gateways"][0]["killSwitch"], false, "{status:#}");
    assert_eq!(status["gateways"][0]["autoUpdate"], false, "{status:#}");

    // The dead host is a canary too: the group's status names it. The
    // human table has a row per gateway, and says why `a` is unusable
    // without its token variable.
    let output = molt_fleet(tmp.path(), &fleet, &["status", "--group", "canary"])
        .env("FLEET_A_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3));
    let output = molt_fleet(tmp.path(), &fleet, &["status"])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(
        table.contains("token_env FLEET_A_TOKEN is not set"),
        "{table}"
    );
    assert_eq!(table.lines().count(), 5, "{table}");

    // Kill switch across a group, each with its own method.
    let output = molt_fleet(tmp.path(), &fleet, &["kill-switch", "on", "--json"])
        .env("FLEET_A_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3), "the dead host");
    let set = json_of(&output);
    assert_eq!(set["gateways"][0]["ok"], true, "{set:#}");
    assert_eq!(set["gateways"][3]["ok"], false, "{set:#}");
    let output = molt_fleet(tmp.path(), &fleet, &["status", "--json"])
        .env("FLEET_A_TOKEN", TOKEN)
        .output()
        .unwrap();
    let status = json_of(&output);
    for i in 0..3 {
        assert_eq!(status["gateways"][i]["killSwitch"], true, "{status:#}");
    }
}

/// Gateways installed from the test registry at [`OLD`], one state dir
/// and one npm prefix each.
struct Hosts {
    fx: UpdateFixture,
    home: tempfile::TempDir,
    fleet: PathBuf,
    hosts: Vec<Host>,
}

struct Host {
    name: &'static str,
    global: molt_e2e::GlobalInstall,
    state: PathBuf,
    moltd: Moltd,
}

impl Host {
    fn addr(&self) -> SocketAddr {
        self.moltd.first.addr.parse().unwrap()
    }
}

fn hosts(names: &[&'static str], canary: &[&str]) -> Hosts {
    let fx = UpdateFixture::start().unwrap();
    let home = tempfile::tempdir().unwrap();
    let mut hosts = Vec::new();
    let mut file = String::new();
    for name in names {
        let global = fx.install_named(PackageManager::Npm, OLD, name).unwrap();
        let state = home.path().join(format!("state-{name}"));
        std::fs::create_dir_all(&state).unwrap();
        write_config(&state, json!({}));
        let moltd = fx.start_moltd_in(&global, &state).unwrap();
        let groups = if canary.contains(name) {
            r#"["canary"]"#
        } else {
            "[]"
        };
        file.push_str(&format!(
            "[[gateway]]\nname = \"{name}\"\nstate_dir = \"{}\"\ngroups = {groups}\n\n",
            state.display()
        ));
        hosts.push(Host {
            name,
            global,
            state,
            moltd,
        });
    }
    let fleet = home.path().join("fleet.toml");
    std::fs::write(&fleet, file).unwrap();
    Hosts {
        fx,
        home,
        fleet,
        hosts,
    }
}

impl Hosts {
    fn run(&self, args: &[&str]) -> (i32, Value, String) {
        let output = molt_fleet(self.home.path(), &self.fleet, args)
            .output()
            .unwrap();
        // A usage error prints nothing on stdout.
        let json = if output.stdout.is_empty() {
            Value::Null
        } else {
            json_of(&output)
        };
        (
            output.status.code().unwrap_or(-1),
            json,
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    fn status(&self) -> Vec<(String, String, Value, Value)> {
        rows(&self.run(&["status", "--json"]).1)
    }
}

fn outcomes(record: &Value) -> Vec<(String, String, Value)> {
    record["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["name"].as_str().unwrap().to_owned(),
                h["outcome"].as_str().unwrap().to_owned(),
                h["to"].clone(),
            )
        })
        .collect()
}

#[test]
fn a_broken_canary_halts_the_rollout_and_a_good_version_rolls_out_wave_by_wave() {
    const TEN: [&str; 10] = ["c1", "h1", "h2", "h3", "h4", "h5", "h6", "h7", "h8", "h9"];
    let mut fleet = hosts(&TEN, &["c1"]);
    fleet.fx.publish_broken("3.0.0").unwrap();
    let before = fleet.status();
    let waves = json!([
        ["c1"],
        ["h1", "h2", "h3"],
        ["h4", "h5", "h6"],
        ["h7", "h8", "h9"]
    ]);

    // The canary installs 3.0.0, which dies at start: it rolls back, the
    // rollout halts there, and nobody else is touched.
    let (code, out, stderr) = fleet.run(&[
        "update", "--target", "3.0.0", "--wave", "3", "--yes", "--json",
    ]);
    assert_eq!(code, 5, "{out:#}\n{stderr}");
    assert_eq!(out["ok"], false, "{out:#}");
    assert_eq!(out["outcome"], "halted", "{out:#}");
    assert_eq!(out["state"], "halted", "{out:#}");
    assert_eq!(out["waves"], waves, "{out:#}");
    assert_eq!(out["halt"]["host"], "c1", "{out:#}");
    assert_eq!(out["halt"]["outcome"], "rolled-back", "{out:#}");
    assert!(
        !out["halt"]["outputTail"].as_array().unwrap().is_empty(),
        "{out:#}"
    );
    assert_eq!(
        outcomes(&out),
        vec![("c1".into(), "rolled-back".into(), json!("3.0.0"))]
    );
    let after = fleet.status();
    assert_eq!(
        after[0].2,
        json!(OLD),
        "the canary runs the old version: {after:?}"
    );
    assert_eq!(after[1..], before[1..], "no other gateway touched");

    // A new rollout of a good version: every wave verified, no port ever
    // refused a connection.
    let probes: Vec<Probe> = fleet.hosts.iter().map(|h| Probe::start(h.addr())).collect();
    let (code, out, stderr) = fleet.run(&[
        "update",
        "--new",
        "--target",
        NEW,
        "--wave",
        "3",
        "--max-unavailable",
        "3",
        "--yes",
        "--json",
    ]);
    assert_eq!(code, 0, "{out:#}\n{stderr}");
    assert_eq!(
        (out["ok"].as_bool(), out["outcome"].as_str()),
        (Some(true), Some("verified"))
    );
    assert_eq!(out["version"], NEW, "{out:#}");
    let verified: Vec<(String, String, Value)> = TEN
        .iter()
        .map(|n| ((*n).to_owned(), "verified".to_owned(), json!(NEW)))
        .collect();
    let mut got = outcomes(&out);
    // Within a wave, gateways finish in any order.
    for wave in got[1..].chunks_mut(3) {
        wave.sort_by(|x, y| x.0.cmp(&y.0));
    }
    assert_eq!(got, verified, "{out:#}");
    for (i, wave) in [
        "wave 1/4 verified: c1",
        "wave 2/4 verified: h1, h2, h3",
        "wave 3/4 verified: h4, h5, h6",
        "wave 4/4 verified: h7, h8, h9",
    ]
    .iter()
    .enumerate()
    {
        assert!(stderr.contains(wave), "wave {i}: {stderr}");
    }
    // Wave order: each wave starts after the one before it verified.
    let at = |needle: &str| {
        stderr
            .find(needle)
            .unwrap_or_else(|| panic!("{needle}: {stderr}"))
    };
    assert!(at("wave 1/4 verified") < at("wave 2/4: h1, h2, h3"));
    assert!(at("wave 2/4 verified") < at("wave 3/4: h4, h5, h6"));
    assert!(at("wave 3/4 verified") < at("wave 4/4: h7, h8, h9"));
    for (host, probe) in fleet.hosts.iter_mut().zip(probes) {
        let successor = host.moltd.next_ready(support::pty::PATIENCE).unwrap();
        assert_eq!(successor.version, NEW);
        let probed = probe.finish();
        assert_eq!(probed.refused, 0, "{}: {probed:?}", host.name);
    }
    let status = fleet.status();
    for (i, row) in status.iter().enumerate() {
        assert_eq!(row.2, json!(NEW), "{status:?}");
        assert_ne!(row.3, before[i].3, "a new process: {status:?}");
    }
}

#[test]
fn a_host_killed_mid_rollout_halts_it_and_resume_continues_where_it_stopped() {
    let mut fleet = hosts(&["c1", "a", "b"], &["c1"]);
    let mut child = molt_fleet(
        fleet.home.path(),
        &fleet.fleet,
        &["update", "--target", NEW, "--wave", "1", "--yes", "--json"],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut stderr = String::new();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        stderr.push_str(&line);
        stderr.push('\n');
        if line.starts_with("wave 1/3 verified") {
            break;
        }
    }
    // The canary verified; wave 2 (a) is under way; b waits for it.
    let b = &mut fleet.hosts[2];
    Moltd::signal(b.moltd.first.pid, "KILL");
    assert!(b.moltd.wait_exit(support::pty::PATIENCE).is_some());
    for line in lines {
        stderr.push_str(&line.unwrap());
        stderr.push('\n');
    }
    let output = child.wait_with_output().unwrap();
    let out = json_of(&output);
    assert_eq!(output.status.code(), Some(3), "{out:#}\n{stderr}");
    assert_eq!(out["outcome"], "unreachable", "{out:#}");
    assert_eq!(out["halt"]["host"], "b", "{out:#}");
    assert_eq!(
        outcomes(&out),
        vec![
            ("c1".into(), "verified".into(), json!(NEW)),
            ("a".into(), "verified".into(), json!(NEW)),
            ("b".into(), "unreachable".into(), json!(NEW)),
        ]
    );
    let updated = fleet.status();

    // A new `molt fleet update` does not start over silently.
    let (code, out, stderr) = fleet.run(&["update", "--target", NEW, "--yes", "--json"]);
    assert_eq!(code, 2, "{out:#}\n{stderr}");
    assert!(stderr.contains("halted at b"), "{stderr}");

    // b is back; resume updates only b.
    // The killed one's Drop stops whatever serves its state dir: first.
    let killed = fleet.hosts.pop().unwrap();
    let (global, state) = (killed.global.clone(), killed.state.clone());
    drop(killed);
    let moltd = fleet.fx.start_moltd_in(&global, &state).unwrap();
    fleet.hosts.push(Host {
        name: "b",
        global,
        state,
        moltd,
    });
    let (code, out, stderr) = fleet.run(&["update", "--resume", "--yes", "--json"]);
    assert_eq!(code, 0, "{out:#}\n{stderr}");
    assert_eq!(out["outcome"], "verified", "{out:#}");
    assert!(
        !stderr.contains("c1:"),
        "the canary is not touched again: {stderr}"
    );
    let status = fleet.status();
    assert_eq!(status[..2], updated[..2], "c1 and a untouched: {status:?}");
    assert_eq!(status[2].2, json!(NEW), "{status:?}");
}

#[test]
fn the_fleet_screen_shows_fifty_gateways_at_80x24_and_opens_one() {
    let tmp = tempfile::tempdir().unwrap();
    let binary = moltd_binary(OLD).unwrap();
    let state = tmp.path().join("live");
    std::fs::create_dir_all(&state).unwrap();
    write_config(&state, json!({}));
    let moltd = Moltd::start_from(&binary, &state, &["--port", "0"]);
    let (_refusing, dead) = refusing_addr();
    let mut file = format!(
        "[[gateway]]\nname = \"live\"\nstate_dir = \"{}\"\ngroups = [\"canary\"]\n\n",
        state.display()
    );
    for i in 1..50 {
        file.push_str(&format!(
            "[[gateway]]\nname = \"dead-{i:02}\"\nurl = \"ws://{dead}\"\n\n"
        ));
    }
    let fleet = tmp.path().join("fleet.toml");
    std::fs::write(&fleet, file).unwrap();
    let fleet_arg = fleet.to_str().unwrap();
    let mut console = support::pty::Console::start_with(
        24,
        80,
        &["--fleet", fleet_arg],
        &[("XDG_STATE_HOME", tmp.path().as_os_str())],
    );
    let pid = moltd.first.pid.to_string();
    console.wait_for("the live row beside 49 unreachable ones", |s| {
        s.contains("1/50 connected")
            && s.lines()
                .any(|l| l.contains("live") && l.contains("connected") && l.contains(&pid))
            && s.lines()
                .filter(|l| l.contains("dead-") && l.contains("retry"))
                .count()
                == 20
    });
    let screen = console.text();
    assert!(
        screen
            .lines()
            .any(|l| l.contains(OLD) && l.contains("live")),
        "{screen}"
    );
    // Scrolling: the last gateway comes into view.
    console.press("\x1b[F");
    console.wait_for("the last row", |s| {
        s.contains("dead-49") && !s.contains("live ")
    });
    // Enter opens that gateway's console; Esc returns to the fleet.
    console.press("\x1b[H");
    console.wait_for("the first row selected", |s| s.contains("live"));
    console.press("\r");
    console.wait_for("the live gateway's Overview", |s| {
        s.contains("Overview") && s.contains(&format!("pid          {pid},"))
    });
    console.press("\x1b");
    console.wait_for("the Fleet screen again", |s| {
        s.contains("Fleet") && s.contains("dead-01")
    });
    console.press("q");
    assert!(console.child.wait().unwrap().success());
}

/// The row of gateway `name` on the Fleet screen.
fn fleet_row<'a>(screen: &'a str, name: &str) -> &'a str {
    screen
        .lines()
        .find(|l| {
            l.get(1..)
                .is_some_and(|rest| rest.starts_with(&format!("{name} ")))
        })
        .unwrap_or_else(|| panic!("no row {name} in\n{screen}"))
}

#[test]
fn the_fleet_screen_rolls_out_halts_at_a_bad_canary_and_rolls_the_verified_back() {
    let mut fleet = hosts(&["c1", "a", "b"], &["c1"]);
    fleet.fx.publish_broken("3.0.0").unwrap();
    let mut file = std::fs::read_to_string(&fleet.fleet).unwrap();
    file.push_str("[rollout]\nwave = 1\n");
    std::fs::write(&fleet.fleet, file).unwrap();
    let home = fleet.home.path().to_owned();
    let mut console = support::pty::Console::start_with(
        24,
        80,
        &["--fleet", fleet.fleet.to_str().unwrap()],
        &[
            ("XDG_STATE_HOME", home.join("state").as_os_str()),
            ("XDG_CONFIG_HOME", home.join("config").as_os_str()),
        ],
    );
    console.wait_for("three gateways on 1.0.0", |s| {
        s.contains("3/3 connected") && s.matches(OLD).count() >= 3
    });

    // A version that dies at start: the canary rolls itself back and the
    // rollout halts there, naming the step and what the new process said.
    console.press("U");
    console.wait_for("the target prompt", |s| s.contains("Roll out to"));
    for key in ["3", ".", "0", ".", "0", "\r"] {
        console.press(key);
    }
    console.wait_for_within("the halt at the canary", support::pty::PATIENCE, |s| {
        s.contains("halted at c1") && s.contains("R resume")
    });
    let screen = console.text();
    for (line, times) in [
        (" to 3.0.0: halted, 0 of 3 verified", 1),
        ("halted at c1, step restart:", 1),
        // The tail of its update, down to what the new process said.
        ("|   fake moltd 3.0.0: unknown argument --state-dir", 1),
        ("R resume  S skip c1  B roll back  U new rollout", 1),
    ] {
        assert_eq!(screen.matches(line).count(), times, "{line:?} in\n{screen}");
    }
    for host in &fleet.hosts {
        let row = fleet_row(&screen, host.name);
        assert!(
            row.contains(OLD) && row.contains("connected"),
            "{row}\n{screen}"
        );
    }
    for host in &fleet.hosts[1..] {
        assert!(
            fleet_row(&screen, host.name).contains("no run"),
            "{} untouched\n{screen}",
            host.name
        );
    }

    // A good version, started anew from the screen: b goes away while a
    // updates, so the rollout halts at b with c1 and a verified.
    console.press("U");
    console.wait_for("the prompt naming what it replaces", |s| {
        s.contains("replaces the unfinished rollout to 3.0.0 halted at c1")
    });
    for key in ["2", ".", "0", ".", "0", "\r"] {
        console.press(key);
    }
    console.wait_for_within("wave 2 under way", support::pty::PATIENCE, |s| {
        s.contains("wave 2/3: a")
    });
    let b = &mut fleet.hosts[2];
    Moltd::signal(b.moltd.first.pid, "KILL");
    assert!(b.moltd.wait_exit(support::pty::PATIENCE).is_some());
    console.wait_for_within("the halt at b", support::pty::PATIENCE, |s| {
        s.contains("halted at b") && s.contains("R resume")
    });
    let screen = console.text();
    assert_eq!(
        screen.matches(" to 2.0.0: halted, 2 of 3 verified").count(),
        1,
        "{screen}"
    );
    for name in ["c1", "a"] {
        assert!(fleet_row(&screen, name).contains(NEW), "{name}\n{screen}");
    }

    // B puts the verified ones back on the version each ran before.
    console.press("B");
    console.wait_for_within("the rollback's end", support::pty::PATIENCE, |s| {
        s.contains("rolled back, 0 of 3 verified, 2 rolled back")
    });
    console.wait_for("c1 and a on 1.0.0 again", |s| {
        ["c1", "a"]
            .iter()
            .all(|name| fleet_row(s, name).contains(&format!("{OLD} ")))
    });
    let record: Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::fs::read_dir(home.join("state/molt/rollouts"))
                .unwrap()
                .next()
                .unwrap()
                .unwrap()
                .path(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(record["state"], "rolled-back", "{record:#}");
    assert_eq!(
        outcomes(&record),
        vec![
            ("c1".into(), "reverted".into(), json!(OLD)),
            ("a".into(), "reverted".into(), json!(OLD)),
            ("b".into(), "unreachable".into(), json!(NEW)),
        ]
    );

    // The kill switch on every gateway shown, in one action: set where the
    // gateway answers, b (still gone) named with why.
    console.press("K");
    console.wait_for("the kill switch choice", |s| {
        s.contains("Set the kill switch on the 3 gateways shown:")
    });
    console.press("y");
    console.wait_for("the kill switch set on c1 and a", |s| {
        s.contains("kill switch on: set on 2 of 3")
            && ["c1", "a"].iter().all(|name| {
                let row = fleet_row(s, name);
                row.contains(" on ") && row.contains("connected")
            })
    });
    let screen = console.text();
    assert_eq!(screen.matches("b: cannot reach").count(), 1, "{screen}");
    console.press("q");
    assert!(console.child.wait().unwrap().success());
}
