//! `punch serve`: the server's flags, and running it until SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use serde_json::json;

use super::session::print_created;
use super::tokens::save_token;
use super::{init_logging, say, shutdown_signal};
use crate::client::rest::Rest;
use crate::server::{DEFAULT_TTL_S, Server, ServerConfig};

#[derive(Args)]
pub struct ServeArgs {
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

pub async fn serve(args: ServeArgs) -> Result<(), String> {
    init_logging();
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
        let created = match Rest::new(&base) {
            Ok(rest) => rest.create(&json!({ "name": null })).await,
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
    stop.await;
    tracing::info!("shutting down");
    server.shutdown().await;
    Ok(())
}
