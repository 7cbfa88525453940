//! Layouts by manager: package roots, entrypoints, and what is refused.

use super::*;
use std::os::unix::fs::symlink;

#[test]
fn package_roots_by_layout() {
    let cases = [
        (
            "/opt/lib/node_modules/@molt/moltd/bin/moltd",
            InstallMode::Npm,
            "/opt/lib/node_modules/@molt/moltd",
        ),
        (
            "/opt/lib/node_modules/moltd/bin/moltd",
            InstallMode::Npm,
            "/opt/lib/node_modules/moltd",
        ),
        (
            "/home/op/.local/share/pnpm/global/5/.pnpm/moltd@1.0.0/node_modules/moltd/bin/moltd",
            InstallMode::Pnpm,
            "/home/op/.local/share/pnpm/global/5/.pnpm/moltd@1.0.0/node_modules/moltd",
        ),
        (
            "/p/global/5/.pnpm/@molt+moltd@1.0.0/node_modules/@molt/moltd/bin/moltd",
            InstallMode::Pnpm,
            "/p/global/5/.pnpm/@molt+moltd@1.0.0/node_modules/@molt/moltd",
        ),
        (
            // pnpm's link of the package's own bin: the package is the
            // outer node_modules entry, not `.bin`.
            "/p/global/5/.pnpm/moltd@1.0.0/node_modules/moltd/node_modules/.bin/moltd",
            InstallMode::Pnpm,
            "/p/global/5/.pnpm/moltd@1.0.0/node_modules/moltd",
        ),
        (
            "/home/op/.bun/install/global/node_modules/moltd/bin/moltd",
            InstallMode::Bun,
            "/home/op/.bun/install/global/node_modules/moltd",
        ),
        (
            "/srv/bun/install/global/node_modules/@molt/moltd/bin/moltd",
            InstallMode::Bun,
            "/srv/bun/install/global/node_modules/@molt/moltd",
        ),
    ];
    for (path, mode, root) in cases {
        assert_eq!(
            detect_mode(Path::new(path)),
            Some((mode, PathBuf::from(root))),
            "{path}"
        );
    }
    assert_eq!(detect_mode(Path::new("/usr/local/bin/moltd")), None);
    assert_eq!(detect_mode(Path::new("/x/node_modules/@scope")), None);
}

#[test]
fn package_names_are_validated() {
    for ok in ["moltd", "@molt/moltd", "a-b.c_d~e", "@a/b"] {
        assert!(valid_package_name(ok), "{ok}");
    }
    for bad in [
        "",
        "Moltd",
        "@molt",
        "@molt/",
        "../x",
        "@molt/../x",
        ".hidden",
        "a/b",
        "a b",
        "@/x",
        "@a/b/c",
    ] {
        assert!(!valid_package_name(bad), "{bad}");
    }
}

#[test]
fn wrapper_target_is_the_store_path_not_the_interpreter() {
    let script = r#"#!/bin/sh
basedir=$(dirname "$(echo "$0" | sed -e 's,\\,/,g')")
if [ -x "$basedir//bin/sh" ]; then
  exec "$basedir//bin/sh"  "$basedir/global/5/.pnpm/@molt+moltd@1.0.0/node_modules/@molt/moltd/bin/moltd" "$@"
else
  exec /bin/sh  "$basedir/global/5/.pnpm/@molt+moltd@1.0.0/node_modules/@molt/moltd/bin/moltd" "$@"
fi
"#;
    assert_eq!(
        wrapper_target_text(script),
        Some("global/5/.pnpm/@molt+moltd@1.0.0/node_modules/@molt/moltd/bin/moltd")
    );
    let native = "#!/bin/sh\n\"$basedir/global/5/.pnpm/moltd@2.0.0/node_modules/moltd/bin/moltd\"   \"$@\"\nexit $?\n";
    assert_eq!(
        wrapper_target_text(native),
        Some("global/5/.pnpm/moltd@2.0.0/node_modules/moltd/bin/moltd")
    );
    assert_eq!(wrapper_target_text("#!/bin/sh\necho moltd 1.0.0\n"), None);
}

#[test]
fn bins_from_manifests() {
    let obj = serde_json::json!({"bin": {"moltd": "bin/moltd", "other": "x"}});
    assert_eq!(
        bin_path(&obj, "@molt/moltd", "moltd").as_deref(),
        Some("bin/moltd")
    );
    let string = serde_json::json!({"bin": "dist/moltd"});
    assert_eq!(
        bin_path(&string, "@molt/moltd", "moltd").as_deref(),
        Some("dist/moltd")
    );
    assert_eq!(bin_path(&string, "@molt/moltd", "other"), None);
}

#[test]
fn store_dir_names_only_the_package_itself() {
    let g = Path::new("/p/global/5");
    let at = |s: &str| pnpm_store_dir(g, "@molt/moltd", Path::new(s));
    assert_eq!(
        at("/p/global/5/.pnpm/@molt+moltd@2.0.0/node_modules/@molt/moltd/bin/moltd").as_deref(),
        Some("@molt+moltd@2.0.0")
    );
    assert_eq!(
        at("/p/global/5/.pnpm/other@1.0.0/node_modules/other/bin/moltd"),
        None
    );
    assert_eq!(at("/elsewhere/.pnpm/x/node_modules/@molt/moltd"), None);
}

/// An npm-shaped tree built by hand: `locate` from the shim, from the
/// real binary, and refusals when the shim is missing or elsewhere.
#[test]
fn locate_npm_from_shim_and_binary() {
    let tmp = tempfile::tempdir().unwrap();
    let p = fs::canonicalize(tmp.path()).unwrap();
    let root = p.join("lib/node_modules/@molt/moltd");
    fs::create_dir_all(root.join("bin")).unwrap();
    fs::write(root.join("bin/moltd"), "#!/bin/sh\necho moltd 1.0.0\n").unwrap();
    fs::write(
        root.join("package.json"),
        r#"{"name":"@molt/moltd","version":"1.0.0","bin":{"moltd":"bin/moltd"}}"#,
    )
    .unwrap();
    let real = root.join("bin/moltd");
    // The binary alone: the shim is not there, so this is no npm install.
    let err = locate(&real).unwrap_err();
    assert!(err.to_string().contains("bin/moltd"), "{err}");

    fs::create_dir_all(p.join("bin")).unwrap();
    symlink(
        "../lib/node_modules/@molt/moltd/bin/moltd",
        p.join("bin/moltd"),
    )
    .unwrap();
    let want = Install {
        mode: InstallMode::Npm,
        package: "@molt/moltd".into(),
        prefix: p.clone(),
        root: root.clone(),
        entrypoint: p.join("bin/moltd"),
    };
    assert_eq!(locate(&p.join("bin/moltd")).unwrap(), want);
    assert_eq!(locate(&real).unwrap(), want);
    assert_eq!(want.bin_name(), "moltd");
    assert_eq!(want.modules_dir(), p.join("lib/node_modules"));
    assert_eq!(want.project_dir(), p.join("lib"));

    // A mismatched name in package.json is refused.
    fs::write(
        root.join("package.json"),
        r#"{"name":"@molt/other","version":"1.0.0","bin":{"moltd":"bin/moltd"}}"#,
    )
    .unwrap();
    assert!(locate(&real).is_err());
}

#[test]
fn a_plain_binary_is_not_a_package() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("moltd");
    fs::write(&bin, "#!/bin/sh\n").unwrap();
    assert!(matches!(locate(&bin), Err(LayoutError::NotAPackage(_))));
    assert!(matches!(
        locate(&tmp.path().join("missing")),
        Err(LayoutError::Io { .. })
    ));
}
