//! A real systemd for end-to-end tests: the Debian bookworm root that
//! `scripts/systemd-root.sh` builds (systemd 252, dbus, node and npm),
//! booted with `systemd-nspawn --boot` as a throwaway machine per test and
//! driven from outside with `nsenter`; and moltd in it the way an operator
//! runs it: installed with `npm i -g` as the `molt` user from the test
//! registry, under the shipped units.
//!
//! Why it is built this way:
//!
//! * **One writable layer per machine.** `--volatile=overlay` puts a tmpfs
//!   overlay, made for this boot alone and gone when it ends, over the
//!   cached root, which stays read-only. A boot copies nothing
//!   (`--ephemeral` copies the whole tree on a file system without
//!   snapshots, such as ext4), machines of parallel tests share the root,
//!   and nothing a test did survives it.
//! * **Its own cgroup.** With no systemd on the host there is no unit for
//!   nspawn to keep (`--keep-unit`): it splits the cgroup it starts in into
//!   `supervisor` and `payload`, and the container's systemd manages
//!   `payload`. Two machines started from one cgroup would share that
//!   subtree, and each systemd would see the other's processes in its
//!   units. So each machine starts in a cgroup of its own
//!   (`<ours>/molt-e2e/<machine>`), which is also how a machine that will
//!   not stop is killed whole.
//! * **cgroup v2 inside.** `SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1` gives the
//!   container the unified hierarchy that Debian 12 hosts run, also on a
//!   host with the hybrid layout: systemd tracks and kills a service's
//!   processes differently on the two.
//! * **Nothing outlives the test.** nspawn runs under a small shell
//!   watchdog whose stdin is a pipe from the test: closing it (Drop), or
//!   the test process dying in any way, powers the machine off (SIGTERM to
//!   `systemd-nspawn --boot` is an orderly shutdown).
//! * **Ports.** The machine shares the host's network, so the test
//!   registry on 127.0.0.1 is reachable from inside and the test reaches
//!   the gateway's socket from outside. systemd 252 refuses
//!   `ListenStream=127.0.0.1:0` ("Failed to parse address value"), so no
//!   test can let the kernel choose. The test names a port below the
//!   kernel's ephemeral range and lets systemd bind it; when systemd
//!   reports "Address already in use" it names another. The bind that
//!   counts is systemd's own, which holds the port from then on: no window
//!   in which someone else can take it.

use std::collections::BTreeMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use crate::moltd::{Ready, merge, write_config};
use crate::process::{self, COMMAND_TIMEOUT, Captured, CmdOutput, Running, drain};
use crate::tools::{repo_root, tools_package_dir};
use crate::{DEFAULT_PACKAGE, Registry, publish, versions};

/// Written into the root by `scripts/systemd-root.sh`: the hash of the
/// script the root was built by.
const STAMP: &str = ".molt-root-stamp";
/// Left by `scripts/systemd-root.sh` when a build failed: why.
const FAILED: &str = "systemd-root.failed";

/// A machine boots in ~1 s on an idle 2-core box; generous for a loaded CI
/// one.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(90);
/// One command in the machine: a `systemctl stop` waits for moltd's drain
/// (at most ~15 s, `TimeoutStopSec=30s`).
pub const RUN_TIMEOUT: Duration = Duration::from_secs(60);
/// A powered-off machine is gone in ~2 s; after this it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// `PATH` for commands in the machine (and for finding nsenter on the
/// host): the test's own environment never reaches the machine.
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The root the systemd tests boot, or why they cannot run here.
#[derive(Debug)]
pub enum Root {
    Ready(PathBuf),
    Skip(String),
}

/// Finds the root built by `scripts/systemd-root.sh`. Skips only when not
/// root, or when the script tried to build it and could not (its reason);
/// a root that was never built, or built by another version of the
/// script, is an error that says how to build it.
pub fn root() -> Result<Root> {
    if effective_uid()? != 0 {
        return Ok(Root::Skip(
            "not root: booting a machine with systemd-nspawn needs root".to_owned(),
        ));
    }
    let dir = tools_package_dir().join("systemd-root");
    let want = recipe_hash()?;
    let have = std::fs::read_to_string(dir.join(STAMP)).unwrap_or_default();
    if have.trim() == want {
        for tool in ["systemd-nspawn", "nsenter"] {
            if crate::tools::find_on_path(tool).is_none() {
                bail!("{tool} not found on PATH; run scripts/systemd-root.sh (as root)");
            }
        }
        return Ok(Root::Ready(dir));
    }
    if let Ok(reason) = std::fs::read_to_string(tools_package_dir().join(FAILED)) {
        return Ok(Root::Skip(format!(
            "the Debian root could not be built here: {reason}"
        )));
    }
    bail!(
        "the Debian root for the systemd tests in {} is missing or was built by another \
         version of scripts/systemd-root.sh; run scripts/install-test-tools.sh (as root)",
        dir.display()
    )
}

/// sha256 of `scripts/systemd-root.sh`, hex: what the script writes into
/// its stamp.
fn recipe_hash() -> Result<String> {
    let script = repo_root().join("scripts/systemd-root.sh");
    let bytes = std::fs::read(&script).with_context(|| format!("read {}", script.display()))?;
    Ok(hex::encode(Sha256::digest(bytes)))
}

fn effective_uid() -> Result<u32> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|euid| euid.parse().ok())
        .context("no effective uid in /proc/self/status")
}

/// What a machine is booted with beyond the root.
#[derive(Debug, Default, Clone)]
pub struct Boot {
    /// `(host path, path in the machine)`, mounted read-only.
    pub binds_ro: Vec<(PathBuf, String)>,
}

/// The watchdog nspawn runs under (see the module header). Arguments: the
/// cgroup directories to start nspawn in, space-separated, then nspawn's
/// arguments. It exits when nspawn does.
const WATCHDOG_SH: &str = r#"
cgroups=$1
shift
sh -c 'for dir in $1; do echo $$ >"$dir/cgroup.procs" || exit 1; done; shift; exec systemd-nspawn "$@"' \
    nspawn "$cgroups" "$@" </dev/null &
nspawn=$!
# Stdin is a pipe from the test: at its end (the test is done, or gone) the
# machine powers off. (A background list reads /dev/null unless told
# otherwise, hence fd 3.)
exec 3<&0
{ cat <&3 >/dev/null; kill -TERM "$nspawn" 2>/dev/null; } &
wait "$nspawn"
status=$?
echo "molt-e2e: systemd-nspawn exited with status $status" >&2
exit $status
"#;

/// A booted machine. Powered off (killed if it will not stop) on drop.
pub struct Machine {
    name: String,
    watchdog: Child,
    stdin: Option<ChildStdin>,
    /// The machine's console and nspawn's messages.
    console: Captured,
    messages: Captured,
    /// The container's systemd (PID 1 in the machine), as a host pid.
    leader: u32,
    /// The machine's own cgroup, one directory per hierarchy.
    cgroups: Vec<PathBuf>,
}

impl Machine {
    /// Boots `root` as a fresh machine and waits until its systemd reports
    /// the boot finished (`systemctl is-system-running --wait`).
    pub fn boot(root: &Path, boot: &Boot) -> Result<Machine> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "molt-e2e-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        sweep_stale();
        let cgroups = cgroup_dirs(&name)?;
        for dir in &cgroups {
            create_cgroup(dir)?;
        }
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(WATCHDOG_SH)
            .arg("watchdog")
            .arg(
                cgroups
                    .iter()
                    .map(|d| d.to_string_lossy())
                    .collect::<Vec<_>>()
                    .join(" "),
            )
            .arg("--directory")
            .arg(root)
            .args(["--boot", "--register=no", "--keep-unit"])
            .args(["--volatile=overlay", "--link-journal=no"])
            .args(["--console=read-only", &format!("--machine={name}")]);
        for (host, inside) in &boot.binds_ro {
            cmd.arg(format!("--bind-ro={}:{inside}", host.display()));
        }
        cmd.env_clear()
            .env("PATH", PATH)
            .env("SYSTEMD_NSPAWN_UNIFIED_HIERARCHY", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut watchdog = cmd.spawn().context("cannot start systemd-nspawn")?;
        let stdin = watchdog.stdin.take();
        let console = drain(watchdog.stdout.take());
        let messages = drain(watchdog.stderr.take());
        let mut machine = Machine {
            name,
            watchdog,
            stdin,
            console,
            messages,
            leader: 0,
            cgroups,
        };
        machine.wait_booted()?;
        Ok(machine)
    }

    fn wait_booted(&mut self) -> Result<()> {
        let deadline = Instant::now() + BOOT_TIMEOUT;
        let mut last = String::new();
        loop {
            if let Some(status) = self.watchdog.try_wait()? {
                bail!(
                    "machine {} stopped while booting ({status})\n{}",
                    self.name,
                    self.output()
                );
            }
            if self.leader == 0 {
                self.leader = find_leader(self.watchdog.id()).unwrap_or(0);
            }
            if self.leader != 0 {
                let left = deadline.saturating_duration_since(Instant::now());
                // Fails at once while the machine's systemd does not listen
                // yet; then blocks until the boot is over.
                let out = process::run_unchecked(
                    &mut self.command(&["systemctl", "is-system-running", "--wait"]),
                    left.max(Duration::from_secs(1)),
                )?;
                match out.stdout.trim() {
                    "running" => return Ok(()),
                    "degraded" => {
                        let failed = self.run(&["systemctl", "--failed", "--no-legend"])?;
                        eprintln!("machine {} booted degraded:\n{}", self.name, failed.stdout);
                        return Ok(());
                    }
                    _ => last = format!("{}{}", out.stdout, out.stderr),
                }
            }
            if Instant::now() >= deadline {
                bail!(
                    "machine {} not booted after {BOOT_TIMEOUT:?}; last answer: {last}\n{}",
                    self.name,
                    self.output()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The machine's name (unique on this host).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `argv` run in the machine as root, in all its namespaces, with a
    /// minimal environment. (It joins the machine's pid namespace, so
    /// whatever of it outlives a deadline dies with the machine.)
    pub fn command(&self, argv: &[&str]) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--target={}", self.leader))
            .args(["--all", "--"])
            .args(argv)
            .env_clear()
            .env("PATH", PATH)
            .env("LANG", "C.UTF-8")
            .env("SYSTEMD_COLORS", "0");
        cmd
    }

    /// Runs `argv` in the machine ([`Machine::command`]); fails unless it
    /// exits 0 within [`RUN_TIMEOUT`].
    pub fn run(&self, argv: &[&str]) -> Result<CmdOutput> {
        process::run(&mut self.command(argv), RUN_TIMEOUT)
    }

    /// Like [`Machine::run`], whatever the exit status.
    pub fn run_unchecked(&self, argv: &[&str]) -> Result<CmdOutput> {
        process::run_unchecked(&mut self.command(argv), RUN_TIMEOUT)
    }

    /// Starts `argv` in the machine without waiting (for a command that
    /// blocks while the test watches something else).
    pub fn spawn(&self, argv: &[&str]) -> Result<Running> {
        process::spawn(&mut self.command(argv))
    }

    /// Runs `argv` as `user` (no login, no session: `setpriv`), within
    /// `timeout`; fails unless it exits 0.
    pub fn run_as(&self, user: &str, argv: &[&str], timeout: Duration) -> Result<CmdOutput> {
        let mut full = vec![
            "setpriv",
            "--reuid",
            user,
            "--regid",
            user,
            "--init-groups",
            "--",
        ];
        full.extend_from_slice(argv);
        process::run(&mut self.command(&full), timeout)
    }

    /// `systemctl <args>`; fails unless it exits 0.
    pub fn systemctl(&self, args: &[&str]) -> Result<CmdOutput> {
        let mut argv = vec!["systemctl", "--no-pager"];
        argv.extend_from_slice(args);
        self.run(&argv)
    }

    /// One property of a unit, as `systemctl show` gives it (`MainPID`,
    /// `NRestarts`, `ActiveState`, `SubState`, `Result`, ...).
    pub fn show(&self, unit: &str, property: &str) -> Result<String> {
        let out = self.systemctl(&["show", unit, "--value", &format!("--property={property}")])?;
        Ok(out.stdout.trim_end_matches('\n').to_owned())
    }

    /// Several properties of a unit in one call.
    pub fn show_all(&self, unit: &str, properties: &[&str]) -> Result<BTreeMap<String, String>> {
        let mut args = vec!["show", unit];
        let flags: Vec<String> = properties
            .iter()
            .map(|p| format!("--property={p}"))
            .collect();
        args.extend(flags.iter().map(String::as_str));
        let out = self.systemctl(&args)?;
        Ok(out
            .stdout
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect())
    }

    /// What `systemctl status` shows first: active state, sub-state and
    /// the result of the unit's last run.
    pub fn state(&self, unit: &str) -> Result<UnitState> {
        let props = self.show_all(unit, &["ActiveState", "SubState", "Result"])?;
        let get = |k: &str| props.get(k).cloned().unwrap_or_default();
        Ok(UnitState {
            active: get("ActiveState"),
            sub: get("SubState"),
            result: get("Result"),
        })
    }

    /// Polls `unit` until its state is `want`, at most `timeout`.
    pub fn wait_for_state(&self, unit: &str, want: &UnitState, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let state = self.state(unit)?;
            if &state == want {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "{unit} is {state:?} after {timeout:?}, not {want:?}\n{}",
                    self.journal(unit)?
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The unit's journal so far (`journalctl -u`), with precise times.
    pub fn journal(&self, unit: &str) -> Result<String> {
        let out = self.run(&[
            "journalctl",
            "--no-pager",
            "--output=short-precise",
            &format!("--unit={unit}"),
        ])?;
        Ok(out.stdout)
    }

    /// Polls the unit's journal until it holds every one of `lines`
    /// (journald takes in a service's output a moment after the service
    /// wrote it), at most `timeout`; the journal then.
    pub fn wait_for_journal(
        &self,
        unit: &str,
        lines: &[&str],
        timeout: Duration,
    ) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let journal = self.journal(unit)?;
            if lines.iter().all(|line| journal.contains(line)) {
                return Ok(journal);
            }
            if Instant::now() >= deadline {
                bail!("{unit}'s journal has not all of {lines:?} after {timeout:?}:\n{journal}");
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// `path` in the machine as the host sees it (through its leader's
    /// root): for reading and writing files from the test.
    pub fn path(&self, inside: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root{inside}", self.leader))
    }

    /// Copies the host file `from` to `inside`, owned by `owner` with `mode`.
    pub fn copy_in(&self, from: &Path, inside: &str, owner: &str, mode: &str) -> Result<()> {
        let path = self.path(inside);
        std::fs::copy(from, &path)
            .with_context(|| format!("copy {} to {}", from.display(), path.display()))?;
        self.run(&["chown", owner, inside])?;
        self.run(&["chmod", mode, inside])?;
        Ok(())
    }

    /// Writes `contents` to `inside` (replacing it), owned by `owner`
    /// (`user:group`) with `mode`.
    pub fn write_file(&self, inside: &str, contents: &str, owner: &str, mode: &str) -> Result<()> {
        let path = self.path(inside);
        std::fs::write(&path, contents).with_context(|| format!("write {}", path.display()))?;
        self.run(&["chown", owner, inside])?;
        self.run(&["chmod", mode, inside])?;
        Ok(())
    }

    /// The console and nspawn's messages so far.
    pub fn output(&self) -> String {
        format!(
            "--- console of {} ---\n{}--- systemd-nspawn ---\n{}",
            self.name,
            self.console.snapshot(),
            self.messages.snapshot()
        )
    }

    /// Powers the machine off and waits until nspawn is gone; kills every
    /// process of the machine if it will not stop in time. Removes what
    /// the boot left on the host.
    fn power_off(&mut self) -> Result<()> {
        drop(self.stdin.take());
        let deadline = Instant::now() + STOP_TIMEOUT;
        let mut stopped = false;
        while Instant::now() < deadline {
            if self.watchdog.try_wait()?.is_some() {
                stopped = true;
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
        if !stopped {
            for dir in &self.cgroups {
                kill_cgroup(dir);
            }
            let _ = self.watchdog.kill();
            let _ = self.watchdog.wait();
        }
        for dir in &self.cgroups {
            remove_cgroup(dir);
            // `molt-e2e` too, once no machine is left in it.
            if let Some(parent) = dir.parent() {
                let _ = std::fs::remove_dir(parent);
            }
        }
        let _ = std::fs::remove_dir(Path::new("/run/systemd/nspawn/propagate").join(&self.name));
        if !stopped {
            bail!(
                "machine {} did not power off within {STOP_TIMEOUT:?}: killed\n{}",
                self.name,
                self.output()
            );
        }
        Ok(())
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        if let Err(e) = self.power_off() {
            eprintln!("{e:#}");
        }
    }
}

/// `ActiveState`, `SubState` and `Result` of a unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitState {
    pub active: String,
    pub sub: String,
    pub result: String,
}

impl UnitState {
    pub fn new(active: &str, sub: &str, result: &str) -> UnitState {
        UnitState {
            active: active.to_owned(),
            sub: sub.to_owned(),
            result: result.to_owned(),
        }
    }
}

/// The container's init: the child of the watchdog's systemd-nspawn that
/// is PID 1 in its own pid namespace.
fn find_leader(watchdog: u32) -> Option<u32> {
    let nspawn = children(watchdog).into_iter().find(|&pid| {
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .is_ok_and(|c| c.trim() == "systemd-nspawn")
    })?;
    children(nspawn).into_iter().find(|&pid| {
        std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("NSpid:"))
                .is_some_and(|ids| ids.split_whitespace().count() > 1 && ids.ends_with("\t1"))
        })
    })
}

/// Live children of `parent`, from `/proc/*/stat`.
fn children(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                // `pid (comm) state ppid ...`; comm may hold spaces.
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                    == Some(parent)
            })
        })
        .collect()
}

/// `<hierarchy><our cgroup>/molt-e2e/<name>` for each cgroup hierarchy
/// that tracks processes for systemd: the unified one (v2), and the named
/// v1 `systemd` one where the host has it.
fn cgroup_dirs(name: &str) -> Result<Vec<PathBuf>> {
    let mut dirs = Vec::new();
    for (mount, ours) in own_cgroups()? {
        dirs.push(
            mount
                .join(ours.trim_start_matches('/'))
                .join("molt-e2e")
                .join(name),
        );
    }
    if dirs.is_empty() {
        bail!("no cgroup hierarchy found for systemd-nspawn (/proc/self/cgroup)");
    }
    if let Some(dir) = dirs.iter().find(|d| d.to_string_lossy().contains(' ')) {
        bail!("cgroup path with a space: {}", dir.display());
    }
    Ok(dirs)
}

/// `(mount point, our path in it)` of the unified hierarchy and of the
/// named v1 `systemd` hierarchy, where mounted.
fn own_cgroups() -> Result<Vec<(PathBuf, String)>> {
    let own = std::fs::read_to_string("/proc/self/cgroup").context("read /proc/self/cgroup")?;
    let mut found = Vec::new();
    for line in own.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let mount = if id == "0" && controllers.is_empty() {
            ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
                .into_iter()
                .map(PathBuf::from)
                .find(|m| m.join("cgroup.controllers").exists())
        } else if controllers == "name=systemd" {
            Some(PathBuf::from("/sys/fs/cgroup/systemd"))
                .filter(|m| m.join("cgroup.procs").exists())
        } else {
            None
        };
        if let Some(mount) = mount {
            found.push((mount, path.to_owned()));
        }
    }
    Ok(found)
}

/// Removes what machines of test processes that died without dropping
/// them left behind: empty cgroups, nspawn's propagation directories.
/// (Their machines powered off through the watchdog.) Only entries whose
/// test process is gone are touched, and `rmdir` never removes a cgroup
/// that still has processes.
fn sweep_stale() {
    let stale = |name: &str| -> bool {
        let Some(rest) = name.strip_prefix("molt-e2e-") else {
            return false;
        };
        let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
        pid.is_some_and(|pid| !crate::moltd::alive(pid))
    };
    let mut parents: Vec<PathBuf> = own_cgroups()
        .unwrap_or_default()
        .into_iter()
        .map(|(mount, ours)| mount.join(ours.trim_start_matches('/')).join("molt-e2e"))
        .collect();
    parents.push(PathBuf::from("/run/systemd/nspawn/propagate"));
    for parent in parents {
        let Ok(entries) = std::fs::read_dir(&parent) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.file_name().to_str().is_some_and(stale) {
                remove_cgroup(&entry.path());
            }
        }
    }
}

/// Makes the machine's cgroup. A parallel test's machine may remove the
/// shared `molt-e2e` parent between our two `mkdir`s (it does once it is
/// empty): then make it again.
fn create_cgroup(dir: &Path) -> Result<()> {
    let mut attempts = 0;
    loop {
        match std::fs::create_dir_all(dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && attempts < 10 => attempts += 1,
            done => return done.with_context(|| format!("mkdir {}", dir.display())),
        }
    }
}

/// Removes a cgroup directory tree, deepest first. cgroup files cannot be
/// unlinked and need not be: `rmdir` of an empty cgroup takes them along.
fn remove_cgroup(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup(&entry.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// Kills every process in a cgroup tree: at once with `cgroup.kill` where
/// the hierarchy has it (v2), else one by one.
fn kill_cgroup(dir: &Path) {
    if std::fs::write(dir.join("cgroup.kill"), "1").is_ok() {
        return;
    }
    if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        for pid in procs.split_whitespace() {
            let _ = Command::new("kill")
                .args(["-KILL", pid])
                .stderr(Stdio::null())
                .status();
        }
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                kill_cgroup(&entry.path());
            }
        }
    }
}

// ---------------------------------------------------------------------------
// moltd under the shipped units
// ---------------------------------------------------------------------------

/// The npm prefix moltd is installed into, owned by `molt` (prepared in
/// the root), as docs/systemd.md recommends for a moltd that updates
/// itself.
pub const PREFIX: &str = "/opt/molt";
/// moltd's state dir under the shipped unit (`StateDirectory=molt`).
pub const STATE_DIR: &str = "/var/lib/molt";
/// The service account of the shipped unit (created in the root).
pub const USER: &str = "molt";
/// npm's cache for installs by the test (the `molt` user has no home yet).
const NPM_CACHE: &str = "/tmp/molt-e2e-npm-cache";

pub const SERVICE: &str = "moltd.service";
pub const SOCKET: &str = "moltd.socket";

/// The drop-in that adapts the shipped `moltd.service` to the machine.
/// The shipped `ExecStart=` names `/usr/local/bin/moltd` (`npm i -g` as
/// root); the test installs the way docs/systemd.md recommends for a moltd
/// that updates itself: as `molt`, into the `/opt/molt` prefix. Everything
/// else is the shipped unit as is.
const SERVICE_DROP_IN: &str = "\
# molt-e2e: the shipped unit, with moltd where the test installed it
# (npm i -g --prefix /opt/molt, as molt).
[Service]
ExecStart=
ExecStart=/opt/molt/bin/moltd --supervisor systemd
";

/// The drop-in that moves the shipped `moltd.socket` to the test's port:
/// the machine shares the host's network with every other test, so the
/// shipped 18789 may be taken, and systemd 252 refuses port 0.
fn socket_drop_in(port: u16) -> String {
    format!(
        "\
# molt-e2e: the shipped socket on a port of this test's own (the machine
# shares the host's network; systemd 252 refuses port 0).
[Socket]
ListenStream=
ListenStream=127.0.0.1:{port}
"
    )
}

/// Ports systemd may be asked to bind before the test gives up.
const PORT_ATTEMPTS: usize = 8;

impl Machine {
    /// `npm i -g --prefix /opt/molt <package>@<version>` as `molt`, from
    /// `registry`.
    pub fn npm_install(&self, registry: &Registry, package: &str, version: &str) -> Result<()> {
        let url = registry.url();
        let spec = format!("{package}@{version}");
        self.run_as(
            USER,
            &[
                "npm",
                "install",
                "--global",
                "--prefix",
                PREFIX,
                "--registry",
                &url,
                "--cache",
                NPM_CACHE,
                "--no-audit",
                "--no-fund",
                "--no-update-notifier",
                &spec,
            ],
            COMMAND_TIMEOUT,
        )
        .with_context(|| format!("npm install {spec} in machine {}", self.name))?;
        Ok(())
    }

    /// Writes a drop-in `<unit>.d/<name>.conf` (no reload).
    pub fn drop_in(&self, unit: &str, name: &str, body: &str) -> Result<()> {
        let dir = format!("/etc/systemd/system/{unit}.d");
        self.run(&["mkdir", "-p", &dir])?;
        self.write_file(&format!("{dir}/{name}.conf"), body, "root:root", "0644")
    }

    /// Copies the shipped `assets/moltd.service` and `assets/moltd.socket`
    /// verbatim into `/etc/systemd/system`, adds the two drop-ins above and
    /// starts `moltd.socket` (not the service) on a port of this test's;
    /// returns the port.
    pub fn install_units(&self) -> Result<u16> {
        for unit in [SERVICE, SOCKET] {
            let shipped = repo_root().join("assets").join(unit);
            let text = std::fs::read_to_string(&shipped)
                .with_context(|| format!("read {}", shipped.display()))?;
            self.write_file(
                &format!("/etc/systemd/system/{unit}"),
                &text,
                "root:root",
                "0644",
            )?;
        }
        self.drop_in(SERVICE, "molt-e2e", SERVICE_DROP_IN)?;
        let mut taken = Vec::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = pick_port();
            self.drop_in(SOCKET, "molt-e2e", &socket_drop_in(port))?;
            self.systemctl(&["daemon-reload"])?;
            if !taken.is_empty() {
                self.systemctl(&["reset-failed", SOCKET])?;
            }
            if self
                .run_unchecked(&["systemctl", "start", SOCKET])?
                .status
                .success()
            {
                return Ok(port);
            }
            let journal = self.journal(SOCKET)?;
            if !journal.contains(&format!("(127.0.0.1:{port}): Address already in use")) {
                bail!("{SOCKET} did not start on port {port}:\n{journal}");
            }
            taken.push(port);
        }
        bail!("systemd could bind none of the ports {taken:?}")
    }
}

/// A port below the kernel's ephemeral range (where `bind(0)` and outgoing
/// connections take theirs), chosen at random; see the module header.
fn pick_port() -> u16 {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .filter(|&low| low > 11_000)
        .unwrap_or(32_768);
    let random = RandomState::new().hash_one((std::process::id(), Instant::now()));
    10_000 + (random % u64::from(low - 10_000)) as u16
}

/// moltd at one version, installed in a fresh machine by a real `npm i -g`
/// (as `molt`, into `/opt/molt`) from a test registry, configured with the
/// test token, under the shipped units; `moltd.socket` listens, the
/// service has not started.
pub struct MoltdService {
    // Fields drop in order: the machine goes before the registry it used.
    pub machine: Machine,
    pub registry: Registry,
    pub version: String,
    pub port: u16,
    pub tmp: tempfile::TempDir,
}

impl MoltdService {
    /// Boots the machine while the registry starts and the real moltd
    /// built at `version` is published, then installs it there.
    pub fn start(root: &Path, version: &str) -> Result<MoltdService> {
        Self::start_package(root, version, &|| {
            versions::packed_moltd(version, DEFAULT_PACKAGE)
        })
    }

    /// [`Self::start`] with the package `tarball` makes (for a binary of
    /// the caller's, such as the benchmark's release build).
    pub fn start_package(
        root: &Path,
        version: &str,
        tarball: &(dyn Fn() -> Result<PathBuf> + Sync),
    ) -> Result<MoltdService> {
        let tmp = tempfile::tempdir()?;
        let (machine, registry) = thread::scope(|s| {
            let machine = s.spawn(|| Machine::boot(root, &Boot::default()));
            let registry = Registry::start(tmp.path()).and_then(|registry| {
                publish(&registry, &tarball()?, None)?;
                Ok(registry)
            });
            let machine = machine
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("booting the machine panicked")));
            (machine, registry)
        });
        let (machine, registry) = (machine?, registry?);
        machine.npm_install(&registry, DEFAULT_PACKAGE, version)?;
        let port = machine.install_units()?;
        let service = MoltdService {
            machine,
            registry,
            version: version.to_owned(),
            port,
            tmp,
        };
        service.write_config(serde_json::json!({}))?;
        Ok(service)
    }

    /// Whether `pid` (as the machine sees it) is a live process there.
    pub fn alive(&self, pid: u32) -> bool {
        std::fs::read_to_string(self.machine.path(&format!("/proc/{pid}/stat")))
            .is_ok_and(|stat| !stat.contains(") Z"))
    }

    /// `openclaw.json` in the state dir, as [`write_config`] writes it (the
    /// test token, no registry check) with the socket's port and `extra`
    /// merged in; the state dir made as `StateDirectory=` makes it.
    pub fn write_config(&self, extra: serde_json::Value) -> Result<()> {
        let m = &self.machine;
        m.run(&[
            "install", "-d", "-o", USER, "-g", USER, "-m", "0700", STATE_DIR,
        ])?;
        let mut config = serde_json::json!({"gateway": {"port": self.port}});
        merge(&mut config, extra);
        write_config(&m.path(STATE_DIR), config);
        let path = format!("{STATE_DIR}/openclaw.json");
        m.run(&["chown", &format!("{USER}:{USER}"), &path])?;
        m.run(&["chmod", "0600", &path])?;
        Ok(())
    }

    /// Publishes `binary` as `version` to this service's registry (a
    /// dist-tag other than `latest` when given).
    pub fn publish(&self, binary: &Path, version: &str, dist_tag: Option<&str>) -> Result<()> {
        let dist = self.tmp.path().join("dist");
        let tarball = crate::pack_moltd(binary, version, &dist, DEFAULT_PACKAGE)?;
        publish(&self.registry, &tarball, dist_tag)
    }

    /// Points moltd's package manager at this service's registry the way
    /// an operator would: `/etc/default/moltd`, the unit's
    /// `EnvironmentFile=`.
    pub fn use_registry(&self) -> Result<()> {
        self.machine.write_file(
            "/etc/default/moltd",
            &format!("npm_config_registry={}\n", self.registry.url()),
            "root:root",
            "0644",
        )
    }

    /// The version of the package installed under `/opt/molt` now.
    pub fn installed_version(&self) -> Result<String> {
        let manifest = self.machine.path(&format!(
            "{PREFIX}/lib/node_modules/{DEFAULT_PACKAGE}/package.json"
        ));
        let manifest: serde_json::Value = serde_json::from_slice(
            &std::fs::read(&manifest).with_context(|| format!("read {}", manifest.display()))?,
        )?;
        manifest["version"]
            .as_str()
            .map(str::to_owned)
            .context("the manifest names no version")
    }

    /// Waits until `MainPID` is neither 0 nor any of `not`: the service's
    /// main process after a restart systemd made.
    pub fn wait_for_main_pid_other_than(&self, not: &[u32], timeout: Duration) -> Result<u32> {
        let deadline = Instant::now() + timeout;
        loop {
            let pid = self.main_pid()?;
            if pid != 0 && !not.contains(&pid) {
                return Ok(pid);
            }
            if Instant::now() > deadline {
                bail!("MainPID still {pid} after {timeout:?}");
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// `127.0.0.1:<port>`, where `moltd.socket` listens.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// `moltd.service`'s `MainPID` (0 when it does not run).
    pub fn main_pid(&self) -> Result<u32> {
        let pid = self.machine.show(SERVICE, "MainPID")?;
        pid.parse().with_context(|| format!("MainPID {pid:?}"))
    }

    /// What a client of process `pid` expects: its address, this version,
    /// and that pid (for [`crate::restarts::client`]).
    pub fn ready(&self, pid: u32) -> Ready {
        Ready {
            addr: self.addr().to_string(),
            version: self.version.clone(),
            pid,
        }
    }
}
