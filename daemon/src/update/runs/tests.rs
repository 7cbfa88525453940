//! The run log: one line per change, torn lines, compaction, concurrent\nwriters, and the bound on what is read back.

use super::*;
use molt_protocol::update::{InstallMode, RunOwner, RunPhase, RunTarget, RunTrigger, VersionRef};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;

fn run(id: &str, phase: RunPhase, at: u64) -> RunRecord {
    RunRecord {
        run_id: RunId::from(id),
        trigger: RunTrigger::Manual,
        actor: Some("operator".to_owned()),
        phase,
        mode: InstallMode::Npm,
        root: Some("/usr/lib/node_modules/moltd".to_owned()),
        target: RunTarget {
            version: Some("2.0.0".to_owned()),
            ..RunTarget::default()
        },
        before: VersionRef::new("1.0.0"),
        after: VersionRef::default(),
        note: None,
        reason: None,
        steps: Vec::new(),
        owner: RunOwner {
            pid: 4242,
            started_at: 1_700_000_000_000,
        },
        requested_at: 1_700_000_000_000,
        updated_at: at,
        finished_at: phase.is_terminal().then_some(at),
        changelog: None,
    }
}

fn store(dir: &tempfile::TempDir) -> RunStore {
    RunStore::new(dir.path().join("update-runs.jsonl"))
}

fn ids_and_phases(runs: &[RunRecord]) -> Vec<(&str, RunPhase)> {
    runs.iter().map(|r| (r.run_id.as_str(), r.phase)).collect()
}

fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

use RunPhase::*;

#[test]
fn a_missing_file_reads_as_no_runs() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir);
    assert_eq!(s.latest(), None);
    assert_eq!(s.get(&RunId::from("run-1")), None);
    assert!(s.history(10).is_empty());
    assert!(s.non_terminal().is_empty());
    assert!(!s.path().exists(), "reading creates nothing");
}

#[test]
fn the_newest_run_follows_writes_by_another_store_on_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let reader = store(&dir);
    let writer = store(&dir);
    assert_eq!(reader.latest(), None);
    writer.record(&run("run-1", Running, 1)).unwrap();
    assert_eq!(reader.latest().unwrap().phase, Running);
    assert_eq!(reader.latest().unwrap().phase, Running, "from the cache");
    writer.record(&run("run-1", Verified, 2)).unwrap();
    assert_eq!(reader.latest().unwrap().phase, Verified);
    writer.record(&run("run-2", Requested, 3)).unwrap();
    assert_eq!(reader.latest().unwrap().run_id, RunId::from("run-2"));
}

#[test]
fn each_change_is_one_line_and_reads_give_the_latest_state() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir);
    s.record(&run("run-1", Requested, 1)).unwrap();
    s.record(&run("run-1", Running, 2)).unwrap();
    s.record(&run("run-2", Requested, 3)).unwrap();

    let raw = lines(s.path());
    assert_eq!(raw.len(), 3);
    let second: serde_json::Value = serde_json::from_str(&raw[1]).unwrap();
    assert_eq!(second["runId"], "run-1");
    assert_eq!(second["phase"], "running");
    let mode = fs::metadata(s.path()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    assert_eq!(s.get(&RunId::from("run-1")), Some(run("run-1", Running, 2)));
    assert_eq!(s.latest(), Some(run("run-2", Requested, 3)));
}

#[test]
fn history_is_newest_first_with_one_entry_per_run() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir);
    for (id, phase, at) in [
        ("run-1", Requested, 1),
        ("run-2", Requested, 2),
        ("run-1", Running, 3),
        ("run-1", Verified, 4),
        ("run-3", Requested, 5),
        ("run-2", Failed, 6),
    ] {
        s.record(&run(id, phase, at)).unwrap();
    }
    // Creation order, not last-update order: run-2 changed last but
    // started before run-3.
    assert_eq!(
        ids_and_phases(&s.history(10)),
        [("run-3", Requested), ("run-2", Failed), ("run-1", Verified)]
    );
    assert_eq!(
        ids_and_phases(&s.history(2)),
        [("run-3", Requested), ("run-2", Failed)]
    );
    assert!(s.history(0).is_empty());
    assert_eq!(ids_and_phases(&s.non_terminal()), [("run-3", Requested)]);
    assert_eq!(s.latest().unwrap().run_id.as_str(), "run-3");
}

#[test]
fn a_torn_last_line_is_skipped_and_cut_off_by_the_next_append() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir);
    s.record(&run("run-1", Requested, 1)).unwrap();
    s.record(&run("run-1", Running, 2)).unwrap();
    // A crash in the middle of the next write.
    let full = serde_json::to_string(&run("run-1", Verified, 3)).unwrap();
    let torn = &full[..full.len() / 2];
    fs::OpenOptions::new()
        .append(true)
        .open(s.path())
        .unwrap()
        .write_all(torn.as_bytes())
        .unwrap();

    assert_eq!(ids_and_phases(&s.history(10)), [("run-1", Running)]);
    assert_eq!(ids_and_phases(&s.non_terminal()), [("run-1", Running)]);

    s.record(&run("run-2", Requested, 4)).unwrap();
    let raw = lines(s.path());
    assert_eq!(raw.len(), 3, "fragment gone, new line whole: {raw:?}");
    for line in &raw {
        serde_json::from_str::<RunRecord>(line).unwrap();
    }
    assert_eq!(
        ids_and_phases(&s.history(10)),
        [("run-2", Requested), ("run-1", Running)]
    );
}

#[test]
fn a_whole_last_line_missing_only_its_newline_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir);
    s.record(&run("run-1", Requested, 1)).unwrap();
    let line = serde_json::to_string(&run("run-1", Running, 2)).unwrap();
    fs::OpenOptions::new()
        .append(true)
        .open(s.path())
        .unwrap()
        .write_all(line.as_bytes())
        .unwrap();
    assert_eq!(s.latest().unwrap().phase, Running);

    s.record(&run("run-2", Requested, 3)).unwrap();
    assert_eq!(lines(s.path()).len(), 3);
    assert_eq!(
        ids_and_phases(&s.history(10)),
        [("run-2", Requested), ("run-1", Running)]
    );
}

#[test]
fn a_file_over_the_read_limit_is_refused_naming_it_and_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    store.record(&run("run-1", RunPhase::Running, 1)).unwrap();
    let limit = store.read_limit();
    File::options()
        .append(true)
        .open(store.path())
        .unwrap()
        .set_len(limit + 1)
        .unwrap();
    let err = store.try_load().unwrap_err();
    crate::fsutil::testing::assert_refused_over(&err, store.path(), limit);
    assert!(store.history(10).is_empty(), "read as none, with a warning");
}

#[test]
fn lines_that_do_not_parse_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir);
    s.record(&run("run-1", Requested, 1)).unwrap();
    let mut f = fs::OpenOptions::new().append(true).open(s.path()).unwrap();
    f.write_all(b"not json\n\n{\"runId\":\"run-9\"}\n").unwrap();
    s.record(&run("run-1", Verified, 2)).unwrap();
    assert_eq!(ids_and_phases(&s.history(10)), [("run-1", Verified)]);
}

#[test]
fn an_unreadable_file_reads_as_empty_and_record_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    // A directory where the file should be.
    let path = dir.path().join("update-runs.jsonl");
    fs::create_dir(&path).unwrap();
    let s = RunStore::new(&path);
    assert!(s.history(10).is_empty());
    let err = s.record(&run("run-1", Requested, 1)).unwrap_err();
    assert!(err.to_string().contains("update-runs.jsonl"), "{err}");
}

#[test]
fn compaction_keeps_the_latest_state_of_the_newest_runs_and_every_unfinished_one() {
    let dir = tempfile::tempdir().unwrap();
    let s = RunStore::with_retention(
        dir.path().join("update-runs.jsonl"),
        Retention {
            max_lines: 10,
            max_bytes: u64::MAX,
            keep_runs: 2,
        },
    );
    // run-1 never finishes (its owner died); the rest do. A newer moltd
    // added a field to run-3's records: compaction keeps it.
    s.record(&run("run-1", Requested, 1)).unwrap();
    s.record(&run("run-1", Running, 2)).unwrap();
    for (i, id) in ["run-2", "run-3", "run-4", "run-5"].iter().enumerate() {
        let at = 10 * (i as u64 + 1);
        for (phase, dt) in [(Requested, 0), (Running, 1), (Verified, 2)] {
            if *id == "run-3" {
                let mut v = serde_json::to_value(run(id, phase, at + dt)).unwrap();
                v["futureField"] = serde_json::json!(true);
                let mut line = serde_json::to_vec(&v).unwrap();
                line.push(b'\n');
                // Through the file, as another moltd would write it.
                fs::OpenOptions::new()
                    .append(true)
                    .open(s.path())
                    .unwrap()
                    .write_all(&line)
                    .unwrap();
            } else {
                s.record(&run(id, phase, at + dt)).unwrap();
            }
        }
    }
    // Line 11 (run-4 verified) triggered compaction: run-1 (unfinished),
    // run-3 and run-4 (the newest two) kept with one line each; run-2
    // dropped. run-5's three lines came after.
    let raw = lines(s.path());
    assert_eq!(raw.len(), 6, "{raw:#?}");
    assert!(raw[1].contains("\"futureField\":true"), "{}", raw[1]);
    assert_eq!(
        ids_and_phases(&s.history(10)),
        [
            ("run-5", Verified),
            ("run-4", Verified),
            ("run-3", Verified),
            ("run-1", Running)
        ]
    );
    assert_eq!(s.get(&RunId::from("run-2")), None);
    assert_eq!(ids_and_phases(&s.non_terminal()), [("run-1", Running)]);
    let mode = fs::metadata(s.path()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "no temp files");
}

#[test]
fn select_kept_table() {
    let r = |max_bytes, keep_runs| Retention {
        max_lines: 1000,
        max_bytes,
        keep_runs,
    };
    let t = |bytes| (true, bytes);
    let open = |bytes| (false, bytes);
    type Case<'a> = (&'a [(bool, u64)], Retention, &'a [bool]);
    let cases: &[Case] = &[
        (&[], r(100, 2), &[]),
        (&[t(1), t(1), t(1)], r(100, 2), &[false, true, true]),
        (&[open(1), t(1), t(1)], r(100, 1), &[true, false, true]),
        // Over half of max_bytes: drop the oldest finished runs first.
        (&[t(30), t(30), t(30)], r(120, 3), &[false, true, true]),
        (&[t(30), open(30), t(30)], r(80, 3), &[false, true, true]),
        // The newest run stays even alone over budget.
        (&[t(30), t(500)], r(100, 3), &[false, true]),
        // keep_runs is capped at half of max_lines.
        (
            &[t(1), t(1), t(1)],
            Retention {
                max_lines: 4,
                max_bytes: 100,
                keep_runs: 10,
            },
            &[false, true, true],
        ),
    ];
    for (runs, retention, expected) in cases {
        assert_eq!(
            &select_kept(runs, retention),
            expected,
            "{runs:?} {retention:?}"
        );
    }
}

#[test]
fn byte_bound_triggers_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let line_len = serde_json::to_vec(&run("run-0", Verified, 1))
        .unwrap()
        .len() as u64
        + 1;
    let s = RunStore::with_retention(
        dir.path().join("update-runs.jsonl"),
        Retention {
            max_lines: usize::MAX,
            max_bytes: line_len * 4,
            keep_runs: 100,
        },
    );
    for i in 0..5 {
        s.record(&run(&format!("run-{i}"), Verified, i)).unwrap();
    }
    // The fifth line crossed 4 lines' worth; compaction cut to half.
    assert_eq!(
        ids_and_phases(&s.history(10)),
        [("run-4", Verified), ("run-3", Verified)]
    );
}

/// `writers` threads, each with its own store (as two processes would
/// have), each recording `runs_each` runs through three phases.
fn record_concurrently(path: &Path, retention: Retention, writers: usize, runs_each: usize) {
    let threads: Vec<_> = (0..writers)
        .map(|w| {
            let s = RunStore::with_retention(path, retention);
            std::thread::spawn(move || {
                for i in 0..runs_each {
                    let id = format!("run-{w}-{i}");
                    for phase in [Requested, Running, Verified] {
                        s.record(&run(&id, phase, 1)).unwrap();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn concurrent_appends_stay_whole_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("update-runs.jsonl");
    let retention = Retention {
        max_lines: usize::MAX,
        max_bytes: u64::MAX,
        keep_runs: usize::MAX,
    };
    record_concurrently(&path, retention, 8, 15);
    let raw = lines(&path);
    assert_eq!(raw.len(), 8 * 15 * 3);
    for line in &raw {
        serde_json::from_str::<RunRecord>(line).unwrap();
    }
    let all = RunStore::new(&path).history(usize::MAX);
    assert_eq!(all.len(), 8 * 15);
    assert!(all.iter().all(|r| r.phase == Verified));
}

#[test]
fn concurrent_compactions_lose_no_change() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("update-runs.jsonl");
    let retention = Retention {
        max_lines: 16,
        max_bytes: u64::MAX,
        keep_runs: 8,
    };
    record_concurrently(&path, retention, 8, 15);
    // Compaction never drops an unfinished run, so a lost append shows
    // up as a run stuck before `verified`.
    let all = RunStore::new(&path).history(usize::MAX);
    assert!(all.len() >= 8, "{}", all.len());
    let stuck: Vec<_> = all.iter().filter(|r| r.phase != Verified).collect();
    assert!(stuck.is_empty(), "{stuck:#?}");
    assert!(lines(&path).len() <= 16, "compacted");
}

#[test]
fn run_ids_are_unique_and_sort_in_creation_order() {
    let ids: Vec<RunId> = (0..2000).map(|_| new_run_id()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, ids, "strictly increasing, so unique");
    let id = ids[0].as_str();
    let parts: Vec<&str> = id.split('-').collect();
    assert_eq!(parts.len(), 3, "{id}");
    assert_eq!(parts[0], "run");
    assert_eq!(parts[1].len(), 13);
    let ms: u64 = parts[1].parse().unwrap();
    assert!(ms.abs_diff(unix_ms()) < 60_000, "{id}");
    assert_eq!(parts[2].len(), 8);
    assert!(parts[2].bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
}
