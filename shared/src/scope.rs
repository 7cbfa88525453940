use serde::{Deserialize, Serialize};

/// Operator scopes. A shared token grants both.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Scope {
    /// Read-only: health, status, update.status, config.get, logs.
    #[serde(rename = "operator.read")]
    Read,
    /// Everything that changes something.
    #[serde(rename = "operator.admin")]
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 2] = [Scope::Read, Scope::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "operator.read",
            Scope::Admin => "operator.admin",
        }
    }

    /// Parses a wire scope name; scopes molt does not know are `None`
    /// (ignored, as OpenClaw clients may ask for more).
    pub fn from_wire(name: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Whether holding `self` satisfies a requirement of `required`.
    /// Admin implies read.
    pub fn satisfies(self, required: Scope) -> bool {
        self == required || self == Scope::Admin
    }
}
