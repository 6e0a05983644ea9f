//! `punch session …`: create, show, steer and close sessions on a running server, through the
//! REST client.

use clap::Subcommand;
use serde_json::json;

use super::say;
use super::tokens::{admin_token, load_tokens, save_token, store_tokens, token_key};
use super::{ServerArg, TokenArg};
use crate::client::ClientError;
use crate::client::rest::Rest;
use crate::protocol::{ConnectResponse, CreatedSession, SessionView, TallyState};

#[derive(Subcommand)]
pub enum SessionCommand {
    /// Create a session; prints the operator URL, the tokens and a QR code.
    Create {
        /// Session name (letters, digits, '-' and '_'); generated when omitted.
        name: Option<String>,
        /// A stream of the session (repeat for several cameras); NAME:N gives it N receivers
        /// (a programme return to N monitors); default: one stream "default".
        #[arg(long = "stream", value_name = "NAME[:N]")]
        streams: Vec<String>,
        /// Give the session a waiting room: cameras with its join token wait to be admitted.
        #[arg(long)]
        join: bool,
        /// SRT latency in milliseconds (20–8000).
        #[arg(long)]
        latency: Option<u32>,
        /// Inactivity TTL in seconds.
        #[arg(long)]
        ttl: Option<u64>,
        /// The server's create key, if it was started with one.
        #[arg(long, env = "PUNCH_CREATE_KEY", hide_env_values = true)]
        create_key: Option<String>,
        #[command(flatten)]
        server: ServerArg,
    },
    /// Show a session's state, peers and last health.
    Show {
        name: String,
        #[command(flatten)]
        server: ServerArg,
        #[command(flatten)]
        token: TokenArg,
    },
    /// Close a session: every peer is told and disconnected.
    Close {
        name: String,
        #[command(flatten)]
        server: ServerArg,
        #[command(flatten)]
        token: TokenArg,
    },
    /// Set a stream's SRT latency (ms); both of its peers reconnect with it.
    Latency {
        name: String,
        stream: String,
        latency: u32,
        #[command(flatten)]
        server: ServerArg,
        #[command(flatten)]
        token: TokenArg,
    },
    /// Print the connection strings of a session's streams (GStreamer, srt-live-transmit,
    /// ffmpeg, OBS, vMix) once both sides of a stream are registered.
    Connect {
        name: String,
        /// Only this stream.
        #[arg(long)]
        stream: Option<String>,
        #[command(flatten)]
        server: ServerArg,
        #[command(flatten)]
        token: TokenArg,
    },
    /// Set a stream's tally: on-air, preview or off.
    Tally {
        name: String,
        stream: String,
        #[arg(value_parser = ["on-air", "preview", "off"])]
        state: String,
        #[command(flatten)]
        server: ServerArg,
        #[command(flatten)]
        token: TokenArg,
    },
}

/// A session's admin client: the server, the session and its token (given, or remembered).
struct Admin {
    rest: Rest,
    session: String,
    token: String,
}

impl Admin {
    fn new(server: &ServerArg, session: &str, token: TokenArg) -> Result<Admin, String> {
        let rest = server.rest().map_err(|e| e.to_string())?;
        let token = admin_token(rest.base(), session, token.token)?;
        Ok(Admin {
            rest,
            session: session.to_string(),
            token,
        })
    }
}

/// A failed request as the CLI says it: the server's words, and where to point it otherwise.
fn said(e: ClientError) -> String {
    match e {
        ClientError::Unreachable { .. } => format!("{e} (--server / PUNCH_SERVER)"),
        ClientError::Refused {
            status,
            code: Some(code),
            message,
        } => format!("{message} ({status} {code})"),
        ClientError::Refused { message, .. } => message,
        e => e.to_string(),
    }
}

pub async fn session(cmd: SessionCommand) -> Result<(), String> {
    match cmd {
        SessionCommand::Create {
            name,
            streams,
            join,
            latency,
            ttl,
            create_key,
            server,
        } => {
            let mut body = json!({ "name": name, "latency": latency, "ttl": ttl, "join": join });
            if !streams.is_empty() {
                body["streams"] = streams_body(&streams)?;
            }
            let rest = server.rest().map_err(said)?;
            let created = rest
                .create(&body, create_key.as_deref())
                .await
                .map_err(said)?;
            print_created(&created);
            if let Err(e) = save_token(&server.server, &created.session, &created.token) {
                eprintln!(
                    "warning: the admin token was not saved ({e}); keep it from the output above"
                );
            }
            Ok(())
        }
        SessionCommand::Show {
            name,
            server,
            token,
        } => {
            let a = Admin::new(&server, &name, token)?;
            let view = a.rest.session(&a.session, &a.token).await.map_err(said)?;
            print_view(&view);
            Ok(())
        }
        SessionCommand::Close {
            name,
            server,
            token,
        } => {
            let a = Admin::new(&server, &name, token)?;
            a.rest.close(&a.session, &a.token).await.map_err(said)?;
            let mut tokens = load_tokens();
            if tokens.remove(&token_key(&server.server, &name)).is_some() {
                let _ = store_tokens(&tokens);
            }
            say!("Session {name} closed; its peers were told and disconnected.");
            Ok(())
        }
        SessionCommand::Latency {
            name,
            stream,
            latency,
            server,
            token,
        } => {
            let a = Admin::new(&server, &name, token)?;
            a.rest
                .latency(&a.session, &a.token, &stream, latency)
                .await
                .map_err(said)?;
            say!("Latency of {name}/{stream} set to {latency} ms; its peers reconnect with it");
            Ok(())
        }
        SessionCommand::Connect {
            name,
            stream,
            server,
            token,
        } => {
            let a = Admin::new(&server, &name, token)?;
            let answer = a
                .rest
                .connect_strings(&a.session, &a.token, stream.as_deref())
                .await
                .map_err(said)?;
            print_connect(&answer);
            Ok(())
        }
        SessionCommand::Tally {
            name,
            stream,
            state,
            server,
            token,
        } => {
            let state = TallyState::parse(&state).expect("clap checked the value");
            let a = Admin::new(&server, &name, token)?;
            a.rest
                .tally(&a.session, &a.token, &stream, state)
                .await
                .map_err(said)?;
            say!("Tally of {name}/{stream} set to {}", state.as_str());
            Ok(())
        }
    }
}

/// The connection strings of `punch session connect`.
fn print_connect(answer: &ConnectResponse) {
    for (stream, sides) in &answer.streams {
        for (title, s) in [
            ("peer a (sender)", &sides.for_peer_a),
            ("peer b (receiver)", &sides.for_peer_b),
        ] {
            say!("== {stream}: {title}");
            for (format, value) in [
                ("punch", &s.punch),
                ("gstreamer", &s.gstreamer),
                ("srt_live_transmit", &s.srt_live_transmit),
                ("ffmpeg", &s.ffmpeg),
                ("obs", &s.obs),
            ] {
                if !value.is_empty() {
                    say!("{format}:\n  {value}");
                }
                if let Some(note) = s.notes.get(format) {
                    say!("  ({note})");
                }
            }
            let v = &s.vmix;
            say!(
                "vmix: Type={} Hostname={} Port={} Latency={} ms Passphrase={} Key Length={}",
                v.kind,
                v.hostname,
                v.port,
                v.latency_ms,
                v.passphrase,
                v.key_length
            );
            if let Some(id) = &v.stream_id {
                say!("  Stream ID={id}");
            }
            for note in ["vmix", "relay", "streamid"] {
                if let Some(note) = s.notes.get(note) {
                    say!("  ({note})");
                }
            }
        }
    }
}

pub fn print_created(c: &CreatedSession) {
    say!(
        "Session    {}   ({}, latency {} ms, closes after {} s without activity)",
        c.session,
        c.state,
        c.latency,
        c.ttl
    );
    say!("Dashboard  {}", c.url);
    say!("Admin token (keep private): {}", c.token);
    // The server base is the dashboard URL without its path.
    let base = c.url.split("/s/").next().unwrap_or_default();
    say!("Streams (punchsink takes the sender URI, punchsrc the receiver URI):");
    for name in &c.streams {
        say!("  {name}");
        if let Some(t) = c.stream_tokens.get(name) {
            for role in [
                crate::protocol::Role::Sender,
                crate::protocol::Role::Receiver,
            ] {
                let tok = t.get(role);
                say!("    {role:<8} token {tok}");
                if let Ok(uri) =
                    crate::protocol::uri::PunchUri::for_server(base, &c.session, Some(name), tok)
                {
                    say!("    {:<8} uri   {uri}", "");
                }
            }
        }
    }
    if let Some(join) = &c.join_token
        && let Ok(uri) = crate::protocol::uri::PunchUri::for_server(base, &c.session, None, join)
    {
        say!("Waiting room (peers with this URI wait for you to admit them): {uri}");
    }
    match qr_terminal(&c.url) {
        Ok(qr) => say!("\nScan for the dashboard:\n{qr}"),
        Err(e) => eprintln!("(no QR code: {e})"),
    }
}

/// The QR code of `data` drawn with Unicode half blocks (dark on light, as scanners expect).
fn qr_terminal(data: &str) -> Result<String, String> {
    use qrcode::render::unicode::Dense1x2;
    let code = qrcode::QrCode::new(data.as_bytes()).map_err(|e| e.to_string())?;
    Ok(code
        .render::<Dense1x2>()
        .dark_color(Dense1x2::Light)
        .light_color(Dense1x2::Dark)
        .quiet_zone(true)
        .build())
}

/// `--stream` values as the creation body's `streams`: a map of name to its settings.
fn streams_body(streams: &[String]) -> Result<serde_json::Value, String> {
    let mut map = serde_json::Map::new();
    for s in streams {
        let (name, spec) = match s.split_once(':') {
            None => (s.as_str(), serde_json::Value::Null),
            Some((name, n)) => match n.parse::<u8>() {
                Ok(n) if n >= 1 => (name, json!({ "receivers": n })),
                _ => {
                    return Err(format!(
                        "--stream {s}: after the name, ':N' is the number of receivers (1 or more), got {n:?}"
                    ));
                }
            },
        };
        if map.insert(name.to_string(), spec).is_some() {
            return Err(format!("--stream {name} is given twice"));
        }
    }
    Ok(serde_json::Value::Object(map))
}

fn print_view(v: &SessionView) {
    println!(
        "Session {}  {}  ({}/{} streams connected, latency {} ms)",
        v.session, v.state, v.connected, v.total, v.latency
    );
    println!(
        "Created {}{}",
        v.created,
        v.expires
            .as_ref()
            .map(|e| format!(", expires {e} unless someone connects"))
            .unwrap_or_default()
    );
    for s in &v.streams {
        println!(
            "  stream {}{}  {}  tally {}",
            s.name,
            s.label
                .as_ref()
                .map(|l| format!(" ({l})"))
                .unwrap_or_default(),
            s.state,
            s.tally.as_str()
        );
        for (role, p) in [("sender", &s.sender), ("receiver", &s.receiver)] {
            let addr = p
                .address
                .as_ref()
                .map(|a| format!("{}:{}", a.ip, a.port))
                .unwrap_or("-".into());
            let health = p
                .last_health
                .as_ref()
                .map(|h| {
                    let f = |v: Option<f64>, unit: &str| {
                        v.map(|v| format!("{v:.1}{unit}")).unwrap_or("-".into())
                    };
                    format!(
                        "rtt {} retransmit {} bitrate {} loss {}",
                        f(h.rtt, " ms"),
                        f(h.retransmit, " %"),
                        f(h.bitrate.map(|b| b / 1e6), " Mbit/s"),
                        f(h.loss, " %")
                    )
                })
                .unwrap_or_default();
            println!(
                "    {role:<8} {:<10} {addr:<22} {health}",
                format!("{:?}", p.status).to_lowercase()
            );
        }
        for link in &s.receivers {
            let p = &link.receiver_peer;
            let addr = p
                .address
                .as_ref()
                .map(|a| format!("{}:{}", a.ip, a.port))
                .unwrap_or("-".into());
            let bitrate = link
                .sender
                .last_health
                .as_ref()
                .and_then(|h| h.bitrate)
                .map(|b| format!("sending {:.1} Mbit/s", b / 1e6))
                .unwrap_or_default();
            println!(
                "      receiver {:<3} {:<10} {addr:<22} {bitrate}",
                link.receiver, link.state
            );
        }
        if let Some(total) = s.sent_bitrate {
            println!("      sent in all: {:.1} Mbit/s", total / 1e6);
        }
    }
}
