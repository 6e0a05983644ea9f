//! Several `punch serve` nodes on one throwaway PostgreSQL database, with HAProxy (Debian's
//! `haproxy`) in front of them on a loopback port; everything stopped when dropped.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::postgres::Postgres;
use super::serve::Serve;

/// The balancer's program, or a failing test with the install hint.
fn haproxy() -> PathBuf {
    ["/usr/sbin/haproxy", "/usr/bin/haproxy"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!(
                "haproxy is not installed: apt-get install haproxy (scripts/install-deps.sh does)"
            )
        })
}

/// HAProxy in front of some nodes.
pub struct Balancer {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    _dir: tempfile::TempDir,
}

impl Balancer {
    /// Round robin over `nodes` (`http://127.0.0.1:PORT` each): a node that refuses the
    /// connection, or drops a request unanswered as it dies, is retried on another (`option
    /// redispatch`, `retry-on`), health-checked on `/healthz`
    /// every 500 ms; the client's address in `X-Forwarded-For`; WebSockets pass as tunnels.
    pub fn start(nodes: &[&str]) -> Balancer {
        let bin = haproxy();
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // two descriptors per proxied connection, within what this process may open
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes the struct it is given.
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
        let maxconn = (limit.rlim_max.min(80_000) as usize).saturating_sub(200) / 2;
        let mut config = format!(
            "global\n  maxconn {maxconn}\n\
             defaults\n  mode http\n  timeout connect 1s\n  timeout client 120s\n  timeout server 120s\n  timeout tunnel 1h\n  option redispatch\n  retries 3\n  retry-on conn-failure empty-response junk-response response-timeout 502 504\n  option forwardfor\n\
             frontend punch\n  bind 127.0.0.1:{port}\n  maxconn {maxconn}\n  default_backend nodes\n\
             backend nodes\n  balance roundrobin\n  option httpchk GET /healthz\n"
        );
        for (i, node) in nodes.iter().enumerate() {
            let at = node.trim_start_matches("http://");
            config.push_str(&format!(
                "  server n{} {at} check inter 500ms fall 2 rise 2\n",
                i + 1
            ));
        }
        let file = dir.path().join("haproxy.cfg");
        std::fs::write(&file, config).unwrap();
        let log = dir.path().join("haproxy.log");
        let mut child = Command::new(bin)
            .arg("-f")
            .arg(&file)
            .arg("-db")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("haproxy starts");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            let exited = child.try_wait().ok().flatten().is_some();
            assert!(
                !exited && started.elapsed() < Duration::from_secs(10),
                "haproxy did not listen on {port}: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Balancer {
            child,
            base: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Nodes `n1`, `n2`, ... on one database behind one balancer.
pub struct Cluster {
    /// Dropped last: the nodes and the balancer go first.
    pub nodes: Vec<Serve>,
    pub lb: Balancer,
    pub db: String,
    pub pg: Postgres,
}

impl Cluster {
    /// `n` nodes (each with `extra` arguments) on a new database, and the balancer.
    pub fn start(n: usize, extra: &[&str]) -> Cluster {
        let pg = Postgres::start();
        let db = pg.database("punch");
        let nodes: Vec<Serve> = (1..=n).map(|i| node(&db, i, extra)).collect();
        let bases: Vec<&str> = nodes.iter().map(|n| n.base.as_str()).collect();
        let lb = Balancer::start(&bases);
        Cluster { nodes, lb, db, pg }
    }

    /// The node named `id` (`n1`, ...).
    pub fn node(&self, id: &str) -> &Serve {
        &self.nodes[index(id)]
    }

    /// `kill -9` of the node named `id`.
    pub fn kill(&mut self, id: &str) {
        self.nodes[index(id)].kill();
    }
}

/// Where node `id` (`n1`, ...) is in [`Cluster::nodes`].
fn index(id: &str) -> usize {
    let n: usize = id
        .strip_prefix('n')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{id:?} is not a node of the cluster (n1, n2, ...)"));
    n - 1
}

/// Node `n{i}` on `db`: behind the balancer (it trusts `X-Forwarded-For`), its STUN service on
/// 127.0.0.1, where peers send STUN.
pub fn node(db: &str, i: usize, extra: &[&str]) -> Serve {
    let id = format!("n{i}");
    let mut args = vec![
        "--db",
        db,
        "--node-id",
        &id,
        "--trust-proxy",
        "--stun-host",
        "127.0.0.1",
    ];
    args.extend(extra);
    Serve::start(&args)
}
