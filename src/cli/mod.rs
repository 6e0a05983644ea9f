//! The `punch` command line: `punch serve` and `punch session …`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};

use crate::protocol::{CreatedSession, ErrorResponse, SessionView, TallyState};
use crate::server::{DEFAULT_TTL_S, Server, ServerConfig};

/// `println!` that ignores a closed stdout (a server must not die because its log reader went away).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

const DEFAULT_SERVER: &str = "http://127.0.0.1:8787";

#[derive(Parser)]
#[command(
    name = "punch",
    version,
    about = "Punch: SRT session broker. Connects SRT endpoints peer to peer without port forwarding."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the Punch server (HTTP API, WebSocket signalling).
    ///
    /// Peers and browsers reach it at --public-url (default: whatever host they used to reach
    /// it). Sessions live in the SQLite file given by --db and survive restarts.
    Serve(ServeArgs),
    /// Create, inspect, close sessions and set tally on a running server.
    #[command(subcommand)]
    Session(SessionCommand),
    /// Tell how this machine's NAT treats UDP, and whether direct SRT rendezvous can work.
    ///
    /// Probes the server's STUN service twice from one local UDP port (primary and alternate
    /// STUN port): the same public address both times means an endpoint-independent mapping
    /// (rendezvous works), different ones a symmetric NAT (Punch relays such streams).
    Doctor {
        /// Punch server base URL.
        #[arg(env = "PUNCH_SERVER", default_value = DEFAULT_SERVER)]
        server: String,
        /// Local UDP port to probe from (default: any free port).
        #[arg(long, default_value_t = 0)]
        port: u16,
    },
    /// Hold one side of a stream for another SRT tool (srt-live-transmit, OBS, vMix, ...).
    ///
    /// Registers with the session from the given local UDP port (after STUN discovery from that
    /// port), prints the peer's coordinates and passphrase and the settings for the tool, and
    /// stays connected (Ctrl-C leaves). Start the tool on that same local port.
    Peer {
        /// The side's punch:// URI (with its stream token), as `punch session create` prints it.
        uri: String,
        /// The local UDP port the SRT tool will bind.
        #[arg(long)]
        port: u16,
        /// sender or receiver (default: the one the token is for).
        #[arg(long, value_parser = ["sender", "receiver"])]
        role: Option<String>,
        /// Label shown on the dashboard.
        #[arg(long)]
        label: Option<String>,
    },
}

#[derive(Args)]
struct ServeArgs {
    /// Address and port to listen on (HTTP and WebSocket).
    #[arg(long, default_value = "0.0.0.0:8787", env = "PUNCH_LISTEN")]
    listen: SocketAddr,
    /// SQLite database file holding sessions and the token secret; `:memory:` keeps nothing.
    #[arg(long, default_value = "punch.db", env = "PUNCH_DB")]
    db: String,
    /// Base URL peers and browsers use to reach this server (e.g. https://punch.example.org),
    /// used in dashboard and QR links. Default: the Host the client used.
    #[arg(long, env = "PUNCH_PUBLIC_URL")]
    public_url: Option<String>,
    /// Trust X-Forwarded-For / Forwarded / X-Forwarded-Proto (only behind your own reverse proxy).
    #[arg(long)]
    trust_proxy: bool,
    /// Default inactivity TTL of new sessions, in seconds.
    #[arg(long, default_value_t = DEFAULT_TTL_S)]
    ttl: u64,
    /// Most sessions held at once.
    #[arg(long, default_value_t = 20_000)]
    max_sessions: usize,
    /// Sessions one client IP may create per minute (0 = unlimited).
    #[arg(long, default_value_t = 60)]
    creates_per_minute: u32,
    /// File holding the token secret (any bytes, at least 16). Default: generated and kept in the database.
    /// PUNCH_SECRET may hold it instead.
    #[arg(long)]
    secret_file: Option<PathBuf>,
    /// Create a demo session at start-up and print how to use it.
    #[arg(long)]
    demo: bool,
    /// UDP port of the STUN service peers discover their public address with (the alternate
    /// port for NAT classification is the next one; 0 = any free ports). Open both in firewalls.
    #[arg(long, default_value_t = 3478, env = "PUNCH_STUN_PORT")]
    stun_port: u16,
    /// Run no STUN service (peers then only work behind port-preserving NATs).
    #[arg(long)]
    no_stun: bool,
    /// Seconds a stream may try direct rendezvous before it is relayed through this server.
    #[arg(long, default_value_t = 8.0)]
    direct_timeout: f64,
    /// Never relay media (streams that cannot be punched then do not connect).
    #[arg(long)]
    no_relay: bool,
    /// Most streams relayed at once.
    #[arg(long, default_value_t = 100)]
    relay_max: usize,
    /// Bandwidth cap per relayed stream, Mbit/s.
    #[arg(long, default_value_t = 50)]
    relay_max_mbps: u64,
    /// Bandwidth cap of all relayed streams together, Mbit/s.
    #[arg(long, default_value_t = 1000)]
    relay_total_mbps: u64,
    /// UDP port range relays take their ports from, e.g. 40000-40999 (default: any free port).
    #[arg(long, value_parser = parse_port_range)]
    relay_ports: Option<(u16, u16)>,
}

fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let (lo, hi) = s
        .split_once('-')
        .ok_or("expected LOW-HIGH, e.g. 40000-40999")?;
    let parse = |p: &str| {
        p.trim()
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or(format!("{p:?} is not a port number (1-65535)"))
    };
    let (lo, hi) = (parse(lo)?, parse(hi)?);
    if lo > hi {
        return Err(format!("{lo} is above {hi}"));
    }
    Ok((lo, hi))
}

#[derive(Args)]
struct ServerArg {
    /// Punch server base URL.
    #[arg(long, env = "PUNCH_SERVER", default_value = DEFAULT_SERVER)]
    server: String,
}

#[derive(Args)]
struct TokenArg {
    /// The session's admin token (default: the one saved when this machine created the session).
    #[arg(long, env = "PUNCH_TOKEN")]
    token: Option<String>,
}

#[derive(Subcommand)]
enum SessionCommand {
    /// Create a session; prints the operator URL, the tokens and a QR code.
    Create {
        /// Session name (letters, digits, '-' and '_'); generated when omitted.
        name: Option<String>,
        /// A stream of the session (repeat for several cameras); default: one stream "default".
        #[arg(long = "stream", value_name = "NAME")]
        streams: Vec<String>,
        /// SRT latency in milliseconds (20–8000).
        #[arg(long)]
        latency: Option<u32>,
        /// Inactivity TTL in seconds.
        #[arg(long)]
        ttl: Option<u64>,
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

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve(args).await,
            Command::Session(cmd) => session(cmd).await,
            Command::Doctor { server, port } => doctor(&server, port).await,
            Command::Peer {
                uri,
                port,
                role,
                label,
            } => peer(&uri, port, role, label).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .try_init();
}

/// Lets one process hold many sockets: soft RLIMIT_NOFILE up to the hard limit.
fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

async fn serve(args: ServeArgs) -> Result<(), String> {
    init_logging();
    raise_fd_limit();
    let secret = match (&args.secret_file, std::env::var("PUNCH_SECRET").ok()) {
        (Some(path), _) => {
            Some(std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?)
        }
        (None, Some(s)) => Some(s.into_bytes()),
        (None, None) => None,
    };
    if secret.as_ref().is_some_and(|s| s.len() < 16) {
        return Err("the token secret must be at least 16 bytes".into());
    }
    let db = if args.db == ":memory:" {
        args.db.clone()
    } else {
        std::path::absolute(&args.db)
            .map(|p| p.display().to_string())
            .unwrap_or(args.db.clone())
    };
    let mut config = ServerConfig {
        listen: args.listen,
        db,
        public_url: args.public_url.clone(),
        trust_proxy: args.trust_proxy,
        default_ttl_s: args.ttl,
        secret,
        ..ServerConfig::default()
    };
    config.stun_port = (!args.no_stun).then_some(args.stun_port);
    if !(args.direct_timeout.is_finite() && args.direct_timeout > 0.0) {
        return Err("--direct-timeout must be a positive number of seconds".into());
    }
    config.path.direct_timeout_ms = (args.direct_timeout * 1000.0) as i64;
    config.path.relay = !args.no_relay;
    config.relay.max_relays = args.relay_max;
    config.relay.max_bitrate = args.relay_max_mbps * 1_000_000;
    config.relay.max_total_bitrate = args.relay_total_mbps * 1_000_000;
    config.relay.ports = args.relay_ports;
    config.limits.max_sessions = args.max_sessions;
    config.limits.creates_per_minute = args.creates_per_minute;
    if !(1..=config.limits.max_ttl_s).contains(&args.ttl) {
        return Err(format!(
            "--ttl must be between 1 and {} seconds",
            config.limits.max_ttl_s
        ));
    }
    let stop = shutdown_signal()?;
    let server = Server::start(config).await?;
    let addr = server.local_addr();
    let local = if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    };
    say!("Punch server listening on http://{addr}");
    match &args.public_url {
        Some(u) => say!("Peers and browsers reach it at {u}"),
        None => say!(
            "Peers reach it at http://<this machine's address>:{} (set --public-url if it sits behind a proxy or DNS name)",
            addr.port()
        ),
    }
    match server.stun_ports() {
        Some([p, alt]) => say!(
            "STUN on udp/{p} and udp/{alt}; relayed streams use {} (open these UDP ports to peers)",
            match args.relay_ports {
                Some((lo, hi)) => format!("udp/{lo}-{hi}"),
                None => "any free UDP port".into(),
            }
        ),
        None => say!(
            "No STUN service (--no-stun): peers behind port-rewriting NATs cannot connect directly"
        ),
    }
    say!(
        "Data: {}",
        if args.db == ":memory:" {
            "in memory (lost on exit)".to_string()
        } else {
            args.db.clone()
        }
    );
    if args.demo {
        let base = args.public_url.clone().unwrap_or(format!("http://{local}"));
        match create(&base, json!({ "name": null })).await {
            Ok(created) => {
                say!("\nDemo session:");
                print_created(&created);
                let _ = save_token(&base, &created.session, &created.token);
            }
            Err(e) => eprintln!("could not create the demo session: {e}"),
        }
    }
    say!("Press Ctrl-C to stop.");
    stop.await;
    tracing::info!("shutting down");
    server.shutdown().await;
    Ok(())
}

/// Registers SIGINT/SIGTERM handlers now; the returned future resolves on either.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>, String> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int =
        signal(SignalKind::interrupt()).map_err(|e| format!("cannot handle SIGINT: {e}"))?;
    let mut term =
        signal(SignalKind::terminate()).map_err(|e| format!("cannot handle SIGTERM: {e}"))?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    })
}

// ---------------------------------------------------------------------------------------------
// HTTP client side

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .expect("HTTP client")
}

async fn call(req: reqwest::RequestBuilder, server: &str) -> Result<Value, String> {
    let resp = req.send().await.map_err(|e| {
        if e.is_connect() || e.is_timeout() {
            format!("cannot reach the Punch server at {server} ({e}); is `punch serve` running there? (--server / PUNCH_SERVER)")
        } else {
            format!("request to {server} failed: {e}")
        }
    })?;
    let status = resp.status();
    let body = resp
        .bytes()
        .await
        .map_err(|e| format!("reading the answer from {server}: {e}"))?;
    if status.is_success() {
        return serde_json::from_slice(&body)
            .map_err(|e| format!("unexpected answer from {server}: {e}"));
    }
    match serde_json::from_slice::<ErrorResponse>(&body) {
        Ok(e) => Err(format!(
            "{} ({} {})",
            e.error.message,
            status.as_u16(),
            e.error.code
        )),
        Err(_) => Err(format!(
            "HTTP {status} from {server}; is this a Punch server?"
        )),
    }
}

async fn create(server: &str, body: Value) -> Result<CreatedSession, String> {
    let base = server.trim_end_matches('/');
    let v = call(http().post(format!("{base}/api/session")).json(&body), base).await?;
    serde_json::from_value(v).map_err(|e| format!("unexpected answer from {base}: {e}"))
}

fn tokens_file() -> Option<PathBuf> {
    let dir = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(dir.join("punch").join("sessions.json"))
}

fn token_key(server: &str, session: &str) -> String {
    format!("{}|{session}", server.trim_end_matches('/'))
}

fn load_tokens() -> BTreeMap<String, String> {
    tokens_file()
        .and_then(|f| std::fs::read(f).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn store_tokens(tokens: &BTreeMap<String, String>) -> Result<(), String> {
    let file = tokens_file().ok_or("no HOME or XDG_CONFIG_HOME to keep tokens in")?;
    let dir = file.parent().expect("file has a parent");
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let body = serde_json::to_vec_pretty(tokens).expect("map serialises");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    use std::io::Write;
    opts.open(&file)
        .and_then(|mut f| f.write_all(&body))
        .map_err(|e| format!("cannot write {}: {e}", file.display()))
}

/// Remembers an admin token (file mode 0600) so `show`/`close` work without `--token`.
fn save_token(server: &str, session: &str, token: &str) -> Result<(), String> {
    let mut tokens = load_tokens();
    tokens.insert(token_key(server, session), token.to_string());
    store_tokens(&tokens)
}

fn admin_token(server: &str, session: &str, given: Option<String>) -> Result<String, String> {
    given.or_else(|| load_tokens().remove(&token_key(server, session))).ok_or_else(|| {
        format!("no token for session {session} on {server}: pass --token (or PUNCH_TOKEN); only sessions created from this machine are remembered")
    })
}

/// An admin request on `/api/session/{name}{path}` with the given or remembered token.
async fn admin_request(
    server: &ServerArg,
    name: &str,
    token: TokenArg,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Result<Value, String> {
    let base = server.server.trim_end_matches('/');
    let token = admin_token(base, name, token.token)?;
    let mut req = http()
        .request(method, format!("{base}/api/session/{name}{path}"))
        .bearer_auth(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    call(req, base).await
}

fn print_created(c: &CreatedSession) {
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
    }
}

async fn session(cmd: SessionCommand) -> Result<(), String> {
    match cmd {
        SessionCommand::Create {
            name,
            streams,
            latency,
            ttl,
            server,
        } => {
            let mut body = json!({ "name": name, "latency": latency, "ttl": ttl });
            if !streams.is_empty() {
                body["streams"] = json!(streams);
            }
            let created = create(&server.server, body).await?;
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
            let v = admin_request(&server, &name, token, reqwest::Method::GET, "", None).await?;
            let view: SessionView =
                serde_json::from_value(v).map_err(|e| format!("unexpected answer: {e}"))?;
            print_view(&view);
            Ok(())
        }
        SessionCommand::Close {
            name,
            server,
            token,
        } => {
            admin_request(&server, &name, token, reqwest::Method::DELETE, "", None).await?;
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
            let body = json!({ "stream": stream, "latency": latency });
            admin_request(
                &server,
                &name,
                token,
                reqwest::Method::POST,
                "/latency",
                Some(body),
            )
            .await?;
            say!("Latency of {name}/{stream} set to {latency} ms; its peers reconnect with it");
            Ok(())
        }
        SessionCommand::Connect {
            name,
            stream,
            server,
            token,
        } => {
            let path = match &stream {
                Some(s) => format!("/connect?stream={s}"),
                None => "/connect".into(),
            };
            let v = admin_request(&server, &name, token, reqwest::Method::GET, &path, None).await?;
            let answer: crate::protocol::ConnectResponse =
                serde_json::from_value(v).map_err(|e| format!("unexpected answer: {e}"))?;
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
                    if let Some(note) = s.notes.get("vmix") {
                        say!("  ({note})");
                    }
                }
            }
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
            let body = json!({ "stream": stream, "state": state });
            admin_request(
                &server,
                &name,
                token,
                reqwest::Method::POST,
                "/tally",
                Some(body),
            )
            .await?;
            say!("Tally of {name}/{stream} set to {}", state.as_str());
            Ok(())
        }
    }
}

// ---------------------------------------------------------------------------------------------
// NAT diagnosis and third-party peers

/// How long each STUN probe waits for an answer.
const STUN_TIMEOUT: Duration = Duration::from_millis(1500);

/// The server's host name and STUN ports, from its `/healthz`.
async fn stun_service(server: &str) -> Result<(String, [u16; 2]), String> {
    let base = server.trim_end_matches('/');
    let health = call(http().get(format!("{base}/healthz")), base).await?;
    let ports: Option<[u16; 2]> = serde_json::from_value(health["stun"].clone()).ok();
    let ports =
        ports.ok_or_else(|| format!("the server at {base} runs no STUN service (--no-stun)"))?;
    let host =
        crate::client::server_host(base).ok_or_else(|| format!("{base} is not a server URL"))?;
    Ok((host, ports))
}

/// The local address the kernel picks to reach `server` (no packet is sent).
fn local_ip_towards(server: SocketAddr) -> Option<std::net::IpAddr> {
    let s = std::net::UdpSocket::bind(crate::client::nat::any_local(server.ip(), 0)).ok()?;
    s.connect(server).ok()?;
    s.local_addr().ok().map(|a| a.ip())
}

async fn doctor(server: &str, port: u16) -> Result<(), String> {
    use crate::client::nat::discover_host;
    use crate::protocol::NatMapping;
    let (host, [primary, alternate]) = stun_service(server).await?;
    let found = discover_host(&host, primary, port, STUN_TIMEOUT).await?;
    say!(
        "STUN service   {} (alternate port {alternate})",
        found.server
    );
    let local_ip = local_ip_towards(found.server);
    say!(
        "Local address  {}",
        local_ip
            .map(|ip| format!(
                "{ip} (UDP probes from port {})",
                if port == 0 {
                    "any".to_string()
                } else {
                    port.to_string()
                }
            ))
            .unwrap_or_else(|| "unknown".into())
    );
    say!("Public address {} (seen by the primary port)", found.mapped);
    match found.mapped_alt {
        Some(alt) => say!("               {alt} (seen by the alternate port)"),
        None => say!("               (the alternate port did not answer)"),
    }
    let behind_nat = local_ip.is_some_and(|ip| ip != found.mapped.ip());
    say!(
        "NAT            {}",
        if behind_nat {
            "yes"
        } else {
            "none seen (the public address is this machine's)"
        }
    );
    let verdict = match found.mapping() {
        NatMapping::EndpointIndependent => {
            "endpoint-independent mapping: direct SRT rendezvous can work (peers are given the public address above)"
        }
        NatMapping::EndpointDependent => {
            "endpoint-dependent mapping (symmetric NAT): a new public port per destination, so direct rendezvous cannot work; Punch relays such streams through the server"
        }
        NatMapping::Unknown => {
            "unknown: the alternate STUN port did not answer (is UDP to it blocked?); Punch tries direct and falls back to the relay"
        }
    };
    say!("Mapping        {verdict}");
    Ok(())
}

/// The role a stream token is for (`ps.<session>.<stream>.<role>.…`).
fn token_role(token: &str) -> Option<crate::protocol::Role> {
    let mut parts = token.split('.');
    (parts.next()? == "ps").then_some(())?;
    crate::protocol::Role::parse(parts.nth(2)?)
}

async fn peer(
    uri: &str,
    port: u16,
    role: Option<String>,
    label: Option<String>,
) -> Result<(), String> {
    use crate::client::{Signalling, nat};
    use crate::protocol::{ClientMessage, PeerMeta, Port, Register, Role, ServerMessage};
    let uri = crate::protocol::uri::PunchUri::parse(uri)?;
    let role = match role {
        Some(r) => Role::parse(&r).expect("clap checked the value"),
        None => token_role(&uri.token)
            .ok_or("the token is not a stream token: pass --role sender|receiver")?,
    };
    if port == 0 {
        return Err("--port must be the UDP port your SRT tool binds (1-65535)".into());
    }
    let stop = shutdown_signal()?;
    tokio::pin!(stop);
    let mut sig = Signalling::connect(
        &uri.server_url(),
        &uri.session,
        &uri.token,
        Duration::from_secs(10),
    )
    .await
    .map_err(|e| e.to_string())?;
    let mut nat_report = None;
    let mut server_ip = None;
    loop {
        let msg = tokio::select! {
            _ = &mut stop => return Ok(()),
            m = sig.recv() => m.map_err(|e| e.to_string())?,
        };
        let Some(msg) = msg else {
            return Err("the server closed the connection".into());
        };
        match msg {
            ServerMessage::Hello(hello) => {
                if let Some([stun, _]) = hello.stun {
                    match nat::discover_host(&uri.host, stun, port, STUN_TIMEOUT).await {
                        Ok(found) => {
                            say!(
                                "Local port {port} is {} in public ({})",
                                found.mapped,
                                found.mapping().as_str()
                            );
                            server_ip = Some(found.server.ip());
                            nat_report = Some(found.report());
                        }
                        Err(e) => eprintln!("warning: STUN discovery failed: {e}"),
                    }
                }
                sig.send(&ClientMessage::Register(Register {
                    stream: uri.stream.clone(),
                    port: Port(port),
                    role,
                    meta: PeerMeta {
                        label: label.clone(),
                        ..Default::default()
                    },
                    nat: nat_report.clone(),
                    // The tool's SRT status is not ours to report.
                    reports: false,
                }))
                .await
                .map_err(|e| e.to_string())?;
            }
            ServerMessage::Registered(r) => say!(
                "Registered as the {} of stream {} (public address {}:{}); waiting for the peer",
                r.role,
                r.stream,
                r.you.ip,
                r.you.port
            ),
            ServerMessage::Peer(p) => {
                let host = if p.relay {
                    server_ip
                        .map(|ip| ip.to_string())
                        .unwrap_or_else(|| uri.host.clone())
                } else {
                    p.ip.clone()
                };
                if p.relay {
                    say!("The stream is relayed through the server.");
                } else if let Ok(ip) = host.parse::<std::net::IpAddr>() {
                    let peer = SocketAddr::new(ip, p.port);
                    // Open our own NAT towards the peer before the tool starts (docs/nat-traversal.md).
                    let _ = nat::prime(
                        nat::any_local(peer.ip(), port),
                        peer,
                        nat::PRIME_TTL,
                        nat::PRIME_COUNT,
                        nat::PRIME_GAP,
                    )
                    .await;
                }
                let host = crate::protocol::uri::url_host(&host);
                say!(
                    "Peer {host}:{} passphrase {} pbkeylen {} latency {} ms",
                    p.port,
                    p.passphrase,
                    p.pbkeylen,
                    p.latency
                );
                say!(
                    "srt-live-transmit: 'srt://{host}:{}?mode=rendezvous&adapter=0.0.0.0&port={port}&latency={}&passphrase={}&pbkeylen={}'",
                    p.port,
                    p.latency,
                    p.passphrase,
                    p.pbkeylen
                );
            }
            ServerMessage::Error(e) => return Err(format!("{} ({})", e.message, e.code)),
            ServerMessage::Closed(c) => return Err(format!("session closed: {}", c.reason)),
            ServerMessage::Tally(t) => say!("Tally {}: {}", t.stream, t.state.as_str()),
            _ => {}
        }
    }
}
