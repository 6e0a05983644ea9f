//! The `punch` command line. One file per subcommand: `serve.rs` (`punch serve`), `session.rs`
//! (`punch session …`), `doctor.rs`, `peer.rs`; `tokens.rs` keeps the admin tokens this machine
//! created sessions with.

mod doctor;
mod logging;
mod peer;
mod serve;
mod session;
mod tokens;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::client::ClientError;
use crate::client::rest::{DEFAULT_TIMEOUT, Rest};
use crate::client::tls::Trust;

/// `println!` that ignores a closed stdout (a server must not die because its log reader went away).
macro_rules! say_impl {
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
    Serve(Box<serve::ServeArgs>),
    /// Create, inspect, close sessions and set tally on a running server.
    #[command(subcommand)]
    Session(session::SessionCommand),
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
        #[command(flatten)]
        trust: TrustArg,
    },
    /// Write the protocol's generated spec: the OpenAPI document of the HTTP API and the JSON
    /// Schema of the WebSocket messages (what the server serves at /api/openapi.json and
    /// /api/schema/messages.json), as docs/spec/ holds them.
    Spec {
        /// The directory to write openapi.json and messages.schema.json into.
        #[arg(default_value = "docs/spec")]
        dir: std::path::PathBuf,
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
        #[command(flatten)]
        trust: TrustArg,
    },
}

pub(crate) use say_impl as say;

#[derive(Args)]
pub struct ServerArg {
    /// Punch server base URL.
    #[arg(long, env = "PUNCH_SERVER", default_value = DEFAULT_SERVER)]
    pub server: String,
    #[command(flatten)]
    pub trust: TrustArg,
}

impl ServerArg {
    /// The REST client of `--server`.
    pub fn rest(&self) -> Result<Rest, ClientError> {
        Rest::with(&self.server, DEFAULT_TIMEOUT, &self.trust.trust())
    }
}

#[derive(Args)]
pub struct TrustArg {
    /// PEM file of CA certificates trusted for https:// and punchs:// besides the system's (a server with a private CA).
    #[arg(long, env = "PUNCH_CA_FILE")]
    pub ca_file: Option<std::path::PathBuf>,
}

impl TrustArg {
    pub fn trust(&self) -> Trust {
        Trust {
            ca_file: self.ca_file.clone(),
        }
    }
}

#[derive(Args)]
pub struct TokenArg {
    /// The session's admin token (default: the one saved when this machine created the session).
    #[arg(long, env = "PUNCH_TOKEN")]
    pub token: Option<String>,
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
            Command::Serve(args) => serve::serve(*args).await,
            Command::Session(cmd) => session::session(cmd).await,
            Command::Doctor {
                server,
                port,
                trust,
            } => doctor::doctor(&server, port, &trust.trust()).await,
            Command::Peer {
                uri,
                port,
                role,
                label,
                trust,
            } => peer::peer(&uri, port, role, label, trust.trust()).await,
            Command::Spec { dir } => write_spec(&dir),
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

/// Registers SIGINT/SIGTERM handlers now; the returned future resolves on either.
pub(crate) fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>, String> {
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

/// `punch spec DIR`.
fn write_spec(dir: &std::path::Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for (name, text) in crate::server::spec::files() {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
