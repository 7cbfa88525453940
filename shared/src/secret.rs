//! Secrets in the config: which keys hold one, the sentinel shown in their
//! place (OpenClaw's), and how short a token may be before it is flagged.

/// Shown instead of a secret's value by `config.get` and `config.patch`;
/// sent back in a patch it keeps the stored value, and it is never
/// accepted as new data.
pub const REDACTED: &str = "__OPENCLAW_REDACTED__";

/// Tokens shorter than this (in characters) are flagged in `status`, and
/// refused at start for a non-loopback bind.
pub const MIN_TOKEN_CHARS: usize = 24;

/// Whether a config key (the last segment of its path) holds a secret: a
/// token, a password, a secret or an API key, in any of the spellings
/// config files use (`token`, `readToken`, `api_key`, `apiKey`,
/// `clientSecret`, `privateKey`). `maxTokens` or `tokenRef` are not.
pub fn is_secret_key(key: &str) -> bool {
    let key: String = key
        .chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect();
    [
        "token",
        "password",
        "passwd",
        "secret",
        "apikey",
        "privatekey",
    ]
    .iter()
    .any(|suffix| key.ends_with(suffix))
}

/// Whether `text` carries the sentinel anywhere (as OpenClaw, a value
/// that merely contains it is refused too).
pub fn contains_sentinel(text: &str) -> bool {
    text.contains(REDACTED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_keys_are_told_from_their_neighbours() {
        for key in [
            "token",
            "readToken",
            "password",
            "apiKey",
            "api_key",
            "OPENAI_API_KEY",
            "clientSecret",
            "privateKey",
            "accessToken",
        ] {
            assert!(is_secret_key(key), "{key}");
        }
        for key in [
            "maxTokens",
            "tokenRef",
            "keyPath",
            "mode",
            "port",
            "secretsDir",
            "buildCommand",
        ] {
            assert!(!is_secret_key(key), "{key}");
        }
    }
}
