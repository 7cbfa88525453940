//! Stages: where they go, the managers' install commands, and the proof\nof what landed there.

use super::*;

fn install(mode: InstallMode, prefix: &str) -> Install {
    let p = PathBuf::from(prefix);
    let (root, entrypoint) = match mode {
        InstallMode::Npm => (p.join("lib/node_modules/@molt/moltd"), p.join("bin/moltd")),
        InstallMode::Bun => (
            p.join("install/global/node_modules/@molt/moltd"),
            p.join("bin/moltd"),
        ),
        _ => (p.join("global/5/node_modules/@molt/moltd"), p.join("moltd")),
    };
    Install {
        mode,
        package: "@molt/moltd".into(),
        prefix: p,
        root,
        entrypoint,
    }
}

#[test]
fn stages_sit_outside_what_the_manager_reads() {
    assert_eq!(
        stage_parent(&install(InstallMode::Npm, "/p")),
        Path::new("/p/lib")
    );
    assert_eq!(
        stage_parent(&install(InstallMode::Bun, "/p")),
        Path::new("/p/install")
    );
    assert_eq!(
        stage_parent(&install(InstallMode::Pnpm, "/p")),
        Path::new("/p/global")
    );
}

#[test]
fn staged_paths_mirror_the_live_layout() {
    let s = Path::new("/p/lib/.molt-stage-x");
    let npm = install(InstallMode::Npm, "/p");
    assert_eq!(staged_root(&npm, s), s.join("lib/node_modules/@molt/moltd"));
    assert_eq!(staged_shim(&npm, s), s.join("bin/moltd"));
    let pnpm = install(InstallMode::Pnpm, "/p");
    assert_eq!(
        staged_root(&pnpm, s),
        s.join("global/5/node_modules/@molt/moltd")
    );
    let bun = install(InstallMode::Bun, "/p");
    assert_eq!(
        staged_root(&bun, s),
        s.join("install/global/node_modules/@molt/moltd")
    );
    // No package.json yet: the conventional bin path.
    assert_eq!(
        staged_binary(&bun, s),
        s.join("install/global/node_modules/@molt/moltd/bin/moltd")
    );
}

#[test]
fn argv_per_manager() {
    let s = Path::new("/p/x/.molt-stage-1");
    let (argv, env) = install_argv(
        &install(InstallMode::Npm, "/p"),
        Path::new("/usr/bin/npm"),
        s,
        "@molt/moltd@2.0.0",
    );
    assert_eq!(
        argv,
        [
            "/usr/bin/npm",
            "install",
            "--global",
            "--prefix",
            "/p/x/.molt-stage-1",
            "--no-audit",
            "--no-fund",
            "--no-update-notifier",
            "@molt/moltd@2.0.0"
        ]
    );
    assert!(env.is_empty());

    let (argv, env) = install_argv(
        &install(InstallMode::Pnpm, "/p"),
        Path::new("/opt/node/bin/pnpm"),
        s,
        "@molt/moltd@2.0.0",
    );
    assert_eq!(argv[1..4], ["add", "--global", "--reporter=append-only"]);
    let flag = |name: &str| {
        let i = argv.iter().position(|a| a == name).unwrap();
        argv[i + 1].clone()
    };
    assert_eq!(flag("--global-dir"), "/p/x/.molt-stage-1/global");
    assert_eq!(flag("--global-bin-dir"), "/p/x/.molt-stage-1/bin");
    assert_eq!(argv.last().unwrap(), "@molt/moltd@2.0.0");
    let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(get("PNPM_HOME").unwrap(), "/p/x/.molt-stage-1/bin");
    let path = get("PATH").unwrap();
    assert!(
        path.starts_with("/p/x/.molt-stage-1/bin:/opt/node/bin"),
        "{path}"
    );

    let (argv, env) = install_argv(
        &install(InstallMode::Bun, "/p"),
        Path::new("bun"),
        s,
        "@molt/moltd@2.0.0",
    );
    assert_eq!(
        argv,
        [
            "bun",
            "add",
            "--global",
            "--no-progress",
            "@molt/moltd@2.0.0"
        ]
    );
    let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(get("BUN_INSTALL").unwrap(), "/p/x/.molt-stage-1");
    assert_eq!(
        get("BUN_INSTALL_GLOBAL_DIR").unwrap(),
        "/p/x/.molt-stage-1/install/global"
    );
    assert_eq!(get("BUN_INSTALL_BIN").unwrap(), "/p/x/.molt-stage-1/bin");
}

#[test]
fn pnpm_store_comes_from_modules_yaml() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path();
    let inst = Install {
        mode: InstallMode::Pnpm,
        package: "moltd".into(),
        prefix: p.to_path_buf(),
        root: p.join("global/5/node_modules/moltd"),
        entrypoint: p.join("moltd"),
    };
    assert_eq!(pnpm_store(&inst), None);
    fs::create_dir_all(p.join("global/5/node_modules")).unwrap();
    fs::write(
        p.join("global/5/node_modules/.modules.yaml"),
        r#"{"layoutVersion": 5, "storeDir": "/srv/store/v10"}"#,
    )
    .unwrap();
    assert_eq!(pnpm_store(&inst), Some(PathBuf::from("/srv/store")));
    fs::write(
        p.join("global/5/node_modules/.modules.yaml"),
        "layoutVersion: 5\nstoreDir: /srv/other\n",
    )
    .unwrap();
    assert_eq!(pnpm_store(&inst), Some(PathBuf::from("/srv/other")));
}

#[test]
fn stage_is_private_and_cleanup_only_removes_stages() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path();
    fs::create_dir_all(p.join("lib/node_modules/moltd")).unwrap();
    let inst = Install {
        mode: InstallMode::Npm,
        package: "moltd".into(),
        prefix: p.to_path_buf(),
        root: p.join("lib/node_modules/moltd"),
        entrypoint: p.join("bin/moltd"),
    };
    assert!(leftover_stages(&inst).is_empty());
    let stage = stage_dir(&inst).unwrap();
    assert_eq!(stage.parent().unwrap(), p.join("lib"));
    assert_eq!(leftover_stages(&inst), std::slice::from_ref(&stage));
    let name = stage.file_name().unwrap().to_str().unwrap();
    assert!(name.starts_with(STAGE_PREFIX), "{name}");
    assert_eq!(fs::metadata(&stage).unwrap().mode() & 0o777, 0o700);
    let second = stage_dir(&inst).unwrap();
    assert_ne!(second, stage, "a fresh name each time");
    cleanup_stage(&second);

    cleanup_stage(&p.join("lib/node_modules"));
    assert!(
        p.join("lib/node_modules/moltd").is_dir(),
        "not a stage: kept"
    );
    fs::create_dir_all(stage.join("lib/x")).unwrap();
    cleanup_stage(&stage);
    assert!(!stage.exists());
    cleanup_stage(&stage); // already gone: fine
}

#[test]
fn version_of_a_binary_with_a_deadline() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("moltd");
    fs::write(&bin, "#!/bin/sh\necho \"moltd 2.0.0\"\necho extra\n").unwrap();
    fs::set_permissions(&bin, Permissions::from_mode(0o755)).unwrap();
    assert_eq!(run_version(&bin).unwrap(), "moltd 2.0.0");
    fs::write(&bin, "#!/bin/sh\nexit 3\n").unwrap();
    assert!(
        run_version(&bin)
            .unwrap_err()
            .to_string()
            .contains("failed")
    );
    assert!(run_version(&tmp.path().join("missing")).is_err());
}
