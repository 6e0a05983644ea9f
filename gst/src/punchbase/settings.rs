//! Properties shared by `punchsink` and `punchsrc`.

use gst::glib;
use gst::prelude::*;
use punch::protocol::uri::PunchUri;

use super::enums::{PunchSessionState, PunchTally};

pub const DEFAULT_LOCAL_PORT: u32 = 0;
pub const DEFAULT_LOCAL_ADDRESS: &str = "0.0.0.0";
pub const DEFAULT_LATENCY: i32 = -1;
pub const DEFAULT_HEALTH_INTERVAL_MS: u32 = 1000;
pub const DEFAULT_PEER_TIMEOUT_S: u32 = 0;
pub const DEFAULT_STUN: bool = true;
pub const DEFAULT_PRIME_TTL: u32 = punch::client::nat::PRIME_TTL;
pub const DEFAULT_RECEIVER: u32 = 0;
/// The highest receiver slot a stream can have (`punch serve --max-receivers` is at most this).
pub const MAX_RECEIVER: u32 = 64;

#[derive(Debug, Clone)]
pub struct Settings {
    /// HTTP(S) base URL of the server.
    pub server: Option<String>,
    pub session: Option<String>,
    pub stream: Option<String>,
    pub token: Option<String>,
    pub local_port: u32,
    pub local_address: String,
    pub latency: i32,
    pub label: Option<String>,
    pub health_interval_ms: u32,
    pub peer_timeout_s: u32,
    /// Discover the public address of the SRT port by STUN before registering.
    pub stun: bool,
    /// IP TTL of the priming datagrams sent before SRT starts; 0 = no priming.
    pub prime_ttl: u32,
    /// A PEM file of CA certificates trusted for `punchs://` besides the system's.
    pub ca_file: Option<String>,
    /// The receiver slot to link with on a stream with several receivers; 0: the next free
    /// one (punchsrc), every one (punchsink).
    pub receiver: u32,
    /// Carry the media over the TCP tunnel from the start (a network known to block UDP).
    pub tunnel: bool,
    /// Why the last `uri` set was refused: reported at NULL→READY, since a property set before
    /// the element has a bus (gst-launch) cannot post an error.
    pub uri_error: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            server: None,
            session: None,
            stream: None,
            token: None,
            local_port: DEFAULT_LOCAL_PORT,
            local_address: DEFAULT_LOCAL_ADDRESS.into(),
            latency: DEFAULT_LATENCY,
            label: None,
            health_interval_ms: DEFAULT_HEALTH_INTERVAL_MS,
            peer_timeout_s: DEFAULT_PEER_TIMEOUT_S,
            stun: DEFAULT_STUN,
            prime_ttl: DEFAULT_PRIME_TTL,
            ca_file: None,
            receiver: DEFAULT_RECEIVER,
            tunnel: false,
            uri_error: None,
        }
    }
}

/// What the signalling task needs, checked.
#[derive(Debug, Clone)]
pub struct Target {
    pub server: String,
    pub session: String,
    pub stream: Option<String>,
    pub token: String,
}

impl Settings {
    /// The session URI the current settings describe, if complete.
    pub fn uri(&self) -> Option<String> {
        let mut uri = PunchUri::for_server(
            self.server.as_deref()?,
            self.session.as_deref()?,
            self.stream.as_deref(),
            self.token.as_deref()?,
        )
        .ok()?;
        for (key, value) in [
            (
                "local-port",
                (self.local_port != DEFAULT_LOCAL_PORT).then(|| self.local_port.to_string()),
            ),
            (
                "latency",
                (self.latency != DEFAULT_LATENCY).then(|| self.latency.to_string()),
            ),
            ("label", self.label.clone()),
            (
                "receiver",
                (self.receiver != DEFAULT_RECEIVER).then(|| self.receiver.to_string()),
            ),
        ] {
            if let Some(v) = value {
                uri.params.push((key.into(), v));
            }
        }
        Some(uri.to_string())
    }

    /// Replaces server, session, stream and token (and the options in the query) from a URI.
    pub fn set_uri(&mut self, uri: &str) -> Result<(), String> {
        let parsed = PunchUri::parse(uri)?;
        let mut next = self.clone();
        for (key, value) in &parsed.params {
            let bad = |what: &str| format!("URI parameter {key}={value:?}: {what}");
            match key.as_str() {
                "local-port" => {
                    next.local_port = value
                        .parse()
                        .ok()
                        .filter(|p| *p <= 65535)
                        .ok_or_else(|| bad("expected a port 0-65535"))?
                }
                "local-address" => next.local_address = value.clone(),
                "latency" => {
                    next.latency = value
                        .parse()
                        .ok()
                        .filter(|l| *l >= -1)
                        .ok_or_else(|| bad("expected milliseconds or -1"))?
                }
                "label" => next.label = Some(value.clone()),
                "health-interval" => {
                    next.health_interval_ms = value
                        .parse()
                        .ok()
                        .filter(|v| *v >= 100)
                        .ok_or_else(|| bad("expected milliseconds >= 100"))?
                }
                "peer-timeout" => {
                    next.peer_timeout_s = value.parse().map_err(|_| bad("expected seconds"))?
                }
                "receiver" => {
                    next.receiver = value
                        .parse()
                        .ok()
                        .filter(|v| *v <= MAX_RECEIVER)
                        .ok_or_else(|| bad("expected a receiver slot 1-64, or 0"))?
                }
                _ => {
                    return Err(format!(
                        "unknown URI parameter {key:?} (known: token, local-port, local-address, latency, label, health-interval, peer-timeout, receiver)"
                    ));
                }
            }
        }
        next.server = Some(parsed.server_url());
        next.session = Some(parsed.session);
        next.stream = parsed.stream;
        next.token = Some(parsed.token);
        *self = next;
        Ok(())
    }

    /// Checks that there is a session to join.
    pub fn target(&self) -> Result<Target, String> {
        if let Some(e) = &self.uri_error {
            return Err(format!("invalid uri: {e}"));
        }
        const HOW: &str = "set uri=punch://HOST[:PORT]/SESSION[/STREAM]?token=TOKEN (or the server, session and token properties)";
        let server = self
            .server
            .clone()
            .ok_or_else(|| format!("no Punch server: {HOW}"))?;
        punch::client::ws_url(&server, "x").map_err(|e| format!("server {server:?}: {e}"))?;
        let session = self
            .session
            .clone()
            .ok_or_else(|| format!("no session: {HOW}"))?;
        punch::protocol::validate_name("session", &session)?;
        if let Some(s) = &self.stream {
            punch::protocol::validate_name("stream", s)?;
        }
        let token = self
            .token
            .clone()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| format!("no token: {HOW}"))?;
        if self.local_address.parse::<std::net::IpAddr>().is_err() {
            return Err(format!(
                "local-address {:?} is not an IP address",
                self.local_address
            ));
        }
        Ok(Target {
            server,
            session,
            stream: self.stream.clone(),
            token,
        })
    }
}

/// The properties both elements have, documented once.
pub fn properties() -> Vec<glib::ParamSpec> {
    vec![
        glib::ParamSpecString::builder("uri")
            .nick("URI")
            .blurb("Session URI: punch://HOST[:PORT]/SESSION[/STREAM]?token=TOKEN[&latency=MS&local-port=N&label=TEXT] (punchs:// for TLS). Sets server, session, stream and token.")
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder("server")
            .nick("Server")
            .blurb("Punch server base URL, e.g. http://punch.example.org:8787 (alternative to uri)")
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder("session")
            .nick("Session")
            .blurb("Session name (alternative to uri)")
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder("stream")
            .nick("Stream")
            .blurb("Stream of the session; default: the token's stream, else the session's first stream")
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder("token")
            .nick("Token")
            .blurb("Stream token (or the session's admin token) (alternative to uri)")
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt::builder("local-port")
            .nick("Local port")
            .blurb("Local UDP port of the SRT socket; 0 = pick a free port")
            .maximum(65535)
            .default_value(DEFAULT_LOCAL_PORT)
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder("local-address")
            .nick("Local address")
            .blurb("Local IP address the SRT socket binds")
            .default_value(Some(DEFAULT_LOCAL_ADDRESS))
            .mutable_ready()
            .build(),
        glib::ParamSpecInt::builder("latency")
            .nick("Latency")
            .blurb("SRT latency in milliseconds; -1 = the session's (the link uses the larger of both sides')")
            .minimum(-1)
            .maximum(punch::protocol::MAX_LATENCY_MS as i32)
            .default_value(DEFAULT_LATENCY)
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder("label")
            .nick("Label")
            .blurb("Label shown to the operator (camera name)")
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt::builder("health-interval")
            .nick("Health interval")
            .blurb("Milliseconds between punch-health reports (to the bus and the server)")
            .minimum(100)
            .maximum(600_000)
            .default_value(DEFAULT_HEALTH_INTERVAL_MS)
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt::builder("peer-timeout")
            .nick("Peer timeout")
            .blurb("Seconds to wait for the other side to register before failing; 0 = wait forever")
            .default_value(DEFAULT_PEER_TIMEOUT_S)
            .mutable_ready()
            .build(),
        glib::ParamSpecBoolean::builder("stun")
            .nick("STUN discovery")
            .blurb("Before registering, ask the server's STUN service from the SRT port what its public address is and how the NAT maps it (needed behind port-rewriting NATs; symmetric NATs are relayed)")
            .default_value(DEFAULT_STUN)
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt::builder("prime-ttl")
            .nick("Priming TTL")
            .blurb("IP TTL of the datagrams sent from the SRT port to the peer before SRT starts: they open this side's NAT and expire before the peer's router (2 suits a host directly behind its router); 0 = no priming")
            .maximum(255)
            .default_value(DEFAULT_PRIME_TTL)
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder("ca-file")
            .nick("CA file")
            .blurb("PEM file of CA certificates trusted for punchs:// besides the system's (a server with a private CA)")
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt::builder("receiver")
            .nick("Receiver")
            .blurb("On a stream with several receivers: the receiver slot (1-N) to link with. 0 = punchsrc takes the next free slot (the one it had, when it returns), punchsink links with every receiver, one SRT connection each")
            .maximum(MAX_RECEIVER)
            .default_value(DEFAULT_RECEIVER)
            .mutable_ready()
            .build(),
        glib::ParamSpecBoolean::builder("tunnel")
            .nick("Tunnel")
            .blurb("Carry this side's SRT over the signalling server's TCP tunnel from the start (a network known to block UDP). Otherwise the tunnel is used by itself when STUN gets no answer")
            .default_value(false)
            .mutable_ready()
            .build(),
        glib::ParamSpecEnum::builder_with_default("session-state", PunchSessionState::None)
            .nick("Session state")
            .blurb("State of this element's stream on the server (notifies)")
            .read_only()
            .build(),
        glib::ParamSpecString::builder("peer-address")
            .nick("Peer address")
            .blurb("Where SRT sends: the other side's public ip:port, or the server's relay address (notifies)")
            .read_only()
            .build(),
        glib::ParamSpecEnum::builder_with_default("tally", PunchTally::Off)
            .nick("Tally")
            .blurb("Tally of this element's stream (notifies)")
            .read_only()
            .build(),
        glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
            .nick("Statistics")
            .blurb("The inner SRT element's statistics (application/x-srt-statistics)")
            .read_only()
            .build(),
    ]
}

/// Applies a writable property; `Err` for an invalid URI.
pub fn set_property(
    settings: &mut Settings,
    value: &glib::Value,
    pspec: &glib::ParamSpec,
) -> Result<(), String> {
    let string = || {
        value
            .get::<Option<String>>()
            .expect("type checked upstream")
            .filter(|s| !s.is_empty())
    };
    match pspec.name() {
        "uri" => match string() {
            Some(uri) => {
                let result = settings.set_uri(&uri);
                settings.uri_error = result.as_ref().err().cloned();
                result?
            }
            None => {
                settings.uri_error = None;
                settings.server = None;
                settings.session = None;
                settings.stream = None;
                settings.token = None;
            }
        },
        "server" => settings.server = string(),
        "session" => settings.session = string(),
        "stream" => settings.stream = string(),
        "token" => settings.token = string(),
        "local-port" => settings.local_port = value.get().expect("type checked upstream"),
        "local-address" => {
            settings.local_address = string().unwrap_or_else(|| DEFAULT_LOCAL_ADDRESS.into())
        }
        "latency" => settings.latency = value.get().expect("type checked upstream"),
        "label" => settings.label = string(),
        "health-interval" => {
            settings.health_interval_ms = value.get().expect("type checked upstream")
        }
        "peer-timeout" => settings.peer_timeout_s = value.get().expect("type checked upstream"),
        "stun" => settings.stun = value.get().expect("type checked upstream"),
        "prime-ttl" => settings.prime_ttl = value.get().expect("type checked upstream"),
        "ca-file" => settings.ca_file = string(),
        "receiver" => settings.receiver = value.get().expect("type checked upstream"),
        "tunnel" => settings.tunnel = value.get().expect("type checked upstream"),
        other => unreachable!("not a writable property: {other}"),
    }
    Ok(())
}

/// Reads a writable property (read-only ones come from the runtime state).
pub fn property(settings: &Settings, name: &str) -> Option<glib::Value> {
    Some(match name {
        "uri" => settings.uri().to_value(),
        "server" => settings.server.to_value(),
        "session" => settings.session.to_value(),
        "stream" => settings.stream.to_value(),
        "token" => settings.token.to_value(),
        "local-port" => settings.local_port.to_value(),
        "local-address" => settings.local_address.to_value(),
        "latency" => settings.latency.to_value(),
        "label" => settings.label.to_value(),
        "health-interval" => settings.health_interval_ms.to_value(),
        "peer-timeout" => settings.peer_timeout_s.to_value(),
        "stun" => settings.stun.to_value(),
        "prime-ttl" => settings.prime_ttl.to_value(),
        "ca-file" => settings.ca_file.to_value(),
        "receiver" => settings.receiver.to_value(),
        "tunnel" => settings.tunnel.to_value(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_round_trip_and_params() {
        let mut s = Settings::default();
        s.set_uri(
            "punch://127.0.0.1:8787/show/cam1?token=abc&latency=300&local-port=9000&label=Wide",
        )
        .unwrap();
        assert_eq!(s.server.as_deref(), Some("http://127.0.0.1:8787"));
        assert_eq!(
            (s.latency, s.local_port, s.label.as_deref()),
            (300, 9000, Some("Wide"))
        );
        assert_eq!(
            s.uri().unwrap(),
            "punch://127.0.0.1:8787/show/cam1?token=abc&local-port=9000&latency=300&label=Wide"
        );
        assert!(
            s.set_uri("punch://h/s?token=t&colour=red")
                .unwrap_err()
                .contains("unknown URI parameter")
        );
        assert!(
            s.set_uri("punch://h/s?token=t&latency=x")
                .unwrap_err()
                .contains("latency")
        );
        // a failed set leaves the settings as they were
        assert_eq!(s.session.as_deref(), Some("show"));
    }

    #[test]
    fn target_says_what_is_missing() {
        let s = Settings::default();
        assert!(s.target().unwrap_err().contains("no Punch server"));
        let s = Settings {
            server: Some("http://h:1".into()),
            ..Default::default()
        };
        assert!(s.target().unwrap_err().contains("no session"));
        let s = Settings {
            session: Some("s".into()),
            ..s
        };
        assert!(s.target().unwrap_err().contains("no token"));
        let s = Settings {
            token: Some("t".into()),
            local_address: "nowhere".into(),
            ..s
        };
        assert!(s.target().unwrap_err().contains("local-address"));
    }
}
