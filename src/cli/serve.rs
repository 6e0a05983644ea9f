//! `punch serve`: the server's flags, and running it until SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde_json::json;

use super::session::print_created;
use super::tokens::save_token;
use super::{logging, say, shutdown_signal};
use crate::client::rest::Rest;
use crate::server::{DEFAULT_TTL_S, Server, ServerConfig};

/// A whole number flag within `range`, with a message that names the range.
fn within<T>(range: std::ops::RangeInclusive<T>) -> impl Fn(&str) -> Result<T, String> + Clone
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy + Send + Sync + 'static,
{
    move |s: &str| {
        let v: T = s
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not a whole number"))?;
        if range.contains(&v) {
            Ok(v)
        } else {
            Err(format!(
                "{v} is out of range: {}-{}",
                range.start(),
                range.end()
            ))
        }
    }
}

/// Seconds (fractions allowed) within `min..=max`.
fn seconds(min: f64, max: f64) -> impl Fn(&str) -> Result<f64, String> + Clone {
    move |s: &str| {
        let v: f64 = s
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not a number of seconds"))?;
        if v.is_finite() && (min..=max).contains(&v) {
            Ok(v)
        } else {
            Err(format!("{v} is out of range: {min}-{max} seconds"))
        }
    }
}

/// `punch serve`'s flags. Every number has a range (`--help` shows it; `docs/security.md`
/// explains the limits).
#[derive(Args)]
pub struct ServeArgs {
    /// Address and port to listen on (HTTP and WebSocket).
    #[arg(long, default_value = "0.0.0.0:8787", env = "PUNCH_LISTEN")]
    listen: SocketAddr,
    /// Where sessions and the token secret are kept: an SQLite database file (`:memory:` keeps
    /// nothing; one server per file), or a PostgreSQL database,
    /// `postgres://USER[:PASSWORD]@HOST:PORT/DBNAME`, which several servers (nodes) may share
    /// behind one load balancer.
    #[arg(
        long,
        default_value = "punch.db",
        env = "PUNCH_DB",
        hide_env_values = true
    )]
    db: String,
    /// Base URL peers and browsers use to reach this server (e.g. https://punch.example.org),
    /// used in dashboard and QR links. Default: the Host the client used.
    #[arg(long, env = "PUNCH_PUBLIC_URL")]
    public_url: Option<String>,
    /// Serve HTTPS and WSS on --listen with this certificate chain (PEM, the server's first);
    /// links and QR codes become https:// and punchs://. Reloaded on SIGHUP.
    #[arg(
        long,
        value_name = "FILE",
        requires = "tls_key",
        env = "PUNCH_TLS_CERT"
    )]
    tls_cert: Option<std::path::PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(
        long,
        value_name = "FILE",
        requires = "tls_cert",
        env = "PUNCH_TLS_KEY"
    )]
    tls_key: Option<std::path::PathBuf>,
    /// Serve /metrics (Prometheus) on this address only, plain HTTP, instead of on --listen:
    /// e.g. 127.0.0.1:9187 or a private monitoring address.
    #[arg(long, value_name = "ADDR", env = "PUNCH_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// How the log on stderr is written: text, or json (one object per line, for log shippers).
    #[arg(long, value_enum, default_value = "text", env = "PUNCH_LOG_FORMAT")]
    log_format: logging::LogFormat,
    /// Trust X-Forwarded-For / Forwarded / X-Forwarded-Proto (only behind your own reverse proxy).
    #[arg(long)]
    trust_proxy: bool,
    /// Creating a session needs this key (`Authorization: Bearer KEY`). Without it anyone who
    /// reaches the server can create sessions: fine on a LAN, not on the internet.
    #[arg(long, env = "PUNCH_CREATE_KEY", hide_env_values = true)]
    create_key: Option<String>,
    /// Default inactivity TTL of new sessions, in seconds (1 to --max-ttl).
    #[arg(long, default_value_t = DEFAULT_TTL_S, value_parser = within(1u64..=31_536_000), allow_negative_numbers = true)]
    ttl: u64,
    /// Longest inactivity TTL a session may ask for, in seconds (60-31536000).
    #[arg(long, default_value_t = 86_400, value_parser = within(60u64..=31_536_000), allow_negative_numbers = true)]
    max_ttl: u64,
    /// Most receivers one stream may have (1-32; a session has at most 32 in all): each is its
    /// own SRT link from the sender, so the sender's upload bandwidth is the real bound.
    #[arg(long, default_value_t = 16, value_parser = within(1usize..=32), allow_negative_numbers = true)]
    max_receivers: usize,
    /// Most sessions held at once (1-1000000).
    #[arg(long, default_value_t = 20_000, value_parser = within(1usize..=1_000_000), allow_negative_numbers = true)]
    max_sessions: usize,
    /// Live sessions one client address may have created (IPv6: per /64) (1-1000000).
    #[arg(long, default_value_t = 100, value_parser = within(1usize..=1_000_000), allow_negative_numbers = true)]
    sessions_per_ip: usize,
    /// Sessions one client address may create per minute (0 = unlimited, up to 100000).
    #[arg(long, default_value_t = 60, value_parser = within(0u32..=100_000), allow_negative_numbers = true)]
    creates_per_minute: u32,
    /// TCP connections open at once from one client address (IPv6: per /64) (1-100000).
    #[arg(long, default_value_t = 256, value_parser = within(1usize..=100_000), allow_negative_numbers = true)]
    connections_per_ip: usize,
    /// Seconds a client may take to send a request's head (1-300).
    #[arg(long, default_value_t = 10.0, value_parser = seconds(1.0, 300.0), allow_negative_numbers = true)]
    header_timeout: f64,
    /// Seconds a client may take to send a request's body (1-300).
    #[arg(long, default_value_t = 10.0, value_parser = seconds(1.0, 300.0), allow_negative_numbers = true)]
    body_timeout: f64,
    /// Seconds an idle kept-alive HTTP connection stays open (1-3600).
    #[arg(long, default_value_t = 60.0, value_parser = seconds(1.0, 3600.0), allow_negative_numbers = true)]
    keepalive_timeout: f64,
    /// File holding the token secret (any bytes, at least 16). Default: generated and kept in the database.
    /// PUNCH_SECRET may hold it instead.
    #[arg(long)]
    secret_file: Option<PathBuf>,
    /// Create a demo session at start-up and print how to use it.
    #[arg(long)]
    demo: bool,
    /// UDP port of the STUN service peers discover their public address with (the alternate
    /// port for NAT classification is the next one; 0 = any free ports). Open both in firewalls.
    #[arg(long, default_value_t = 3478, env = "PUNCH_STUN_PORT", value_parser = within(0u16..=65534), allow_negative_numbers = true)]
    stun_port: u16,
    /// The host or IP peers send STUN to and reach relays at, told to every peer; default: the
    /// host they reached the server by. Behind a load balancer, each node's own public address.
    #[arg(long, value_name = "HOST", env = "PUNCH_STUN_HOST")]
    stun_host: Option<String>,
    /// With a PostgreSQL database: this node's name among the servers sharing it (default: a
    /// new random one at each start).
    #[arg(long, value_name = "NAME", env = "PUNCH_NODE_ID")]
    node_id: Option<String>,
    /// With a PostgreSQL database: the http:// URL the other nodes reach this one at (they
    /// forward its sessions' requests there); default: http:// and the --listen address.
    #[arg(long, value_name = "URL", env = "PUNCH_INTERNAL_URL")]
    internal_url: Option<String>,
    /// Run no STUN service (peers then only work behind port-preserving NATs).
    #[arg(long)]
    no_stun: bool,
    /// STUN requests answered per second from one source address (1-10000); more are dropped.
    #[arg(long, default_value_t = 10, value_parser = within(1u32..=10_000), allow_negative_numbers = true)]
    stun_rate: u32,
    /// Seconds a stream may try direct rendezvous before it is relayed through this server
    /// (0.5-600).
    #[arg(long, default_value_t = 8.0, value_parser = seconds(0.5, 600.0), allow_negative_numbers = true)]
    direct_timeout: f64,
    /// Never relay media (streams that cannot be punched then do not connect).
    #[arg(long)]
    no_relay: bool,
    /// Most streams relayed at once (0-10000; 0 = no relay).
    #[arg(long, default_value_t = 100, value_parser = within(0usize..=10_000), allow_negative_numbers = true)]
    relay_max: usize,
    /// Most streams of one session relayed at once (1-10000).
    #[arg(long, default_value_t = 16, value_parser = within(1usize..=10_000), allow_negative_numbers = true)]
    relay_per_session: usize,
    /// Most relayed streams with a side at one client address (IPv6: per /64) (1-10000).
    #[arg(long, default_value_t = 16, value_parser = within(1usize..=10_000), allow_negative_numbers = true)]
    relay_per_ip: usize,
    /// Seconds a relay may forward nothing before it is freed (5-3600).
    #[arg(long, default_value_t = 60.0, value_parser = seconds(5.0, 3600.0), allow_negative_numbers = true)]
    relay_idle: f64,
    /// Bandwidth cap per relayed stream, Mbit/s (1-100000).
    #[arg(long, default_value_t = 50, value_parser = within(1u64..=100_000), allow_negative_numbers = true)]
    relay_max_mbps: u64,
    /// Bandwidth cap of all relayed streams together, Mbit/s (1-1000000).
    #[arg(long, default_value_t = 1000, value_parser = within(1u64..=1_000_000), allow_negative_numbers = true)]
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

pub async fn serve(args: ServeArgs) -> Result<(), String> {
    logging::init(args.log_format);
    crate::client::net::raise_fd_limit();
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
    let db = if args.db == ":memory:" || crate::server::store::is_postgres(&args.db) {
        args.db.clone()
    } else {
        std::path::absolute(&args.db)
            .map(|p| p.display().to_string())
            .unwrap_or(args.db.clone())
    };
    if args.ttl > args.max_ttl {
        return Err(format!(
            "--ttl {} is above --max-ttl {}: the default TTL must be one a session may have",
            args.ttl, args.max_ttl
        ));
    }
    let create_key = args.create_key.clone().filter(|k| !k.is_empty());
    let mut config = ServerConfig {
        listen: args.listen,
        db,
        public_url: args.public_url.clone(),
        trust_proxy: args.trust_proxy,
        default_ttl_s: args.ttl,
        secret,
        create_key: create_key.clone(),
        metrics_listen: args.metrics_listen,
        tls: match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => Some(crate::server::tls::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        },
        ..ServerConfig::default()
    };
    config.stun_port = (!args.no_stun).then_some(args.stun_port);
    config.stun_host = args.stun_host.clone();
    config.node = crate::server::NodeConfig {
        id: args.node_id.clone(),
        internal_url: args.internal_url.clone(),
    };
    config.path.direct_timeout_ms = (args.direct_timeout * 1000.0) as i64;
    config.path.relay = !args.no_relay;
    config.relay.max_relays = args.relay_max;
    config.relay.per_session = args.relay_per_session;
    config.relay.per_ip = args.relay_per_ip;
    config.relay.idle = Duration::from_secs_f64(args.relay_idle);
    config.relay.max_bitrate = args.relay_max_mbps * 1_000_000;
    config.relay.max_total_bitrate = args.relay_total_mbps * 1_000_000;
    config.relay.ports = args.relay_ports;
    let limits = &mut config.limits;
    limits.max_sessions = args.max_sessions;
    limits.max_receivers = args.max_receivers;
    limits.sessions_per_ip = args.sessions_per_ip;
    limits.creates_per_minute = args.creates_per_minute;
    limits.max_ttl_s = args.max_ttl;
    limits.connections_per_ip = args.connections_per_ip;
    limits.header_timeout = Duration::from_secs_f64(args.header_timeout);
    limits.body_timeout = Duration::from_secs_f64(args.body_timeout);
    limits.keepalive_timeout = Duration::from_secs_f64(args.keepalive_timeout);
    limits.stun_per_second = f64::from(args.stun_rate);
    limits.stun_burst = f64::from(args.stun_rate) * 2.0;
    let stop = shutdown_signal()?;
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|e| format!("cannot handle SIGHUP: {e}"))?;
    let server = Server::start(config).await?;
    let scheme = if server.is_tls() { "https" } else { "http" };
    if create_key.is_none() && !args.listen.ip().is_loopback() {
        tracing::warn!(
            "listening on {} without --create-key: anyone who reaches this server can create sessions (fine on a closed LAN; set --create-key or PUNCH_CREATE_KEY on the internet)",
            args.listen
        );
    }
    let addr = server.local_addr();
    let local = if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    };
    say!("Punch server listening on {scheme}://{addr}");
    match &args.public_url {
        Some(u) => say!("Peers and browsers reach it at {u}"),
        None => say!(
            "Peers reach it at {scheme}://<this machine's address>:{} (set --public-url if it sits behind a proxy or DNS name)",
            addr.port()
        ),
    }
    if server.is_tls() {
        say!(
            "TLS: kill -HUP {} reloads the certificate",
            std::process::id()
        );
    }
    match server.metrics_addr() {
        Some(m) => say!("Metrics (Prometheus): http://{m}/metrics"),
        None => say!("Metrics (Prometheus): {scheme}://{addr}/metrics"),
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
    if let Some(node) = server.node() {
        say!("Node {node} of the servers sharing this database");
    }
    say!(
        "Data: {}",
        if args.db == ":memory:" {
            "in memory (lost on exit)".to_string()
        } else {
            crate::server::store::redacted(&args.db)
        }
    );
    if args.demo {
        let base = args
            .public_url
            .clone()
            .unwrap_or(format!("{scheme}://{local}"));
        let created = match Rest::new(&base) {
            Ok(rest) => {
                rest.create(&json!({ "name": null }), create_key.as_deref())
                    .await
            }
            Err(e) => Err(e),
        };
        match created {
            Ok(created) => {
                say!("\nDemo session:");
                print_created(&created);
                let _ = save_token(&base, &created.session, &created.token);
            }
            Err(e) => eprintln!("could not create the demo session: {e}"),
        }
    }
    say!("Press Ctrl-C to stop.");
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = hangup.recv() => match server.reload_tls() {
                Ok(true) => {
                    tracing::info!("TLS certificate reloaded");
                    say!("TLS certificate reloaded");
                }
                Ok(false) => tracing::info!("SIGHUP: nothing to reload (no --tls-cert)"),
                Err(e) => {
                    tracing::error!("TLS certificate not reloaded, the old one stays: {e}");
                    eprintln!("TLS certificate not reloaded, the old one stays: {e}");
                }
            },
        }
    }
    tracing::info!("shutting down");
    server.shutdown().await;
    Ok(())
}
