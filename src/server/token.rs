//! Session tokens: HMAC-SHA256 over the session, its incarnation and the scope.
//!
//! A token is `pa.<session>.<nonce>.<mac>` (admin) or `ps.<session>.<stream>.<role>.<nonce>.<mac>`
//! (one side of one stream). Verifying needs only the server secret; the session's `nonce`
//! (random per creation) binds the token to one incarnation of a name, so a token dies with its
//! session even if the name is later reused.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::protocol::Role;

type HmacSha256 = Hmac<Sha256>;

const DOMAIN: &[u8] = b"punch-token-v1\0";

/// What a valid token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Everything on the session.
    Admin,
    /// Registering as `role` on `stream`, and reading the session.
    Stream { stream: String, role: Role },
    /// Registering to wait in the session's waiting room, nothing else.
    Join,
}

/// A token whose MAC verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub session: String,
    pub nonce: String,
    pub scope: Scope,
}

#[derive(Clone)]
pub struct TokenKey {
    secret: Vec<u8>,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

impl TokenKey {
    pub fn new(secret: Vec<u8>) -> Self {
        assert!(secret.len() >= 16, "token secret too short");
        TokenKey { secret }
    }

    fn mac(&self, body: &str) -> HmacSha256 {
        let mut mac =
            HmacSha256::new_from_slice(&self.secret).expect("HMAC accepts any key length");
        mac.update(DOMAIN);
        mac.update(body.as_bytes());
        mac
    }

    pub fn issue(&self, session: &str, nonce: &str, scope: &Scope) -> String {
        let body = match scope {
            Scope::Admin => format!("pa.{session}.{nonce}"),
            Scope::Stream { stream, role } => format!("ps.{session}.{stream}.{role}.{nonce}"),
            Scope::Join => format!("pj.{session}.{nonce}"),
        };
        let tag = URL_SAFE_NO_PAD.encode(self.mac(&body).finalize().into_bytes());
        format!("{body}.{tag}")
    }

    /// Whether `given` is `expected` (the create key), in a time that does not tell where they
    /// differ: both are MACed and the MACs compared in constant time.
    pub fn same_secret(&self, given: &str, expected: &str) -> bool {
        let tag = self.mac(expected).finalize().into_bytes();
        self.mac(given).verify_slice(&tag).is_ok()
    }

    /// Checks the MAC (in constant time) and parses the claims. `None` for anything forged,
    /// truncated or malformed.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        if token.len() > 512 {
            return None;
        }
        let (body, tag) = token.rsplit_once('.')?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        self.mac(body).verify_slice(&tag).ok()?;
        let parts: Vec<&str> = body.split('.').collect();
        match parts.as_slice() {
            ["pa", session, nonce] => Some(Claims {
                session: session.to_string(),
                nonce: nonce.to_string(),
                scope: Scope::Admin,
            }),
            ["pj", session, nonce] => Some(Claims {
                session: session.to_string(),
                nonce: nonce.to_string(),
                scope: Scope::Join,
            }),
            ["ps", session, stream, role, nonce] => Some(Claims {
                session: session.to_string(),
                nonce: nonce.to_string(),
                scope: Scope::Stream {
                    stream: stream.to_string(),
                    role: Role::parse(role)?,
                },
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        let key = TokenKey::new(vec![7; 32]);
        assert!(key.same_secret("create-key", "create-key"));
        assert!(!key.same_secret("create-kez", "create-key"));
        assert!(!key.same_secret("create-key-", "create-key"));
        assert!(!key.same_secret("", "create-key"));
    }

    #[test]
    fn round_trip_and_forgery() {
        let key = TokenKey::new(vec![7; 32]);
        let admin = key.issue("show", "n1", &Scope::Admin);
        assert_eq!(key.verify(&admin).unwrap().scope, Scope::Admin);
        let cam = Scope::Stream {
            stream: "cam1".into(),
            role: Role::Sender,
        };
        let t = key.issue("show", "n1", &cam);
        let c = key.verify(&t).unwrap();
        assert_eq!(
            (c.session.as_str(), c.nonce.as_str(), c.scope),
            ("show", "n1", cam)
        );

        // changing any byte of the body or tag breaks it
        assert!(key.verify(&t.replace("cam1", "cam2")).is_none());
        assert!(key.verify(&t.replace("sender", "receiver")).is_none());
        assert!(key.verify(&admin[..admin.len() - 2]).is_none());
        assert!(key.verify("pa.show.n1.AAAA").is_none());
        assert!(key.verify("garbage").is_none());
        // another server's secret
        assert!(TokenKey::new(vec![8; 32]).verify(&admin).is_none());
    }
}
