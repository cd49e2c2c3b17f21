//! Who may call the local API. Every caller is hostile until shown otherwise: any web page the
//! owner opens can send requests to `127.0.0.1:7070` (and, by DNS rebinding, read the answers),
//! and any local user can connect. So, as bitcoind does with its cookie file:
//! - a random token is written to `<data-dir>/api.token` (mode 0600) at every start; every
//!   write (any method but GET and HEAD) must carry `Authorization: Bearer <token>`, so only
//!   whoever can read the node's data dir can unbond, vote, block peers or submit work;
//! - every request's `Host` must name the loopback (`127.0.0.1`, `[::1]`, `localhost`, with any
//!   port): a rebound DNS name is refused, on reads too;
//! - a request with an `Origin` that is not the loopback is refused (a browser always sends
//!   one on cross-site writes);
//! - request bodies are capped at [`MAX_BODY`].

use std::io::Write;
use std::path::Path;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::refused;

/// File in the data dir holding the API token.
pub const TOKEN_FILE: &str = "api.token";
/// Largest request body: a job with an inline scene (the wire scene limit is 4 MiB) and some.
pub const MAX_BODY: usize = 4 << 20 | 64 << 10;

/// The token callers must present, as its BLAKE3 hash (compared in constant time).
#[derive(Clone)]
pub struct Token(blake3::Hash);

impl Token {
    /// A fresh random token, written to `<dir>/api.token` readable by the owner only.
    pub fn create(dir: &Path) -> std::io::Result<Token> {
        let secret = hex::encode(rand::random::<[u8; 32]>());
        let tmp = dir.join(format!("{TOKEN_FILE}.tmp"));
        let _ = std::fs::remove_file(&tmp);
        let mut f = crate::identity::create_private(&tmp)?;
        f.write_all(secret.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, dir.join(TOKEN_FILE))?;
        Ok(Token(blake3::hash(secret.as_bytes())))
    }

    fn accepts(&self, presented: &str) -> bool {
        // `blake3::Hash` equality is constant-time.
        blake3::hash(presented.as_bytes()) == self.0
    }
}

/// Whether `host` (a `Host` header, or an `Origin`'s host part) names this machine's loopback.
pub fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        // `[::1]:7070`
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(
            host,
            |(h, port)| {
                if port.chars().all(|c| c.is_ascii_digit()) { h } else { host }
            },
        ),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn origin_ok(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else { return true };
    let Ok(origin) = origin.to_str() else { return false };
    // `scheme://host[:port]`; "null" (a sandboxed page, a file) is not the loopback.
    origin.split_once("://").is_some_and(|(scheme, host)| matches!(scheme, "http" | "https") && is_loopback_host(host))
}

/// The middleware: the checks above, in that order, before any handler runs.
pub async fn check(State(token): State<Token>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    if !is_loopback_host(host) {
        return refused(
            StatusCode::FORBIDDEN,
            format!("Host {host:?} is not this machine's loopback (127.0.0.1, [::1] or localhost)"),
        );
    }
    if !origin_ok(headers) {
        return refused(StatusCode::FORBIDDEN, "cross-origin requests are refused");
    }
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !token.accepts(presented.trim()) {
            let mut r = refused(
                StatusCode::UNAUTHORIZED,
                format!("writes need Authorization: Bearer <the token in the node's data dir, {TOKEN_FILE}>"),
            );
            r.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
            return r;
        }
    }
    next.run(req).await.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_names_are_this_machine() {
        for ok in ["127.0.0.1", "127.0.0.1:7070", "localhost", "LOCALHOST:1", "[::1]:7070", "[::1]", "127.8.9.10:80"] {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for bad in [
            "",
            "evil.example",
            "evil.example:7070",
            "127.0.0.1.evil.example",
            "localhost.evil",
            "[::2]:1",
            "0.0.0.0:7070",
            "192.168.1.2",
        ] {
            assert!(!is_loopback_host(bad), "{bad}");
        }
    }

    #[test]
    fn the_token_file_is_private_and_matches() {
        let dir = tempfile::tempdir().unwrap();
        let t = Token::create(dir.path()).unwrap();
        let secret = std::fs::read_to_string(dir.path().join(TOKEN_FILE)).unwrap();
        assert_eq!(secret.len(), 64);
        assert!(t.accepts(&secret) && !t.accepts("") && !t.accepts(&secret[1..]));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(TOKEN_FILE)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // A restart writes a new one; the old one no longer works.
        let t2 = Token::create(dir.path()).unwrap();
        assert!(!t2.accepts(&secret));
    }
}
