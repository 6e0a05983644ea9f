//! The admin tokens this machine created sessions with, kept (mode 0600) in
//! `$XDG_CONFIG_HOME/punch/sessions.json` so `punch session show|close|…` need no `--token`.

use std::collections::BTreeMap;
use std::path::PathBuf;

fn tokens_file() -> Option<PathBuf> {
    let dir = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(dir.join("punch").join("sessions.json"))
}

pub fn token_key(server: &str, session: &str) -> String {
    format!("{}|{session}", server.trim_end_matches('/'))
}

pub fn load_tokens() -> BTreeMap<String, String> {
    tokens_file()
        .and_then(|f| std::fs::read(f).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

pub fn store_tokens(tokens: &BTreeMap<String, String>) -> Result<(), String> {
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
pub fn save_token(server: &str, session: &str, token: &str) -> Result<(), String> {
    let mut tokens = load_tokens();
    tokens.insert(token_key(server, session), token.to_string());
    store_tokens(&tokens)
}

pub fn admin_token(server: &str, session: &str, given: Option<String>) -> Result<String, String> {
    given.or_else(|| load_tokens().remove(&token_key(server, session))).ok_or_else(|| {
        format!("no token for session {session} on {server}: pass --token (or PUNCH_TOKEN); only sessions created from this machine are remembered")
    })
}
