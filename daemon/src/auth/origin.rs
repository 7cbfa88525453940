//! Browser origins. A WebSocket handshake that carries an `Origin` header
//! comes from a web page, which may belong to anyone: it is accepted only
//! from an origin in `gateway.controlUi.allowedOrigins` or from the
//! gateway's own loopback origins (`http(s)://localhost|127.0.0.1|[::1]`
//! on its own port), else refused with 403 before any frame. Clients
//! that send no `Origin` (the console, scripts, OpenClaw's CLI) are not
//! browsers and are not affected.

use crate::config::normalize_origin;

#[derive(Debug, Clone)]
pub struct AllowedOrigins {
    /// Normalized, as `gateway.controlUi.allowedOrigins` holds them.
    listed: Vec<String>,
    port: u16,
}

impl AllowedOrigins {
    pub fn new(listed: Vec<String>, port: u16) -> Self {
        Self { listed, port }
    }

    pub fn allows(&self, origin: &str) -> bool {
        let Some(origin) = normalize_origin(origin) else {
            return false;
        };
        self.listed.contains(&origin) || self.is_own_loopback(&origin)
    }

    fn is_own_loopback(&self, origin: &str) -> bool {
        let Some((_, rest)) = origin.split_once("://") else {
            return false;
        };
        ["localhost", "127.0.0.1", "[::1]"]
            .iter()
            .any(|host| rest == format!("{host}:{}", self.port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_and_own_loopback_origins_pass_and_nothing_else() {
        let allowed = AllowedOrigins::new(vec!["https://control.example.com".to_owned()], 18789);
        for origin in [
            "https://control.example.com",
            "HTTPS://Control.Example.com/",
            "http://127.0.0.1:18789",
            "http://localhost:18789",
            "https://[::1]:18789",
        ] {
            assert!(allowed.allows(origin), "{origin}");
        }
        for origin in [
            "https://evil.example",
            "https://control.example.com:444",
            "http://control.example.com",
            "http://127.0.0.1:3000",
            "http://localhost",
            "null",
            "file://",
            "",
        ] {
            assert!(!allowed.allows(origin), "{origin}");
        }
    }
}
