//! The typed REST client of a Punch server: what `punch session …`, the tests and the
//! benchmarks use to create, read, steer and close sessions. Errors are [`ClientError`]s with
//! the server's own error code.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use reqwest::Method;

use super::error::ClientError;
use super::tls::Trust;
use crate::protocol::{
    ConnectResponse, CreatedSession, LatencyRequest, SessionView, TallyRequest, TallyState,
};

/// How long one request may take unless the caller says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// A response as it came: status and JSON body (`Null` when the body is not JSON).
#[derive(Debug, Clone, PartialEq)]
pub struct RawResponse {
    pub status: u16,
    pub body: Value,
}

/// A client of one server (its base URL, e.g. `http://127.0.0.1:8787`).
#[derive(Debug, Clone)]
pub struct Rest {
    http: reqwest::Client,
    /// Without a trailing slash.
    base: String,
}

impl Rest {
    pub fn new(base: &str) -> Result<Rest, ClientError> {
        Self::with_timeout(base, DEFAULT_TIMEOUT)
    }

    pub fn with_timeout(base: &str, timeout: Duration) -> Result<Rest, ClientError> {
        Self::with(base, timeout, &Trust::default())
    }

    /// A client of `base` whose requests may take `timeout`, trusting `trust`'s roots for
    /// `https://`.
    pub fn with(base: &str, timeout: Duration, trust: &Trust) -> Result<Rest, ClientError> {
        let base = base.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ClientError::BadUrl(format!(
                "{base:?} is not a server URL (expected http://HOST[:PORT] or https://…)"
            )));
        }
        let mut builder = reqwest::Client::builder().timeout(timeout);
        if base.starts_with("https://") {
            let tls = trust.client_config().map_err(ClientError::Trust)?;
            builder = builder.use_preconfigured_tls((*tls).clone());
        }
        let http = builder
            .build()
            .map_err(|e| ClientError::BadUrl(format!("cannot set up an HTTP client: {e}")))?;
        Ok(Rest { http, base })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends a request and returns what came back, whatever the status; fails only when the
    /// server cannot be reached. `body` is sent as is with `content_type`.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<RawResponse, ClientError> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method, &url);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some((content_type, bytes)) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(bytes);
        }
        let resp = req.send().await.map_err(|e| self.unreachable(&e))?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| self.unreachable(&e))?;
        Ok(RawResponse {
            status,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        })
    }

    fn unreachable(&self, e: &reqwest::Error) -> ClientError {
        let text = super::error::with_causes(e);
        let reason = if (e.is_connect() || e.is_timeout()) && !text.contains("certificate") {
            format!("{text}; is `punch serve` running there?")
        } else {
            text
        };
        ClientError::Unreachable {
            url: self.base.clone(),
            reason,
        }
    }

    /// A JSON request whose success answer is a `T`; an error status becomes
    /// [`ClientError::Refused`] with the server's code.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&impl Serialize>,
    ) -> Result<T, ClientError> {
        let body = match body {
            Some(b) => Some((
                "application/json",
                serde_json::to_vec(b).map_err(|e| ClientError::Protocol(e.to_string()))?,
            )),
            None => None,
        };
        let resp = self.raw(method, path, token, body).await?;
        if !(200..300).contains(&resp.status) {
            let body = serde_json::to_vec(&resp.body).unwrap_or_default();
            return Err(ClientError::refused(resp.status, &body, &self.base));
        }
        serde_json::from_value(resp.body).map_err(|e| {
            ClientError::Protocol(format!("unexpected answer from {}: {e}", self.base))
        })
    }

    /// `POST /api/session` with a creation request (see `docs/protocol.md` for its fields),
    /// with the server's create key when it has one.
    pub async fn create(
        &self,
        request: &Value,
        create_key: Option<&str>,
    ) -> Result<CreatedSession, ClientError> {
        self.call(Method::POST, "/api/session", create_key, Some(request))
            .await
    }

    /// `GET /api/session/:id`.
    pub async fn session(&self, session: &str, token: &str) -> Result<SessionView, ClientError> {
        self.call(
            Method::GET,
            &format!("/api/session/{session}"),
            Some(token),
            None::<&()>,
        )
        .await
    }

    /// A request on `/api/session/:id{path}` whose answer is only a confirmation.
    async fn command(
        &self,
        method: Method,
        session: &str,
        path: &str,
        token: &str,
        body: Option<&impl Serialize>,
    ) -> Result<(), ClientError> {
        let path = format!("/api/session/{session}{path}");
        self.call::<Value>(method, &path, Some(token), body)
            .await
            .map(drop)
    }

    /// `DELETE /api/session/:id`.
    pub async fn close(&self, session: &str, token: &str) -> Result<(), ClientError> {
        self.command(Method::DELETE, session, "", token, None::<&()>)
            .await
    }

    /// `POST /api/session/:id/tally`.
    pub async fn tally(
        &self,
        session: &str,
        token: &str,
        stream: &str,
        state: TallyState,
    ) -> Result<(), ClientError> {
        let body = TallyRequest {
            stream: stream.to_string(),
            state,
        };
        self.command(Method::POST, session, "/tally", token, Some(&body))
            .await
    }

    /// `POST /api/session/:id/latency`.
    pub async fn latency(
        &self,
        session: &str,
        token: &str,
        stream: &str,
        latency: u32,
    ) -> Result<(), ClientError> {
        let body = LatencyRequest {
            stream: stream.to_string(),
            latency,
        };
        self.command(Method::POST, session, "/latency", token, Some(&body))
            .await
    }

    /// `GET /api/session/:id/connect[?stream=…]`.
    pub async fn connect_strings(
        &self,
        session: &str,
        token: &str,
        stream: Option<&str>,
    ) -> Result<ConnectResponse, ClientError> {
        let query = stream.map(|s| format!("?stream={s}")).unwrap_or_default();
        self.call(
            Method::GET,
            &format!("/api/session/{session}/connect{query}"),
            Some(token),
            None::<&()>,
        )
        .await
    }

    /// `GET /healthz`: the server's counters and the ports of its STUN service.
    pub async fn healthz(&self) -> Result<Value, ClientError> {
        self.call(Method::GET, "/healthz", None, None::<&()>).await
    }
}
