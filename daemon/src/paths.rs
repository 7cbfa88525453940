//! Where the daemon's files live (docs/operations.md, "Files in the state
//! dir"), resolved from flags and env.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use molt_protocol::state;
pub use molt_protocol::state::{CONFIG_PATH_ENV, STATE_DIR_ENV};

/// Every path the daemon reads or writes, all absolute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatePaths {
    pub state_dir: PathBuf,
    pub config_path: PathBuf,
    pub env_path: PathBuf,
    pub sentinel_path: PathBuf,
    pub runs_path: PathBuf,
    pub audit_path: PathBuf,
    pub metrics_handoff_path: PathBuf,
    pub update_check_path: PathBuf,
    pub lock_path: PathBuf,
    pub logs_dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum PathsError {
    #[error(transparent)]
    NoHome(#[from] state::NoHome),
}

impl StatePaths {
    /// State dir: `state_dir_flag`, else `$OPENCLAW_STATE_DIR`, else
    /// `~/.openclaw`. Config: `$OPENCLAW_CONFIG_PATH`, else
    /// `<state>/openclaw.json` (the env var wins even with `--state-dir`, as
    /// in OpenClaw). `env` is the process environment; the `.env` file lives
    /// in the state dir, so it cannot take part here.
    pub fn resolve(
        state_dir_flag: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, PathsError> {
        let home = directories::BaseDirs::new().map(|b| b.home_dir().to_path_buf());
        Self::resolve_with_home(state_dir_flag, env, home.as_deref())
    }

    fn resolve_with_home(
        state_dir_flag: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
        home: Option<&Path>,
    ) -> Result<Self, PathsError> {
        // The rule molt finds the daemon by (molt_protocol::state); an empty
        // variable counts as unset there.
        let state_value = env(STATE_DIR_ENV);
        let config_value = env(CONFIG_PATH_ENV);
        let state_dir =
            state::state_dir(state_dir_flag, state_value.as_deref().map(OsStr::new), home)?;
        let config_path =
            state::config_path(&state_dir, config_value.as_deref().map(OsStr::new), home)?;
        Ok(Self::in_dir(state_dir, Some(config_path)))
    }

    /// Paths under `state_dir`, with the config at `config_path` or
    /// `<state>/openclaw.json`. Relative paths are made absolute against the
    /// current directory, so a successor started elsewhere and the lock
    /// content agree on them.
    pub fn in_dir(state_dir: PathBuf, config_path: Option<PathBuf>) -> Self {
        let state_dir = absolute(state_dir);
        let config_path =
            absolute(config_path.unwrap_or_else(|| state_dir.join(state::CONFIG_FILE)));
        Self {
            config_path,
            env_path: state_dir.join(state::ENV_FILE),
            sentinel_path: state_dir.join(state::SENTINEL_FILE),
            runs_path: state_dir.join(state::RUNS_FILE),
            audit_path: state_dir.join(state::AUDIT_FILE),
            metrics_handoff_path: state_dir.join(state::METRICS_HANDOFF_FILE),
            update_check_path: state_dir.join(state::UPDATE_CHECK_FILE),
            lock_path: state_dir.join(state::LOCK_FILE),
            logs_dir: state_dir.join(state::LOGS_DIR),
            state_dir,
        }
    }
}

fn absolute(path: PathBuf) -> PathBuf {
    std::path::absolute(&path).unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    const HOME: &str = "/home/op";

    fn resolve(flag: Option<&str>, pairs: &[(&str, &str)]) -> StatePaths {
        StatePaths::resolve_with_home(flag.map(Path::new), &env(pairs), Some(Path::new(HOME)))
            .unwrap()
    }

    #[test]
    fn default_is_dot_openclaw_in_home_with_all_file_names() {
        let p = resolve(None, &[]);
        let s = PathBuf::from("/home/op/.openclaw");
        assert_eq!(
            p,
            StatePaths {
                state_dir: s.clone(),
                config_path: s.join("openclaw.json"),
                env_path: s.join(".env"),
                sentinel_path: s.join("restart-sentinel.json"),
                runs_path: s.join("update-runs.jsonl"),
                audit_path: s.join("audit.jsonl"),
                metrics_handoff_path: s.join("metrics-handoff.json"),
                update_check_path: s.join("update-check.json"),
                lock_path: s.join("gateway.lock"),
                logs_dir: s.join("logs"),
            }
        );
    }

    #[test]
    fn env_state_dir_beats_home_and_flag_beats_env() {
        let from_env = resolve(None, &[(STATE_DIR_ENV, "/srv/molt")]);
        assert_eq!(from_env.state_dir, Path::new("/srv/molt"));
        assert_eq!(from_env.lock_path, Path::new("/srv/molt/gateway.lock"));

        let from_flag = resolve(Some("/flag"), &[(STATE_DIR_ENV, "/srv/molt")]);
        assert_eq!(from_flag.state_dir, Path::new("/flag"));
        assert_eq!(from_flag.config_path, Path::new("/flag/openclaw.json"));
    }

    #[test]
    fn config_path_env_wins_over_state_dir() {
        let p = resolve(Some("/flag"), &[(CONFIG_PATH_ENV, "/etc/molt.json")]);
        assert_eq!(p.config_path, Path::new("/etc/molt.json"));
        assert_eq!(p.env_path, Path::new("/flag/.env"));
    }

    #[test]
    fn empty_vars_count_as_unset() {
        let p = resolve(None, &[(STATE_DIR_ENV, ""), (CONFIG_PATH_ENV, "")]);
        assert_eq!(p.config_path, Path::new("/home/op/.openclaw/openclaw.json"));
    }

    #[test]
    fn tilde_is_expanded() {
        let p = resolve(
            None,
            &[(STATE_DIR_ENV, "~/state"), (CONFIG_PATH_ENV, "~/c.json")],
        );
        assert_eq!(p.state_dir, Path::new("/home/op/state"));
        assert_eq!(p.config_path, Path::new("/home/op/c.json"));
    }

    #[test]
    fn relative_state_dir_becomes_absolute() {
        let p = resolve(Some("rel/state"), &[]);
        assert!(p.state_dir.is_absolute());
        assert!(p.state_dir.ends_with("rel/state"));
        assert!(p.sentinel_path.is_absolute());
    }

    #[test]
    fn no_home_is_a_clear_error_only_when_home_is_needed() {
        let err = StatePaths::resolve_with_home(None, &env(&[]), None).unwrap_err();
        assert!(err.to_string().contains(STATE_DIR_ENV), "{err}");
        let ok = StatePaths::resolve_with_home(None, &env(&[(STATE_DIR_ENV, "/s")]), None);
        assert_eq!(ok.unwrap().state_dir, Path::new("/s"));
    }
}
