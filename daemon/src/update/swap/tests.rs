//! The swap on hand-built npm-shaped trees: every partial swap undone in
//! both rename modes, shim repair, refusals, file formats, the backup
//! record and the retirement policy. (The real managers' layouts are
//! exercised end to end in tests/tests/update_swap.rs.)

use std::collections::BTreeMap;
use std::os::unix::fs::{PermissionsExt, symlink};

use super::*;

use crate::update::testing::{npm_install, npm_stage};

/// A journal path of its own, outside the trees compared.
fn journal() -> PathBuf {
    std::env::temp_dir().join(format!(
        "molt-swap-journal-{}.json",
        crate::fsutil::random_suffix()
    ))
}

/// Every path under `dir` with its kind and content or link target.
fn tree(dir: &Path) -> BTreeMap<String, String> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for p in list(dir) {
            let rel = p.strip_prefix(base).unwrap().display().to_string();
            let meta = fs::symlink_metadata(&p).unwrap();
            let mode = meta.permissions().mode() & 0o7777;
            let what = if meta.file_type().is_symlink() {
                format!("-> {}", fs::read_link(&p).unwrap().display())
            } else if meta.is_dir() {
                walk(base, &p, out);
                format!("dir {mode:o}")
            } else {
                format!(
                    "{mode:o} {}",
                    String::from_utf8_lossy(&fs::read(&p).unwrap())
                )
            };
            out.insert(rel, what);
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn without_stage(t: BTreeMap<String, String>) -> BTreeMap<String, String> {
    t.into_iter()
        .filter(|(k, _)| !k.contains(".molt-stage-"))
        .collect()
}

fn live_version(install: &Install) -> Option<String> {
    version_of(&install.root)
}

#[test]
fn every_partial_swap_is_undone_in_both_rename_modes() {
    for no_exchange in [false, true] {
        NO_EXCHANGE.set(no_exchange);
        let tmp = tempfile::tempdir().unwrap();
        let install = npm_install(tmp.path(), "1.0.0");
        let before = tree(tmp.path());
        let mut failures = Vec::new();
        let backup = loop {
            let stage = npm_stage(&install, "2.0.0");
            let fail_at = failures.len();
            let mut calls = 0;
            let result = swap_with_faults(&install, &stage, "t", &journal(), &mut |_| {
                calls += 1;
                if calls == fail_at + 1 {
                    return Err(io::Error::other("injected"));
                }
                Ok(())
            });
            match result {
                Ok(backup) => break backup,
                Err(SwapError::Failed { step, .. }) => {
                    assert_eq!(live_version(&install).as_deref(), Some("1.0.0"), "{step}");
                    assert_eq!(before, without_stage(tree(tmp.path())), "after {step}");
                    failures.push(step);
                }
                Err(e) => panic!("{e}"),
            }
        };
        let names: Vec<&str> = failures
            .iter()
            .map(|s| s.split(' ').next().unwrap())
            .collect();
        let want: &[&str] = if no_exchange {
            &["exchange-root", "park-previous", "install-root"]
        } else {
            &["exchange-root", "park-previous"]
        };
        assert_eq!(names, want);
        assert_eq!(live_version(&install).as_deref(), Some("2.0.0"));
        let parked = backup.previous_tree.clone().unwrap();
        assert_eq!(
            parked,
            tmp.path()
                .join("lib/node_modules/@molt/.moltd.molt-backup-t")
        );
        assert_eq!(version_of(&parked).as_deref(), Some("1.0.0"));

        rollback(&install, &backup).unwrap();
        assert_eq!(before, without_stage(tree(tmp.path())));
        rollback(&install, &backup).unwrap();
        assert_eq!(before, without_stage(tree(tmp.path())), "idempotent");
    }
    NO_EXCHANGE.set(false);
}

#[test]
fn a_missing_or_wrong_shim_is_made_right_and_restored() {
    for previous in [None, Some("../elsewhere/moltd")] {
        let tmp = tempfile::tempdir().unwrap();
        let install = npm_install(tmp.path(), "1.0.0");
        fs::remove_file(&install.entrypoint).unwrap();
        if let Some(target) = previous {
            symlink(target, &install.entrypoint).unwrap();
        }
        let before = tree(tmp.path());
        let stage = npm_stage(&install, "2.0.0");
        let backup = swap(&install, &stage, "t", &journal()).unwrap();
        assert_eq!(
            fs::read_link(&install.entrypoint).unwrap(),
            Path::new("../lib/node_modules/@molt/moltd/bin/moltd")
        );
        let shim = backup.shim.clone().unwrap();
        assert_eq!(
            shim.previous,
            previous.map_or(Shim::Missing, |t| Shim::Symlink { target: t.into() })
        );
        rollback(&install, &backup).unwrap();
        assert_eq!(before, without_stage(tree(tmp.path())));
    }
}

#[test]
fn refusals_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let install = npm_install(tmp.path(), "1.0.0");
    let stage = npm_stage(&install, "2.0.0");
    let before = without_stage(tree(tmp.path()));
    for tag in ["", "../x", "a/b", ".hidden", &"x".repeat(65)] {
        assert!(
            matches!(
                swap(&install, &stage, tag, &journal()),
                Err(SwapError::Preflight(_))
            ),
            "{tag:?}"
        );
    }
    fs::create_dir(
        tmp.path()
            .join("lib/node_modules/@molt/.moltd.molt-backup-t"),
    )
    .unwrap();
    let err = swap(&install, &stage, "t", &journal()).unwrap_err();
    assert!(matches!(err, SwapError::Preflight(_)), "{err}");
    fs::remove_dir(
        tmp.path()
            .join("lib/node_modules/@molt/.moltd.molt-backup-t"),
    )
    .unwrap();
    fs::remove_dir_all(stage.join("lib")).unwrap();
    let err = swap(&install, &stage, "t", &journal()).unwrap_err();
    assert!(err.to_string().contains("staged package root"), "{err}");
    let git = Install {
        mode: InstallMode::Git,
        ..install.clone()
    };
    assert!(matches!(
        swap(&git, &stage, "t", &journal()),
        Err(SwapError::Preflight(_))
    ));
    assert_eq!(before, without_stage(tree(tmp.path())));
}

#[test]
fn rollback_refuses_a_tree_that_changed_since() {
    let tmp = tempfile::tempdir().unwrap();
    let install = npm_install(tmp.path(), "1.0.0");
    let backup = swap(&install, &npm_stage(&install, "2.0.0"), "t", &journal()).unwrap();
    // Someone ran the manager by hand afterwards.
    crate::update::testing::write_package(&install.root, "3.0.0");
    let err = rollback(&install, &backup).unwrap_err();
    assert!(matches!(err, SwapError::Diverged(_)), "{err}");
    assert_eq!(live_version(&install).as_deref(), Some("3.0.0"));
    // A backup of another install is refused too.
    let other = Install {
        root: tmp.path().join("elsewhere"),
        ..install.clone()
    };
    assert!(matches!(
        rollback(&other, &backup),
        Err(SwapError::Diverged(_))
    ));
}

#[test]
fn discard_keeps_only_the_last_backup() {
    let tmp = tempfile::tempdir().unwrap();
    let install = npm_install(tmp.path(), "1.0.0");
    let first = swap(&install, &npm_stage(&install, "2.0.0"), "a", &journal()).unwrap();
    discard(&first);
    assert!(first.previous_tree.as_ref().unwrap().is_dir(), "kept");
    let leftover = tmp
        .path()
        .join("lib/node_modules/@molt/.moltd.molt-failed-x-1");
    fs::create_dir(&leftover).unwrap();
    let unrelated = tmp
        .path()
        .join("lib/node_modules/@molt/.other.molt-backup-a");
    fs::create_dir(&unrelated).unwrap();

    let second = swap(&install, &npm_stage(&install, "3.0.0"), "b", &journal()).unwrap();
    discard(&second);
    assert!(second.previous_tree.as_ref().unwrap().is_dir(), "kept");
    assert!(!first.previous_tree.as_ref().unwrap().exists(), "retired");
    assert!(!leftover.exists(), "a failed rollback's leftover goes");
    assert!(unrelated.exists(), "another package's backup is not ours");
    // The kept one still rolls back by hand.
    rollback(&install, &second).unwrap();
    assert_eq!(live_version(&install).as_deref(), Some("2.0.0"));
    // The retired one cannot, and says why.
    let err = rollback(&install, &first).unwrap_err();
    assert!(err.to_string().contains("gone"), "{err}");
}

#[test]
fn manifests_keep_their_indent_order_and_final_newline() {
    let pnpm =
        "{\n\t\"dependencies\": {\n\t\t\"a\": \"1.0.0\",\n\t\t\"@molt/moltd\": \"1.0.0\"\n\t}\n}\n";
    assert_eq!(
        set_dependency(pnpm, "@molt/moltd", "2.0.0").unwrap(),
        "{\n\t\"dependencies\": {\n\t\t\"a\": \"1.0.0\",\n\t\t\"@molt/moltd\": \"2.0.0\"\n\t}\n}\n"
    );
    let bun = "{\n  \"dependencies\": {\n    \"@molt/moltd\": \"^1.0.0\"\n  }\n}";
    assert_eq!(
        set_dependency(bun, "@molt/moltd", "2.0.0").unwrap(),
        "{\n  \"dependencies\": {\n    \"@molt/moltd\": \"2.0.0\"\n  }\n}"
    );
    assert!(set_dependency("{}", "x", "1").is_err());
    assert!(set_dependency("not json", "x", "1").is_err());
}

#[test]
fn the_backup_record_is_plain_camel_case_json() {
    let backup = Backup {
        mode: InstallMode::Pnpm,
        package: "@molt/moltd".into(),
        tag: "run-1".into(),
        root: "/p/global/5/node_modules/@molt/moltd".into(),
        entrypoint: "/p/moltd".into(),
        previous_version: Some("1.0.0".into()),
        new_version: Some("2.0.0".into()),
        previous_tree: None,
        root_link: Some(Change {
            path: "/p/global/5/node_modules/@molt/moltd".into(),
            previous: "../../.pnpm/@molt+moltd@1.0.0/node_modules/@molt/moltd".into(),
            current: "../../.pnpm/@molt+moltd@2.0.0/node_modules/@molt/moltd".into(),
        }),
        shim: Some(Change {
            path: "/p/moltd".into(),
            previous: Shim::Script {
                content: "#!/bin/sh\n".into(),
                mode: 0o755,
            },
            current: Shim::Missing,
        }),
        added: vec!["/p/global/5/.pnpm/@molt+moltd@2.0.0".into()],
        displaced: Vec::new(),
        files: Vec::new(),
    };
    let json = serde_json::to_value(&backup).unwrap();
    assert_eq!(json["mode"], "pnpm");
    assert_eq!(json["previousVersion"], "1.0.0");
    assert_eq!(
        json["rootLink"]["current"],
        "../../.pnpm/@molt+moltd@2.0.0/node_modules/@molt/moltd"
    );
    assert_eq!(json["shim"]["previous"]["kind"], "script");
    assert_eq!(json["shim"]["current"]["kind"], "missing");
    let back: Backup = serde_json::from_value(json).unwrap();
    assert_eq!(back, backup);
    // Written by an older successor without the optional lists: still read.
    let minimal = serde_json::json!({
        "mode": "npm", "package": "moltd", "tag": "t", "root": "/r", "entrypoint": "/e",
        "previousVersion": null, "newVersion": "2.0.0"
    });
    assert!(serde_json::from_value::<Backup>(minimal).is_ok());
}

#[test]
fn relative_link_targets_resolve_lexically() {
    assert_eq!(
        lexical(Path::new(
            "/p/global/5/node_modules/@molt/../../.pnpm/x/node_modules/@molt/moltd"
        )),
        Path::new("/p/global/5/.pnpm/x/node_modules/@molt/moltd")
    );
    assert_eq!(lexical(Path::new("/a/./b/../c")), Path::new("/a/c"));
}

/// A crash (here: a panic out of the hook, which skips every undo and
/// leaves the journal) before each operation, then the next start: the
/// new version running finishes the swap, the previous one reverses it,
/// in both rename modes.
#[test]
fn a_crash_at_any_operation_is_finished_or_reversed_by_the_version_that_runs() {
    for no_exchange in [false, true] {
        NO_EXCHANGE.set(no_exchange);
        let mut crash_at = 1;
        loop {
            let mut crashed_before = Vec::new();
            for running in ["2.0.0", "1.0.0"] {
                let tmp = tempfile::tempdir().unwrap();
                let install = npm_install(tmp.path(), "1.0.0");
                let before = tree(tmp.path());
                let state = tempfile::tempdir().unwrap();
                let journal = state.path().join("update-swap.json");
                let stage = npm_stage(&install, "2.0.0");
                let mut calls = 0;
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    swap_with_faults(&install, &stage, "t", &journal, &mut |step| {
                        calls += 1;
                        if calls == crash_at {
                            panic!("crash before {step}");
                        }
                        Ok(())
                    })
                }));
                if result.is_ok() {
                    assert!(!journal.exists(), "a finished swap clears its journal");
                    continue;
                }
                crashed_before.push(running);
                let found = read_journal(&journal)
                    .unwrap()
                    .expect("the journal survives");
                match recover(&found, running).unwrap() {
                    Recovered::Completed(backup) => {
                        assert_eq!(running, "2.0.0");
                        assert_eq!(live_version(&install).as_deref(), Some("2.0.0"));
                        let parked = backup.previous_tree.clone().unwrap();
                        assert_eq!(version_of(&parked).as_deref(), Some("1.0.0"), "kept");
                        // What it returns undoes it like any swap's backup.
                        rollback(&install, &backup).unwrap();
                        assert_eq!(before, without_stage(tree(tmp.path())));
                    }
                    Recovered::Reversed => {
                        assert_eq!(running, "1.0.0");
                        assert_eq!(before, without_stage(tree(tmp.path())), "at {crash_at}");
                    }
                }
            }
            if crashed_before.is_empty() {
                break;
            }
            crash_at += 1;
        }
        // Before the exchange, the park, and after the last operation;
        // without RENAME_EXCHANGE also before the second rename.
        let points = if no_exchange { 4 } else { 3 };
        assert_eq!(crash_at, points + 1, "no_exchange: {no_exchange}");
    }
    NO_EXCHANGE.set(false);
}

#[test]
fn a_journal_left_by_a_crash_blocks_the_next_swap_and_a_stranger_version_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let install = npm_install(tmp.path(), "1.0.0");
    let journal = tmp.path().join("update-swap.json");
    let stage = npm_stage(&install, "2.0.0");
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        swap_with_faults(&install, &stage, "t", &journal, &mut |_| panic!("crash"))
    }));
    let found = read_journal(&journal).unwrap().unwrap();
    assert!(matches!(
        swap(&install, &npm_stage(&install, "2.0.0"), "u", &journal),
        Err(SwapError::Preflight(m)) if m.contains("interrupted swap")
    ));
    assert!(matches!(
        recover(&found, "9.9.9"),
        Err(SwapError::Diverged(m)) if m.contains("runs 9.9.9")
    ));
    assert_eq!(live_version(&install).as_deref(), Some("1.0.0"));
}
