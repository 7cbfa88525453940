//! An installed moltd that updates itself: real moltd builds at two
//! versions published to the test registry, installed globally with a real
//! package manager, started from the manager's bin entrypoint with an
//! environment that reaches the registry.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use molt_protocol::method::{
    LogsTailResult, UpdateHistoryResult, UpdateRunResult, UpdateStatusResult,
};
use molt_protocol::update::RunRecord;
use serde_json::{Value, json};

use crate::client::Client;
use crate::gate::Gate;
use crate::moltd::{Moltd, Ready, command, write_config};
use crate::supervisor::Supervised;
use crate::{
    DEFAULT_PACKAGE, GlobalInstall, PackageManager, Registry, install_global, pack_moltd, publish,
    versions,
};

/// The version installed first.
pub const OLD: &str = "1.0.0";
/// The version `latest` points at.
pub const NEW: &str = "2.0.0";

pub struct UpdateFixture {
    pub tmp: tempfile::TempDir,
    pub registry: Registry,
    /// Put first on moltd's `PATH` by [`Self::gate_installs`].
    gate_bin: Option<PathBuf>,
}

impl UpdateFixture {
    /// A registry with real moltd builds of [`OLD`] and [`NEW`] (`latest`).
    pub fn start() -> Result<UpdateFixture> {
        let tmp = tempfile::tempdir()?;
        let registry = Registry::start(tmp.path())?;
        for version in [OLD, NEW] {
            publish(
                &registry,
                &versions::packed_moltd(version, DEFAULT_PACKAGE)?,
                None,
            )?;
        }
        Ok(UpdateFixture {
            tmp,
            registry,
            gate_bin: None,
        })
    }

    /// A registry with these `(version, binary)` builds published in
    /// order (the last one is `latest`).
    pub fn start_with(builds: &[(&str, PathBuf)]) -> Result<UpdateFixture> {
        let tmp = tempfile::tempdir()?;
        let registry = Registry::start(tmp.path())?;
        let fixture = UpdateFixture {
            tmp,
            registry,
            gate_bin: None,
        };
        for (version, binary) in builds {
            fixture.publish_binary(binary, version, None)?;
        }
        Ok(fixture)
    }

    /// Packs `binary` as `version` and publishes it (under `dist_tag`, or
    /// `latest`).
    pub fn publish_binary(
        &self,
        binary: &Path,
        version: &str,
        dist_tag: Option<&str>,
    ) -> Result<()> {
        let dist = self.tmp.path().join("dist");
        let tgz = pack_moltd(binary, version, &dist, DEFAULT_PACKAGE)?;
        publish(&self.registry, &tgz, dist_tag)
    }

    /// Publishes a build of `version` (dist-tag `broken`, so `latest`
    /// stays) that answers `--version` and refuses every other argument:
    /// it installs and verifies, then dies at start.
    pub fn publish_broken(&self, version: &str) -> Result<()> {
        let path = self.tmp.path().join(format!("broken-{version}/moltd"));
        crate::write_fake_moltd(&path, version)?;
        self.publish_binary(&path, version, Some("broken"))
    }

    /// Publishes a build of `version` (dist-tag `broken`) that answers
    /// `--version` and otherwise waits on `gate`, then dies: it installs
    /// and verifies, and the test acts while its start hangs.
    pub fn publish_broken_behind(&self, version: &str, gate: &Gate) -> Result<()> {
        let path = self.tmp.path().join(format!("broken-{version}/moltd"));
        crate::write_moltd_that_waits(&path, version, gate.path())?;
        self.publish_binary(&path, version, Some("broken"))
    }

    /// Puts a gate in front of the update's install step: the moltd this
    /// fixture starts from now on finds an `npm` first on its `PATH` that
    /// waits on the returned gate for `npm install` and runs the real npm
    /// for everything else (and for the install once the gate opens).
    pub fn gate_installs(&mut self) -> Result<Gate> {
        let dir = self.tmp.path().join("gate-bin");
        std::fs::create_dir_all(&dir)?;
        let gate = Gate::new(&self.tmp.path().join("install.gate"))?;
        let npm = self.registry.tools().npm.clone();
        crate::npm_package::write_script(
            &dir.join("npm"),
            &format!(
                "#!/bin/sh\n\
                 [ \"$1\" = install ] && cat '{gate}' >/dev/null\n\
                 exec '{npm}' \"$@\"\n",
                gate = gate.path().display(),
                npm = npm.display(),
            ),
        )?;
        self.gate_bin = Some(dir);
        Ok(gate)
    }

    /// A canonical prefix, so paths compare as moltd sees them.
    pub fn prefix(&self, manager: PackageManager) -> Result<PathBuf> {
        Ok(std::fs::canonicalize(self.tmp.path())?.join(format!("prefix-{manager}")))
    }

    pub fn install(&self, manager: PackageManager, version: &str) -> Result<GlobalInstall> {
        install_global(
            &self.registry,
            manager,
            &self.prefix(manager)?,
            DEFAULT_PACKAGE,
            version,
        )
        .with_context(|| format!("{manager}: install {version}"))
    }

    /// Another install of `version` into a prefix of its own named `name`,
    /// for tests that run many gateways side by side.
    pub fn install_named(
        &self,
        manager: PackageManager,
        version: &str,
        name: &str,
    ) -> Result<GlobalInstall> {
        let prefix = std::fs::canonicalize(self.tmp.path())?.join(format!("prefix-{name}"));
        install_global(&self.registry, manager, &prefix, DEFAULT_PACKAGE, version)
            .with_context(|| format!("{manager}: install {version} as {name}"))
    }

    /// Starts moltd from `global` (any prefix) on `state`, as
    /// [`Self::restart_moltd`] does for the fixture's own prefix.
    pub fn start_moltd_in(&self, global: &GlobalInstall, state: &Path) -> Result<Moltd> {
        let mut cmd = command(&global.bin, state, &["--port", "0"]);
        let mut env = self.moltd_env(global.manager)?;
        for (key, value) in &mut env {
            if key == "PATH" {
                let mut path = vec![global.manager.bin_path(&global.prefix)];
                path[0].pop();
                path.extend(std::env::split_paths(value));
                *value = std::env::join_paths(path)?;
            }
        }
        cmd.envs(env);
        Ok(Moltd::spawn(cmd))
    }

    /// What moltd needs to run the manager against this registry: the
    /// registry's client config, the tools on `PATH`, per-registry caches.
    pub fn moltd_env(&self, manager: PackageManager) -> Result<Vec<(String, OsString)>> {
        let mut env: Vec<(String, OsString)> = self
            .registry
            .client_env()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        let prefix = self.prefix(manager)?;
        let mut path: Vec<PathBuf> = self.gate_bin.iter().cloned().collect();
        path.push(
            manager
                .bin_path(&prefix)
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default(),
        );
        path.extend(std::env::split_paths(&self.registry.tools().path_env()));
        env.push(("PATH".into(), std::env::join_paths(path)?));
        let dir = self.registry.dir();
        env.push(("XDG_CACHE_HOME".into(), dir.join("xdg-cache").into()));
        env.push(("XDG_STATE_HOME".into(), dir.join("xdg-state").into()));
        env.push(("BUN_INSTALL_CACHE_DIR".into(), dir.join("cache/bun").into()));
        // A registry that is down fails fast instead of retrying for minutes.
        env.push(("NPM_CONFIG_FETCH_RETRIES".into(), "0".into()));
        Ok(env)
    }

    /// Starts moltd from the install's bin entrypoint on its own state dir.
    pub fn start_moltd(&self, global: &GlobalInstall, config: Value) -> Result<(PathBuf, Moltd)> {
        self.start_moltd_with(global, config, &[])
    }

    /// [`Self::start_moltd`] with more arguments for moltd.
    pub fn start_moltd_with(
        &self,
        global: &GlobalInstall,
        config: Value,
        args: &[&str],
    ) -> Result<(PathBuf, Moltd)> {
        let state = self.state_dir(global);
        std::fs::create_dir_all(&state)?;
        write_config(&state, config);
        Ok((state.clone(), self.restart_moltd(global, &state, args)?))
    }

    /// Starts moltd from the install's bin entrypoint on its own state dir
    /// under a [`crate::supervisor`] script, as `--supervisor runit`.
    pub fn start_supervised(&self, global: &GlobalInstall, config: Value) -> Result<Supervised> {
        let state = self.state_dir(global);
        std::fs::create_dir_all(&state)?;
        write_config(&state, config);
        crate::supervisor::start(
            &self.tmp.path().join("supervisor"),
            &global.bin,
            &state,
            &["--port", "0", "--supervisor", "runit"],
            self.moltd_env(global.manager)?,
        )
    }

    /// The state dir [`Self::start_moltd`] uses for `global`.
    pub fn state_dir(&self, global: &GlobalInstall) -> PathBuf {
        self.tmp.path().join(format!("state-{}", global.manager))
    }

    /// Starts moltd again on `state`, as a supervisor does.
    pub fn restart_moltd(
        &self,
        global: &GlobalInstall,
        state: &Path,
        args: &[&str],
    ) -> Result<Moltd> {
        let mut all = vec!["--port", "0"];
        all.extend_from_slice(args);
        let mut cmd = command(&global.bin, state, &all);
        cmd.envs(self.moltd_env(global.manager)?);
        Ok(Moltd::spawn(cmd))
    }
}

/// How long an update may go without a frame to its client: the package
/// manager's install runs silently, longer than the client's usual bound
/// on a busy machine.
pub const UPDATE_WAIT: Duration = Duration::from_secs(60);

/// `update.run` with `params`; the decoded result or the server's error.
pub async fn update_run(
    client: &mut Client,
    params: Value,
) -> Result<UpdateRunResult, molt_protocol::error::ErrorShape> {
    let id = client.send_request("update.run", params).await;
    client.response_within(&id, UPDATE_WAIT).await.into_result()
}

/// `update.history`: the runs, newest first.
pub async fn update_history(client: &mut Client) -> Vec<RunRecord> {
    let history: UpdateHistoryResult = client
        .request("update.history", json!({}))
        .await
        .into_result()
        .expect("update.history answers");
    history.runs
}

/// The names of a run's steps, in order.
pub fn step_names(result: &UpdateRunResult) -> Vec<&str> {
    result
        .result
        .steps
        .iter()
        .map(|s| s.name.as_str())
        .collect()
}

pub async fn update_status(client: &mut Client) -> UpdateStatusResult {
    client
        .request("update.status", json!({}))
        .await
        .into_result()
        .expect("update.status answers")
}

/// A client of whichever process serves at `ready`'s address now.
pub async fn serving_client(ready: &Ready) -> Client {
    crate::restarts::client(&Ready {
        pid: 0,
        ..ready.clone()
    })
    .await
}

/// Waits for a log line containing every one of `needles` (the tail so
/// far, then lines as they are written).
pub async fn log_line(c: &mut Client, needles: &[&str]) -> String {
    let matches = |line: &str| needles.iter().all(|n| line.contains(n));
    let tail: LogsTailResult = c
        .request("logs.tail", json!({"lines": 2000, "follow": true}))
        .await
        .into_result()
        .unwrap();
    if let Some(line) = tail.lines.into_iter().find(|l| matches(l)) {
        return line;
    }
    loop {
        let event = c.event("logs.line").await;
        let line = event["line"].as_str().unwrap_or_default().to_owned();
        if matches(&line) {
            return line;
        }
    }
}
