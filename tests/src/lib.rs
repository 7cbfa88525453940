//! Shared fixtures for molt end-to-end tests.
//!
//! * [`tools`]: locate the pinned test tools (`scripts/install-test-tools.sh`).
//! * [`registry`]: a real, offline npm registry (verdaccio) on a free port.
//! * [`npm_package`]: pack moltd into its npm package, publish, dist-tags;
//!   [`changelogs`]: the changelog each test package ships.
//! * [`global_install`]: global installs with the real npm, pnpm and bun.
//! * [`versions`]: moltd built at a given version, cached.
//! * [`moltd`], [`client`], [`restarts`]: the real moltd as a child
//!   process, a raw protocol client, handoff probes.
//! * [`openclaw`]: the real OpenClaw gateway (pinned npm package), its port
//!   slots and a registry that serves it.
//! * [`supervisor`]: a supervisor moltd cannot hand a process to (a
//!   script that starts it again after every exit and runs the rescue).
//! * [`systemd`]: a real systemd 252 in a throwaway machine, and moltd in
//!   it under the shipped units.
//! * [`process`], [`http`], [`memory`], [`ports`]: small helpers (commands
//!   with deadlines, HTTP/1.1, a process's resident memory, an address
//!   that refuses connections).
//! * [`console_fixtures`]: the console's fixtures of moltd, recorded from
//!   a real one.
//! * [`gate`]: a named pipe a process waits on, to act at a precise point
//!   of a run.
//! * [`doc`]: sections, tables and code blocks of `docs/`, for the tests
//!   that hold the docs to the code.

pub mod changelogs;
pub mod client;
pub mod console_fixtures;
pub mod doc;
pub mod gate;
pub mod global_install;
pub mod http;
pub mod memory;
pub mod moltd;
pub mod npm_package;
pub mod openclaw;
pub mod ports;
pub mod process;
pub mod prometheus;
pub mod registry;
pub mod restarts;
pub mod supervisor;
pub mod systemd;
pub mod tools;
pub mod tree;
pub mod updates;
pub mod versions;

pub use global_install::{GlobalInstall, PackageManager, install_global};
pub use npm_package::{
    DEFAULT_PACKAGE, dist_tag_add, pack_moltd, publish, write_fake_moltd, write_moltd_that_claims,
    write_moltd_that_waits,
};
pub use registry::Registry;
pub use tools::Tools;
