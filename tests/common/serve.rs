//! `punch serve` as a child process (the binary the tests were built with), its log kept.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a server may take to start, or a log line to appear.
const WAIT: Duration = Duration::from_secs(20);

/// The `punch` binary: Cargo names it to the server's own tests; the plugin's tests find it
/// beside themselves in the target directory (`cargo build --workspace` puts it there).
pub fn punch_bin() -> PathBuf {
    if let Some(bin) = option_env!("CARGO_BIN_EXE_punch") {
        return bin.into();
    }
    let exe = std::env::current_exe().expect("the test's own path");
    // target/debug/deps/<test> -> target/debug/punch
    let bin = exe
        .parent()
        .and_then(|d| d.parent())
        .map(|d| d.join("punch"))
        .expect("a target directory");
    assert!(
        bin.exists(),
        "{} is missing: build it first (cargo build --workspace)",
        bin.display()
    );
    bin
}

/// A running `punch serve`; killed when dropped.
pub struct Serve {
    pub child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// Everything it wrote to stderr so far (its log).
    log: Arc<Mutex<String>>,
}

impl Serve {
    /// Starts `punch serve ARGS` (on 127.0.0.1:0, STUN on any port, in memory, unless ARGS
    /// say otherwise) and waits until it is serving.
    pub fn start(args: &[&str]) -> Serve {
        let mut full = vec!["serve", "--stun-port", "0"];
        if !args.contains(&"--listen") {
            full.extend(["--listen", "127.0.0.1:0"]);
        }
        if !args.contains(&"--db") {
            full.extend(["--db", ":memory:"]);
        }
        full.extend(args);
        let mut child = Command::new(punch_bin())
            .args(&full)
            .env_remove("PUNCH_CREATE_KEY")
            // (a benchmark asks for less with PUNCH_SERVE_LOG=warn)
            .env(
                "RUST_LOG",
                std::env::var("PUNCH_SERVE_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("punch serve starts");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut base = None;
        loop {
            let line = rx
                .recv_timeout(WAIT)
                .unwrap_or_else(|_| panic!("serve did not start; log:\n{}", log.lock().unwrap()));
            if let Some(addr) = line.strip_prefix("Punch server listening on http://") {
                let port = addr.rsplit(':').next().unwrap();
                base = Some(format!("http://127.0.0.1:{port}"));
            }
            if line.contains("Press Ctrl-C") {
                break;
            }
        }
        std::thread::spawn(move || for _ in rx {});
        Serve {
            child,
            base: base.expect("the listening address is printed"),
            log,
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log has a line containing `text`.
    pub fn wait_log(&self, text: &str) {
        let start = Instant::now();
        while !self.log().contains(text) {
            assert!(
                start.elapsed() < WAIT,
                "no {text:?} in the log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends `signal` (SIGKILL, SIGSTOP, SIGCONT, ...) to the process.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill has no memory preconditions; the pid is our own child's.
        let r = unsafe { libc::kill(self.child.id() as i32, signal) };
        assert_eq!(r, 0, "kill({signal}) of punch serve");
    }

    /// Waits (bounded) for the process to exit by itself; its status.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < WAIT,
                "punch serve did not exit; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `kill -9`, and waits for it to be gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        // a stopped process must be continued to die of SIGKILL promptly
        // SAFETY: as in `signal`.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGCONT) };
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
