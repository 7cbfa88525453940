//! `OPENCLAW_NO_AUTO_UPDATE`: any truthy value, from the process env or
//! `<state>/.env`, blocks every automatic apply and the restart it would
//! cause. Checks and hints still run; manual `update.run` still works.

use std::path::Path;

use molt_protocol::status::EnvSource;

use crate::env_file::{Env, EnvFileError, set_env_file_key};

/// The variable's name.
pub const NO_AUTO_UPDATE_ENV: &str = "OPENCLAW_NO_AUTO_UPDATE";

/// The kill switch as it stands now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KillSwitch {
    /// Where the truthy value comes from; `None` = not blocking.
    pub source: Option<EnvSource>,
}

impl KillSwitch {
    pub fn blocking(source: EnvSource) -> Self {
        Self {
            source: Some(source),
        }
    }

    pub fn from_env(env: &Env) -> Self {
        Self {
            source: env
                .flag(NO_AUTO_UPDATE_ENV)
                .then(|| env.source(NO_AUTO_UPDATE_ENV))
                .flatten(),
        }
    }

    pub fn blocked(self) -> bool {
        self.source.is_some()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SetError {
    /// The process env wins over `.env`, so the file cannot change it.
    #[error(
        "{NO_AUTO_UPDATE_ENV}={value:?} is set in moltd's process environment, which \
         .env cannot override; change it where moltd is started (unit file, shell) and \
         restart moltd"
    )]
    ProcessEnv { value: String },
    #[error("cannot update {NO_AUTO_UPDATE_ENV} in .env: {0}")]
    File(#[from] EnvFileError),
}

/// Turns the kill switch on (`OPENCLAW_NO_AUTO_UPDATE=1` in `.env`) or
/// off (every line for it removed), keeping the file's other lines, then
/// mirrors that into `env` so it applies live. Nothing changes when the
/// write fails. A process-env value that disagrees is refused: the file
/// could not change what takes effect.
pub fn set(env: &mut Env, env_path: &Path, enabled: bool) -> Result<KillSwitch, SetError> {
    if env.source(NO_AUTO_UPDATE_ENV) == Some(EnvSource::ProcessEnv) {
        if env.flag(NO_AUTO_UPDATE_ENV) == enabled {
            return Ok(KillSwitch::from_env(env));
        }
        return Err(SetError::ProcessEnv {
            value: env.get(NO_AUTO_UPDATE_ENV).unwrap_or_default().to_owned(),
        });
    }
    let value = enabled.then_some("1");
    set_env_file_key(env_path, NO_AUTO_UPDATE_ENV, value)?;
    env.set_file_var(NO_AUTO_UPDATE_ENV, value);
    Ok(KillSwitch::from_env(env))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(process: &[(&str, &str)], file: &[(&str, &str)]) -> Env {
        let map = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        Env::new(map(process), map(file))
    }

    #[test]
    fn resolves_from_each_source_and_only_when_truthy() {
        let k = NO_AUTO_UPDATE_ENV;
        assert_eq!(KillSwitch::from_env(&env(&[], &[])).source, None);
        assert_eq!(
            KillSwitch::from_env(&env(&[(k, "1")], &[])).source,
            Some(EnvSource::ProcessEnv)
        );
        assert_eq!(
            KillSwitch::from_env(&env(&[], &[(k, "yes")])).source,
            Some(EnvSource::EnvFile)
        );
        // A falsy process value wins over a truthy file value.
        assert!(!KillSwitch::from_env(&env(&[(k, "0")], &[(k, "1")])).blocked());
        assert!(!KillSwitch::from_env(&env(&[], &[(k, "off")])).blocked());
    }

    #[test]
    fn set_writes_and_removes_the_line_keeping_the_rest_and_applies_live() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        std::fs::write(&path, "# ops notes\nA=1\n").unwrap();
        let mut e = env(&[], &[("A", "1")]);

        let on = set(&mut e, &path, true).unwrap();
        assert_eq!(on, KillSwitch::blocking(EnvSource::EnvFile));
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "# ops notes\nA=1\nOPENCLAW_NO_AUTO_UPDATE=1\n"
        );
        assert!(KillSwitch::from_env(&e).blocked(), "applies live");

        let off = set(&mut e, &path, false).unwrap();
        assert!(!off.blocked());
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "# ops notes\nA=1\n"
        );
        assert!(!KillSwitch::from_env(&e).blocked());
    }

    #[test]
    fn a_process_env_value_cannot_be_overridden_but_agreeing_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        let mut e = env(&[(NO_AUTO_UPDATE_ENV, "1")], &[]);
        let err = set(&mut e, &path, false).unwrap_err();
        assert!(matches!(err, SetError::ProcessEnv { .. }));
        assert!(err.to_string().contains("process environment"), "{err}");
        assert!(!path.exists(), "nothing written");
        assert!(KillSwitch::from_env(&e).blocked());

        assert_eq!(
            set(&mut e, &path, true).unwrap(),
            KillSwitch::blocking(EnvSource::ProcessEnv)
        );
        assert!(!path.exists(), "already in effect: nothing to write");

        let mut falsy = env(&[(NO_AUTO_UPDATE_ENV, "0")], &[]);
        assert!(set(&mut falsy, &path, true).is_err());
    }

    #[test]
    fn a_failed_write_changes_nothing_live() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should be: the write must fail.
        let path = dir.path().join(".env");
        std::fs::create_dir(&path).unwrap();
        let mut e = env(&[], &[]);
        let err = set(&mut e, &path, true).unwrap_err();
        assert!(matches!(err, SetError::File(_)), "{err}");
        assert!(!KillSwitch::from_env(&e).blocked());
    }
}
