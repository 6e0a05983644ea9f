//! `punch://` session URIs, the one string a GStreamer user types:
//! `punch://HOST[:PORT]/SESSION[/STREAM]?token=TOKEN[&key=value…]` (WebSocket) and
//! `punchs://…` (secure WebSocket).

use std::fmt;

/// Port of `punch://` URIs without one (the server's default).
pub const DEFAULT_PORT: u16 = 8787;
/// Port of `punchs://` URIs without one.
pub const DEFAULT_SECURE_PORT: u16 = 443;

/// `host` as it is written in a URL: IPv6 literals in brackets.
pub fn url_host(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// The host name or IP (without brackets or port) of a server base URL, for its UDP services.
pub fn server_host(server: &str) -> Option<String> {
    let rest = server.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next()?
    } else {
        authority.split(':').next()?
    };
    (!host.is_empty()).then(|| host.to_string())
}

/// A parsed session URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PunchUri {
    pub secure: bool,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    pub session: String,
    pub stream: Option<String>,
    pub token: String,
    /// Further `key=value` query parameters, in order (element properties such as `latency`).
    pub params: Vec<(String, String)>,
}

impl PunchUri {
    /// Parses and checks a URI; the error says what is wrong and shows the expected form.
    pub fn parse(uri: &str) -> Result<PunchUri, String> {
        const FORM: &str = "expected punch://HOST[:PORT]/SESSION[/STREAM]?token=TOKEN";
        let (scheme, rest) = uri
            .split_once("://")
            .ok_or_else(|| format!("{uri:?} is not a URI; {FORM}"))?;
        let secure = match scheme.to_ascii_lowercase().as_str() {
            "punch" => false,
            "punchs" => true,
            other => {
                return Err(format!(
                    "unsupported scheme {other:?} (use punch:// or punchs://)"
                ));
            }
        };
        let (before_query, query) = match rest.split_once('?') {
            Some((a, q)) => (a, Some(q)),
            None => (rest, None),
        };
        let (authority, path) = before_query.split_once('/').unwrap_or((before_query, ""));
        let (host, port) = split_host_port(
            authority,
            if secure {
                DEFAULT_SECURE_PORT
            } else {
                DEFAULT_PORT
            },
        )?;
        let mut segments = path.split('/').filter(|s| !s.is_empty());
        let session = segments
            .next()
            .ok_or_else(|| format!("{uri:?} names no session; {FORM}"))?
            .to_string();
        super::validate_name("session", &session)?;
        let stream = segments.next().map(String::from);
        if let Some(s) = &stream {
            super::validate_name("stream", s)?;
        }
        if let Some(extra) = segments.next() {
            return Err(format!(
                "unexpected path segment {extra:?} after the stream; {FORM}"
            ));
        }
        let mut token = None;
        let mut params = Vec::new();
        for (k, v) in form_pairs(query.unwrap_or("")) {
            if k == "token" {
                token = Some(v);
            } else {
                params.push((k, v));
            }
        }
        let token = token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| format!("{uri:?} has no token; {FORM}"))?;
        Ok(PunchUri {
            secure,
            host,
            port,
            session,
            stream,
            token,
            params,
        })
    }

    /// The server's HTTP base URL (`http://host:port` or `https://…`).
    pub fn server_url(&self) -> String {
        let host = url_host(&self.host);
        format!(
            "{}://{host}:{}",
            if self.secure { "https" } else { "http" },
            self.port
        )
    }

    /// Builds the URI for a server base URL (`http(s)://host[:port]`), session, stream and token.
    pub fn for_server(
        server: &str,
        session: &str,
        stream: Option<&str>,
        token: &str,
    ) -> Result<PunchUri, String> {
        let (scheme, rest) = server
            .split_once("://")
            .ok_or_else(|| format!("server {server:?} has no scheme"))?;
        let secure = match scheme {
            "http" | "ws" => false,
            "https" | "wss" => true,
            other => return Err(format!("unsupported server scheme {other:?}")),
        };
        let authority = rest.trim_end_matches('/');
        if authority.contains('/') {
            return Err(format!(
                "server {server:?} has a path; punch:// URIs address the server root"
            ));
        }
        let (host, port) =
            split_host_port(authority, if secure { DEFAULT_SECURE_PORT } else { 80 })?;
        Ok(PunchUri {
            secure,
            host,
            port,
            session: session.to_string(),
            stream: stream.map(String::from),
            token: token.to_string(),
            params: Vec::new(),
        })
    }
}

impl fmt::Display for PunchUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        write!(
            f,
            "{}://{host}:{}/{}",
            if self.secure { "punchs" } else { "punch" },
            self.port,
            self.session
        )?;
        if let Some(s) = &self.stream {
            write!(f, "/{s}")?;
        }
        write!(f, "?token={}", encode(&self.token))?;
        for (k, v) in &self.params {
            write!(f, "&{}={}", encode(k), encode(v))?;
        }
        Ok(())
    }
}

fn split_host_port(authority: &str, default_port: u16) -> Result<(String, u16), String> {
    if authority.is_empty() {
        return Err("the URI has no host".into());
    }
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or("unclosed '[' in the host")?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() || host.contains(['@', ' ']) {
        return Err(format!("invalid host {host:?}"));
    }
    let port = match port {
        None => default_port,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n != 0 => n,
            _ => return Err(format!("invalid port {p:?} (1-65535)")),
        },
    };
    Ok((host.to_string(), port))
}

/// `application/x-www-form-urlencoded` pairs, percent-decoded.
fn form_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                match (
                    bytes.get(i + 1).copied().and_then(hex),
                    bytes.get(i + 2).copied().and_then(hex),
                ) {
                    (Some(h), Some(l)) => {
                        out.push(h << 4 | l);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_part() {
        let u = PunchUri::parse("punch://example.org:9000/show/cam1?token=pa.x.y.z&latency=300")
            .unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.session.as_str()),
            ("example.org", 9000, "show")
        );
        assert_eq!(u.stream.as_deref(), Some("cam1"));
        assert_eq!(u.token, "pa.x.y.z");
        assert_eq!(u.params, vec![("latency".to_string(), "300".to_string())]);
        assert_eq!(u.server_url(), "http://example.org:9000");
        assert_eq!(
            u.to_string(),
            "punch://example.org:9000/show/cam1?token=pa.x.y.z&latency=300"
        );

        let u = PunchUri::parse("punchs://[::1]/show?token=t%2Bx").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.stream.as_deref()),
            ("::1", 443, None)
        );
        assert_eq!(u.token, "t+x");
        assert_eq!(u.server_url(), "https://[::1]:443");
        assert_eq!(PunchUri::parse("punch://h/s?token=t").unwrap().port, 8787);
    }

    #[test]
    fn says_what_is_wrong() {
        let err = |u: &str| PunchUri::parse(u).unwrap_err();
        assert!(err("srt://h:1").contains("unsupported scheme"));
        assert!(err("punch://h:1").contains("names no session"));
        assert!(err("punch://h:1/s").contains("has no token"));
        assert!(err("punch://h:1/s?token=").contains("has no token"));
        assert!(err("punch://h:99999/s?token=t").contains("invalid port"));
        assert!(err("punch://:1/s?token=t").contains("invalid host"));
        assert!(err("punch://h/s/c/x?token=t").contains("unexpected path segment"));
        assert!(err("punch://h/bad%20name?token=t").contains("session name"));
        assert!(err("just-text").contains("is not a URI"));
    }

    #[test]
    fn server_hosts() {
        assert_eq!(
            server_host("http://192.0.2.1:8787").as_deref(),
            Some("192.0.2.1")
        );
        assert_eq!(
            server_host("https://punch.example.org/prefix").as_deref(),
            Some("punch.example.org")
        );
        assert_eq!(
            server_host("http://[2001:db8::1]:8787").as_deref(),
            Some("2001:db8::1")
        );
        assert_eq!(server_host("nonsense"), None);
    }

    #[test]
    fn built_for_a_server() {
        let u = PunchUri::for_server("http://10.0.0.5:8787/", "show", Some("cam1"), "tok").unwrap();
        assert_eq!(u.to_string(), "punch://10.0.0.5:8787/show/cam1?token=tok");
        let u = PunchUri::for_server("https://punch.example.org", "show", None, "tok").unwrap();
        assert_eq!(
            u.to_string(),
            "punchs://punch.example.org:443/show?token=tok"
        );
    }
}
