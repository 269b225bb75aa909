//! `http://host[:port][/path][?query]`, the only form the probe takes.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};

/// The path a URL without one is taken to mean.
pub const DEFAULT_PATH: &str = "/v1/chat/completions";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    pub host: String,
    pub port: u16,
    /// Path and query, as sent on the request line.
    pub target: String,
}

impl HttpUrl {
    /// Parses an endpoint URL; no path means [`DEFAULT_PATH`]. `what` names
    /// it in errors (`URL`, `--collector`).
    pub fn parse(text: &str, what: &str) -> Result<HttpUrl, String> {
        HttpUrl::parse_with(text, what, DEFAULT_PATH)
    }

    /// Parses a server's base URL (the collector's); no path means `/`.
    pub fn parse_base(text: &str, what: &str) -> Result<HttpUrl, String> {
        HttpUrl::parse_with(text, what, "/")
    }

    fn parse_with(text: &str, what: &str, default_path: &str) -> Result<HttpUrl, String> {
        if text.len() >= 8 && text[..8].eq_ignore_ascii_case("https://") {
            return Err(format!(
                "{what}: https is not supported yet; point the probe at an http port \
                 (Envoy's listener, or a `kubectl port-forward` to it)"
            ));
        }
        let rest = match text.get(..7) {
            Some(scheme) if scheme.eq_ignore_ascii_case("http://") => &text[7..],
            _ => return Err(format!("{what}: {text:?} is not an http:// URL")),
        };
        let (authority, target) = match rest.find(['/', '?']) {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(format!(
                "{what}: credentials in the URL are not supported; pass them with --header"
            ));
        }
        let (host, port) = split_host_port(authority)
            .ok_or_else(|| format!("{what}: {text:?} has no valid host[:port]"))?;
        let target = if target.is_empty() || target == "/" {
            default_path.to_string()
        } else if target.starts_with('?') {
            format!("/{target}")
        } else {
            target.to_string()
        };
        Ok(HttpUrl { host, port, target })
    }

    /// The path without its query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    /// The `host` header's value.
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == 80 {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// The first address `host:port` resolves to.
    pub fn resolve(&self, what: &str) -> Result<SocketAddr, String> {
        let mut addrs = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|err| format!("{what}: cannot resolve {}: {err}", self.host))?;
        addrs
            .next()
            .ok_or_else(|| format!("{what}: {} resolves to no address", self.host))
    }
}

/// Shown without the query string: it can carry a credential (`?key=`).
impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let query = if self.target.contains('?') {
            "?…"
        } else {
            ""
        };
        write!(f, "http://{}{}{query}", self.authority(), self.path())
    }
}

fn split_host_port(authority: &str) -> Option<(String, u16)> {
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']')?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() || host.contains(['[', ']', ' ']) {
        return None;
    }
    let port = match port {
        Some(port) => port.parse().ok().filter(|p| *p != 0)?,
        None => 80,
    };
    Some((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_http_urls() {
        let url = HttpUrl::parse("http://127.0.0.1:10000/v1/chat/completions", "URL").unwrap();
        assert_eq!(
            (url.host.as_str(), url.port, url.target.as_str()),
            ("127.0.0.1", 10000, "/v1/chat/completions")
        );
        assert_eq!(url.authority(), "127.0.0.1:10000");
        let url = HttpUrl::parse("HTTP://gateway.example", "URL").unwrap();
        assert_eq!((url.port, url.target.as_str()), (80, DEFAULT_PATH));
        assert_eq!(url.authority(), "gateway.example");
        let url = HttpUrl::parse(
            "http://[::1]:8080/openai/v1/chat/completions?api-version=1&key=s3cret",
            "URL",
        )
        .unwrap();
        assert_eq!((url.host.as_str(), url.port), ("::1", 8080));
        assert_eq!(url.path(), "/openai/v1/chat/completions");
        assert_eq!(url.authority(), "[::1]:8080");
        // The query is never shown.
        assert_eq!(
            url.to_string(),
            "http://[::1]:8080/openai/v1/chat/completions?…"
        );
    }

    #[test]
    fn refuses_other_urls_clearly() {
        let err = HttpUrl::parse("https://api.example.com/v1/chat/completions", "URL").unwrap_err();
        assert!(err.contains("https is not supported yet"), "{err}");
        assert!(err.contains("port-forward"), "{err}");
        for bad in [
            "ftp://x",
            "127.0.0.1:10000",
            "http://",
            "http://:80/",
            "http://h:port/",
            "http://h:0/",
            "http://h:70000/",
        ] {
            let err = HttpUrl::parse(bad, "URL").unwrap_err();
            assert!(err.starts_with("URL: "), "{bad}: {err}");
        }
        let err = HttpUrl::parse("http://user:pw@h/", "URL").unwrap_err();
        assert!(!err.contains("pw"), "{err}");
    }
}
