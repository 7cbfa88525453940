//! The rollout record: which gateway went from which version to which,
//! when, and how it ended; where a halted rollout stopped and why. Written
//! after every gateway, so a console that was closed or crashed resumes
//! where it stopped. One record per fleet file, in the user's state dir.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// More than this is not a rollout record.
const MAX_RECORD_BYTES: u64 = 4 * 1024 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    Running,
    Halted,
    Done,
    RolledBack,
}

/// How one gateway's update ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostOutcome {
    /// Its new process reports the target version, verified.
    Verified,
    /// It already ran the target version.
    UpToDate,
    /// The operator skipped it.
    Skipped,
    Failed,
    /// It failed and rolled itself back.
    RolledBack,
    /// The install says one version, the process runs another.
    Mismatch,
    Unreachable,
    TimedOut,
    /// The operator rolled it back to the version it ran before.
    Reverted,
}

impl HostOutcome {
    /// Done with this gateway: the rollout goes on past it.
    pub fn is_done(self) -> bool {
        matches!(self, Self::Verified | Self::UpToDate | Self::Skipped)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostEntry {
    pub name: String,
    pub from: Option<String>,
    pub to: Option<String>,
    /// Unix ms.
    pub at: u64,
    pub outcome: HostOutcome,
    pub reason: Option<String>,
}

/// Where and why a rollout stopped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Halt {
    pub host: String,
    pub outcome: HostOutcome,
    /// The update step that failed, when the gateway named one.
    pub step: Option<String>,
    pub reason: String,
    /// The last lines of the host's update: its progress and the failing
    /// step's output.
    pub output_tail: Vec<String>,
    pub at: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rollout {
    pub fleet: PathBuf,
    /// What was asked: a version, a dist-tag, or the channel's default.
    pub target: Option<String>,
    /// The exact version every gateway must verify: the asked version, or
    /// the one the first gateway verified.
    pub version: Option<String>,
    pub group: Option<String>,
    pub waves: Vec<Vec<String>>,
    pub state: State,
    pub started_at: u64,
    pub updated_at: u64,
    /// The latest outcome of each gateway touched, in the order reached.
    pub hosts: Vec<HostEntry>,
    pub halt: Option<Halt>,
}

impl Rollout {
    pub fn host(&self, name: &str) -> Option<&HostEntry> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// Records `entry`, replacing an earlier outcome of the same gateway.
    pub fn set(&mut self, entry: HostEntry) {
        self.updated_at = entry.at;
        match self.hosts.iter_mut().find(|h| h.name == entry.name) {
            Some(old) => {
                // The version it ran before this rollout stays known.
                let from = old.from.clone();
                *old = entry;
                if old.from.is_none() || old.outcome == HostOutcome::Reverted {
                    old.from = old.from.clone().or(from);
                }
            }
            None => self.hosts.push(entry),
        }
    }

    /// The gateway is done for this rollout.
    pub fn done(&self, name: &str) -> bool {
        self.host(name).is_some_and(|h| h.outcome.is_done())
    }

    /// What every gateway is to run: the version, else the asked tag.
    pub fn goal(&self) -> &str {
        self.version
            .as_deref()
            .or(self.target.as_deref())
            .unwrap_or("each channel's latest")
    }

    /// ` halted at HOST: why`, or that it stopped while running.
    pub fn where_it_stopped(&self) -> String {
        self.halt.as_ref().map_or_else(
            || " stopped while running".to_owned(),
            |h| format!(" halted at {}: {}", h.host, h.reason),
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("no state dir for this user to keep the rollout record in")]
    NoStateDir,
    #[error("rollout record {}: {problem}", path.display())]
    Io { path: PathBuf, problem: String },
}

/// The record of the rollouts of `fleet_file`: `$XDG_STATE_HOME/molt/
/// rollouts/<name>-<hash of its path>.json`.
pub fn path_for(fleet_file: &Path) -> Result<PathBuf, RecordError> {
    let dirs = directories::ProjectDirs::from("", "", "molt").ok_or(RecordError::NoStateDir)?;
    let base = dirs
        .state_dir()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| dirs.data_local_dir().to_path_buf());
    let canonical = std::fs::canonicalize(fleet_file).unwrap_or_else(|_| fleet_file.to_owned());
    let stem = fleet_file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "fleet".to_owned());
    Ok(base.join("rollouts").join(format!(
        "{stem}-{:016x}.json",
        fnv1a(canonical.as_os_str().as_encoded_bytes())
    )))
}

/// A hash that stays the same across builds (std's does not promise to).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

pub fn load(path: &Path) -> Result<Option<Rollout>, RecordError> {
    let io = |problem: String| RecordError::Io {
        path: path.to_owned(),
        problem,
    };
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e.to_string())),
        Ok(meta) if meta.len() > MAX_RECORD_BYTES => {
            return Err(io(format!("larger than {MAX_RECORD_BYTES} bytes")));
        }
        Ok(_) => {}
    }
    let text = std::fs::read_to_string(path).map_err(|e| io(e.to_string()))?;
    serde_json::from_str(&text).map(Some).map_err(|e| {
        io(format!(
            "not a rollout record ({e}); move it away to start over"
        ))
    })
}

/// Writes the record whole or not at all.
pub fn save(path: &Path, rollout: &Rollout) -> Result<(), RecordError> {
    let io = |e: std::io::Error| RecordError::Io {
        path: path.to_owned(),
        problem: e.to_string(),
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let text = serde_json::to_string_pretty(rollout).map_err(|e| RecordError::Io {
        path: path.to_owned(),
        problem: e.to_string(),
    })?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, from: Option<&str>, outcome: HostOutcome) -> HostEntry {
        HostEntry {
            name: name.into(),
            from: from.map(Into::into),
            to: Some("2.0.0".into()),
            at: 5,
            outcome,
            reason: None,
        }
    }

    #[test]
    fn a_record_round_trips_and_keeps_the_version_a_host_ran_before() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r/rollout.json");
        let mut rollout = Rollout {
            fleet: "/f.toml".into(),
            target: Some("latest".into()),
            version: None,
            group: None,
            waves: vec![vec!["a".into()], vec!["b".into(), "c".into()]],
            state: State::Running,
            started_at: 1,
            updated_at: 1,
            hosts: vec![],
            halt: None,
        };
        rollout.set(entry("a", Some("1.0.0"), HostOutcome::Failed));
        rollout.set(entry("a", None, HostOutcome::Verified));
        assert_eq!(rollout.host("a").unwrap().from.as_deref(), Some("1.0.0"));
        assert!(rollout.done("a"));
        assert!(!rollout.done("b"));
        save(&path, &rollout).unwrap();
        assert_eq!(load(&path).unwrap(), Some(rollout));
        assert_eq!(load(&dir.path().join("none.json")).unwrap(), None);
        std::fs::write(&path, "{").unwrap();
        assert!(
            load(&path)
                .unwrap_err()
                .to_string()
                .contains("move it away")
        );
    }

    #[test]
    fn each_fleet_file_has_its_own_record() {
        let a = path_for(Path::new("/etc/molt/fleet.toml")).unwrap();
        let b = path_for(Path::new("/home/x/fleet.toml")).unwrap();
        assert_ne!(a, b);
        assert!(a.to_string_lossy().contains("rollouts/fleet-"), "{a:?}");
        assert_eq!(a, path_for(Path::new("/etc/molt/fleet.toml")).unwrap());
    }
}
