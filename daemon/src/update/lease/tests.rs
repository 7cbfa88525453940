//! The lease across threads and across processes (this test binary re-executed
//! as a lease holder): one winner, dead owners reclaimed, live ones kept.

use super::*;
use std::io::{BufRead, BufReader, Lines, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Barrier};

fn rid(s: &str) -> RunId {
    RunId::from(s)
}

fn lease_file(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join(".moltd.molt-update.lease")
}

/// What the file names, read under a shared lock so a write in progress
/// is never seen half done.
fn holder_in(path: &Path) -> Option<LeaseHolder> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(e) => panic!("open {}: {e}", path.display()),
    };
    file.lock_shared().unwrap();
    match read_slot(&file, path).unwrap() {
        Slot::Held(holder) => Some(holder),
        Slot::Free => None,
    }
}

fn write_holder(path: &Path, holder: &LeaseHolder) {
    fs::write(path, serde_json::to_vec(holder).unwrap()).unwrap();
}

fn busy_run(err: LeaseError) -> (RunId, u32) {
    match err {
        LeaseError::Busy { run_id, owner } => (run_id, owner.pid),
        other => panic!("expected Busy, got {other:?}"),
    }
}

/// A live process that is not this one: `cat` waits on its stdin.
struct Other(Child);

impl Other {
    fn spawn() -> Other {
        let child = Command::new("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        Other(child)
    }

    fn owner(&self) -> RunOwner {
        process_owner(self.0.id()).unwrap()
    }

    /// Ends it and reaps it, so no process has its pid any more.
    fn exit(mut self) {
        drop(self.0.stdin.take());
        self.0.wait().unwrap();
    }
}

impl Drop for Other {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The pid of a process that has exited and been reaped.
fn gone_pid() -> u32 {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

#[test]
fn acquire_records_the_holder_and_drop_frees_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = lease_file(&dir);
    let lease = Lease::acquire(&path, rid("run-1"), current_owner()).unwrap();

    let holder = holder_in(&path).unwrap();
    assert_eq!(holder.run_id, rid("run-1"));
    assert_eq!(holder.owner, current_owner());
    assert_eq!(holder.start_ticks, process_start_time(std::process::id()));
    assert_eq!(holder.boot_id.as_deref(), boot_id());
    assert_eq!(holder.owner_state(), OwnerState::Alive);
    let raw: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    assert_eq!(raw["runId"], "run-1");
    assert_eq!(raw["owner"]["pid"], std::process::id());
    let mode = crate::fsutil::testing::mode(&path);
    assert_eq!(mode, 0o600);

    drop(lease);
    assert_eq!(holder_in(&path), None);
    assert!(path.exists(), "the file is kept, empty");
}

#[test]
fn second_acquire_is_busy_naming_the_running_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = lease_file(&dir);
    let first = Lease::acquire(&path, rid("run-a"), current_owner()).unwrap();
    let err = Lease::acquire(&path, rid("run-b"), current_owner()).unwrap_err();
    assert!(err.to_string().contains("run-a"), "{err}");
    assert_eq!(busy_run(err), (rid("run-a"), std::process::id()));
    // The same run twice is refused too: two handles would double-release.
    let again = Lease::acquire(&path, rid("run-a"), current_owner()).unwrap_err();
    assert_eq!(busy_run(again).0, rid("run-a"));

    first.release().unwrap();
    let second = Lease::acquire(&path, rid("run-b"), current_owner()).unwrap();
    assert_eq!(holder_in(&path).unwrap().run_id, rid("run-b"));
    drop(second);
}

#[test]
fn threads_racing_get_exactly_one_lease() {
    let dir = tempfile::tempdir().unwrap();
    let path = Arc::new(lease_file(&dir));
    for round in 0..20 {
        let n = 12;
        let barrier = Arc::new(Barrier::new(n));
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let (path, barrier) = (Arc::clone(&path), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    barrier.wait();
                    let run = rid(&format!("run-{round}-{i}"));
                    Lease::acquire(&path, run, current_owner())
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let winners: Vec<&Lease> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(winners.len(), 1, "round {round}: one winner");
        let winner = winners[0].holder.run_id.clone();
        assert_eq!(holder_in(&path).unwrap().run_id, winner);
        for result in results {
            match result {
                Ok(lease) => drop(lease),
                Err(err) => assert_eq!(busy_run(err).0, winner, "losers name the winner"),
            }
        }
        assert_eq!(holder_in(&path), None, "winner's drop freed it");
    }
}

#[test]
fn a_dead_owners_lease_is_reclaimed() {
    let dir = tempfile::tempdir().unwrap();
    let path = lease_file(&dir);
    let other = Other::spawn();
    write_holder(
        &path,
        &LeaseHolder::identify(rid("run-old"), other.owner()).unwrap(),
    );
    let err = Lease::acquire(&path, rid("run-new"), current_owner()).unwrap_err();
    assert_eq!(busy_run(err).0, rid("run-old"));

    other.exit();
    let stale = holder_in(&path).unwrap();
    assert_eq!(stale.owner_state(), OwnerState::Dead(DeadReason::NoProcess));
    let _ours = Lease::acquire(&path, rid("run-new"), current_owner()).unwrap();
    assert_eq!(holder_in(&path).unwrap().run_id, rid("run-new"));
}

#[test]
fn a_reused_pid_or_a_reboot_means_the_owner_is_dead() {
    let dir = tempfile::tempdir().unwrap();
    let path = lease_file(&dir);
    // This process's pid is alive; a different start time means the
    // recorded owner was an earlier process with the same pid.
    let mut reused = LeaseHolder::identify(rid("run-old"), current_owner()).unwrap();
    reused.start_ticks = reused.start_ticks.map(|t| t + 12345);
    assert_eq!(
        reused.owner_state(),
        OwnerState::Dead(DeadReason::PidReused)
    );
    write_holder(&path, &reused);
    let lease = Lease::acquire(&path, rid("run-new"), current_owner()).unwrap();
    assert_eq!(holder_in(&path).unwrap().run_id, rid("run-new"));
    drop(lease);

    let mut rebooted = LeaseHolder::identify(rid("run-old"), current_owner()).unwrap();
    rebooted.boot_id = Some("an-earlier-boot".to_owned());
    assert_eq!(
        rebooted.owner_state(),
        OwnerState::Dead(DeadReason::Rebooted)
    );
    write_holder(&path, &rebooted);
    drop(Lease::acquire(&path, rid("run-new"), current_owner()).unwrap());
}

#[test]
fn an_owner_that_cannot_be_judged_keeps_its_lease() {
    let dir = tempfile::tempdir().unwrap();
    let path = lease_file(&dir);
    // Live pid, no recorded start time: it might be the owner.
    let mut unknown = LeaseHolder::identify(rid("run-old"), current_owner()).unwrap();
    unknown.start_ticks = None;
    assert_eq!(unknown.owner_state(), OwnerState::Unknown);
    write_holder(&path, &unknown);
    let err = Lease::acquire(&path, rid("run-new"), current_owner()).unwrap_err();
    assert_eq!(busy_run(err).0, rid("run-old"));
}

#[test]
fn unparseable_content_counts_as_free() {
    let dir = tempfile::tempdir().unwrap();
    let path = lease_file(&dir);
    fs::write(&path, b"{\"runId\": \"run-x\", \"own").unwrap();
    assert_eq!(holder_in(&path), None);
    let lease = Lease::acquire(&path, rid("run-1"), current_owner()).unwrap();
    assert_eq!(holder_in(&path).unwrap().run_id, rid("run-1"));
    drop(lease);
}

#[test]
fn release_and_drop_leave_a_file_that_names_someone_else_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = lease_file(&dir);
    let other = Other::spawn();
    let theirs = LeaseHolder::identify(rid("run-new"), other.owner()).unwrap();

    // Taken over under the handle (e.g. reclaimed by a process that
    // judged this owner dead, or rewritten by an operator).
    let lease = Lease::acquire(&path, rid("run-old"), current_owner()).unwrap();
    write_holder(&path, &theirs);
    let err = lease.release().unwrap_err();
    match &err {
        LeaseError::Lost { run_id, found, .. } => {
            assert_eq!(run_id, &rid("run-old"));
            assert_eq!(found.as_ref().unwrap().run_id, rid("run-new"));
        }
        other => panic!("expected Lost, got {other:?}"),
    }
    assert!(err.to_string().contains("run-new"), "{err}");
    assert_eq!(holder_in(&path).as_ref(), Some(&theirs), "untouched");

    fs::write(&path, b"").unwrap();
    let lease = Lease::acquire(&path, rid("run-old"), current_owner()).unwrap();
    write_holder(&path, &theirs);
    drop(lease);
    assert_eq!(holder_in(&path).as_ref(), Some(&theirs), "untouched");

    // A handle whose file was cleared under it cannot release it either.
    fs::write(&path, b"").unwrap();
    let lease = Lease::acquire(&path, rid("run-old"), current_owner()).unwrap();
    fs::write(&path, b"").unwrap();
    assert!(matches!(
        lease.release(),
        Err(LeaseError::Lost { found: None, .. })
    ));
}

#[test]
fn a_lease_cannot_be_given_to_a_process_that_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let path = lease_file(&dir);
    let pid = gone_pid();
    let nobody = RunOwner { pid, started_at: 0 };
    assert!(matches!(
        Lease::acquire(&path, rid("run-1"), nobody.clone()),
        Err(LeaseError::OwnerNotRunning { pid: p }) if p == pid
    ));
    assert_eq!(holder_in(&path), None, "nothing written");
}

#[test]
fn lease_path_sits_beside_the_install_root() {
    assert_eq!(
        lease_path(Path::new("/nonexistent/lib/node_modules/moltd")),
        Path::new("/nonexistent/lib/node_modules/.moltd.molt-update.lease")
    );
    assert_eq!(
        lease_path(Path::new("/nonexistent/src/molt/")),
        Path::new("/nonexistent/src/.molt.molt-update.lease")
    );
    assert_eq!(lease_path(Path::new("/")), Path::new("/.molt-update.lease"));

    // Two spellings of one root share one lease.
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("prefix");
    fs::create_dir_all(real.join("moltd")).unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let canonical = fs::canonicalize(&real).unwrap();
    let expected = canonical.join(".moltd.molt-update.lease");
    assert_eq!(lease_path(&real.join("moltd")), expected);
    assert_eq!(lease_path(&link.join("moltd")), expected);
    fs::create_dir(real.join("moltd/sub")).unwrap();
    assert_eq!(lease_path(&real.join("moltd/sub/..")), expected);
    assert_eq!(
        lease_path(Path::new("/nonexistent/a/moltd/b/..")),
        Path::new("/nonexistent/a/.moltd.molt-update.lease")
    );
}

// --- Across processes: this test binary re-executed as a lease holder. ---

const CHILD_ENV: &str = "MOLT_LEASE_TEST_CHILD";
const CHILD_SAYS: &str = "lease-child: ";

/// Not a test of its own: the body of the child processes the
/// cross-process tests start (this binary re-executed with `--ignored`
/// and `CHILD_ENV` = `<lease path>\t<run id>\t<gate path>`). It prints
/// `ready`, waits for a shared lock on the gate file (the parent holds it
/// exclusively and lets every child go at once), races for the lease,
/// reports, then exits on `crash` from stdin or when stdin closes.
/// Ignored, so a test run lists it as skipped instead of counting a pass
/// that tested nothing; run without its variable, it fails.
#[test]
#[ignore = "the body of the child processes of the cross-process lease tests"]
fn child_process_entry() {
    let spec = std::env::var(CHILD_ENV).unwrap_or_else(|_| {
        panic!("{CHILD_ENV} is not set: this runs as a child of the cross-process lease tests")
    });
    let say = |msg: &str| {
        let mut out = io::stdout().lock();
        writeln!(out, "\n{CHILD_SAYS}{msg}").unwrap();
        out.flush().unwrap();
    };
    let mut parts = spec.split('\t');
    let (path, run, gate) = (
        Path::new(parts.next().unwrap()),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let gate = File::open(gate).unwrap();
    say("ready");
    gate.lock_shared().unwrap();
    let _lease = match Lease::acquire(path, rid(run), current_owner()) {
        Ok(lease) => {
            say(&format!("acquired {}", std::process::id()));
            Some(lease)
        }
        Err(LeaseError::Busy { run_id, owner }) => {
            say(&format!("busy {run_id} {}", owner.pid));
            None
        }
        Err(err) => {
            say(&format!("error {err}"));
            None
        }
    };
    if let Some(command) = io::stdin().lock().lines().next() {
        let command = command.unwrap();
        assert_eq!(command, "crash", "unknown command");
        // Exit without running destructors, as a crash would: the
        // lease keeps naming this (now dead) process.
        std::process::exit(0);
    }
    // stdin closed: a normal exit; dropping releases the lease.
}

struct ChildHolder {
    child: Child,
    stdin: Option<ChildStdin>,
    out: Lines<BufReader<ChildStdout>>,
    run: RunId,
}

impl ChildHolder {
    /// Starts a child parked on `gate` (see `child_process_entry`).
    fn spawn(path: &Path, run: &str, gate: &Path) -> ChildHolder {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "update::lease::tests::child_process_entry",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(
                CHILD_ENV,
                format!("{}\t{run}\t{}", path.display(), gate.display()),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let out = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut holder = ChildHolder {
            child,
            stdin,
            out,
            run: rid(run),
        };
        assert_eq!(holder.next(), "ready");
        holder
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn send(&mut self, command: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{command}").unwrap();
        stdin.flush().unwrap();
    }

    /// The child's next message (the test harness prints lines too).
    fn next(&mut self) -> String {
        loop {
            let line = self.out.next().expect("child output ended").unwrap();
            if let Some((_, msg)) = line.split_once(CHILD_SAYS) {
                return msg.to_owned();
            }
        }
    }

    /// Closes stdin (or sends `crash`) and waits for the exit.
    fn finish(mut self, crash: bool) {
        if crash {
            self.send("crash");
        }
        drop(self.stdin.take());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "child failed: {status}");
    }
}

impl Drop for ChildHolder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A file the parent locks exclusively; children wait for a shared lock.
struct Gate {
    path: PathBuf,
    file: File,
}

impl Gate {
    fn closed(dir: &tempfile::TempDir) -> Gate {
        let path = dir.path().join("gate");
        let file = File::create(&path).unwrap();
        file.lock().unwrap();
        Gate { path, file }
    }

    fn open(self) {
        self.file.unlock().unwrap();
    }
}

/// Starts `n` children parked on one gate and opens it: they race.
fn race(dir: &tempfile::TempDir, path: &Path, round: usize, n: usize) -> Vec<ChildHolder> {
    let gate = Gate::closed(dir);
    let children: Vec<ChildHolder> = (0..n)
        .map(|i| ChildHolder::spawn(path, &format!("run-{round}-{i}"), &gate.path))
        .collect();
    gate.open();
    children
}

#[test]
fn processes_racing_get_exactly_one_lease_and_a_crashed_winner_is_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let path = lease_file(&dir);
    for round in 0..3 {
        let mut children = race(&dir, &path, round, 6);
        let answers: Vec<String> = children.iter_mut().map(ChildHolder::next).collect();
        let winners: Vec<usize> = (0..children.len())
            .filter(|&i| answers[i].starts_with("acquired "))
            .collect();
        assert_eq!(winners.len(), 1, "{answers:?}");
        let winner = winners[0];
        let (win_run, win_pid) = (children[winner].run.clone(), children[winner].pid());
        assert_eq!(answers[winner], format!("acquired {win_pid}"));
        for (i, answer) in answers.iter().enumerate() {
            if i != winner {
                assert_eq!(answer, &format!("busy {win_run} {win_pid}"));
            }
        }
        let holder = holder_in(&path).unwrap();
        assert_eq!(
            (holder.run_id, holder.owner.pid),
            (win_run.clone(), win_pid)
        );
        let err = Lease::acquire(&path, rid("run-parent"), current_owner()).unwrap_err();
        assert_eq!(busy_run(err), (win_run.clone(), win_pid));

        // The winner crashes holding the lease (a supervised restart
        // looks the same): the next acquire reclaims it.
        let crashed = children.remove(winner);
        crashed.finish(true);
        for child in children {
            child.finish(false);
        }
        assert_eq!(
            holder_in(&path).unwrap().owner_state(),
            OwnerState::Dead(DeadReason::NoProcess)
        );
        let next_run = rid(&format!("run-parent-{round}"));
        let taken = Lease::acquire(&path, next_run.clone(), current_owner()).unwrap();
        let holder = holder_in(&path).unwrap();
        assert_eq!((holder.run_id, holder.owner), (next_run, current_owner()));
        taken.release().unwrap();
        assert_eq!(holder_in(&path), None);
    }
}
