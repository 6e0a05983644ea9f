//! The operator dashboard: a server-rendered page whose assets are compiled into the binary (no
//! build step, no CDN: it works on an offline production network), the page that creates a
//! session, and the error page. Every UI response carries the security headers of
//! [`security_headers`].

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::protocol::{Role, SessionView};

const DASHBOARD_HTML: &str = include_str!("ui/dashboard.html");
const ERROR_HTML: &str = include_str!("ui/error.html");
const DASHBOARD_JS: &str = include_str!("ui/dashboard.js");
const DASHBOARD_CSS: &str = include_str!("ui/dashboard.css");
const CREATE_HTML: &str = include_str!("ui/create.html");
const CREATE_JS: &str = include_str!("ui/create.js");
const OPERATOR_HTML: &str = include_str!("ui/operator.html");
const OPERATOR_JS: &str = include_str!("ui/operator.js");
const OPERATOR_CSS: &str = include_str!("ui/operator.css");

/// Changes whenever an asset does, so a browser never runs a cached script of another build.
fn asset_version() -> &'static str {
    static VERSION: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (
            DASHBOARD_JS,
            DASHBOARD_CSS,
            CREATE_JS,
            OPERATOR_JS,
            OPERATOR_CSS,
        )
            .hash(&mut h);
        format!("{:016x}", h.finish())
    });
    &VERSION
}

/// Scripts and styles only from this server, no inline code, no framing; tokens are in URLs,
/// so no referrer either.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Adds the UI security headers to a response.
pub fn security_headers(resp: &mut Response) {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

/// Text for HTML element content and attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// JSON that can sit inside `<script type="application/json">` without ending it.
fn json_for_script(json: &str) -> String {
    json.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

fn fill(template: &str, fields: &[(&str, &str)]) -> String {
    let mut page = template.replace("{{asset_version}}", asset_version());
    for (name, value) in fields {
        page = page.replace(&format!("{{{{{name}}}}}"), value);
    }
    page
}

fn html(status: StatusCode, body: String) -> Response {
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    security_headers(&mut resp);
    resp
}

/// The dashboard of a session, with its current view for the first paint.
pub fn dashboard(view: &SessionView) -> Response {
    let json = serde_json::to_string(view).unwrap_or_else(|_| "null".into());
    let body = fill(
        DASHBOARD_HTML,
        &[
            ("session", &escape_html(&view.session)),
            ("state", view.state.as_str()),
            ("initial", &json_for_script(&json)),
        ],
    );
    html(StatusCode::OK, body)
}

/// The camera-operator page of one side: `view` as its stream token reads it, and the side's
/// `punch://` URI (for a Punch element).
pub fn operator(view: &SessionView, stream: &str, role: Role, punch: &str) -> Response {
    let initial = serde_json::json!({
        "session": view.session,
        "stream": stream,
        "role": role,
        "punch": punch,
        "view": view,
    });
    let body = fill(
        OPERATOR_HTML,
        &[
            ("stream", &escape_html(stream)),
            ("role", role.as_str()),
            ("initial", &json_for_script(&initial.to_string())),
        ],
    );
    html(StatusCode::OK, body)
}

/// `GET /j/:id?t=JOIN`: the venue page, the camera-operator page of the waiting room: the
/// cameras waiting from the reader's place ("waiting for the producer", with their labels) and
/// the `punch://` URI to point cameras at.
pub fn venue(view: &SessionView, punch: &str) -> Response {
    let initial = serde_json::json!({
        "session": view.session,
        "stream": null,
        "role": null,
        "punch": punch,
        "view": view,
    });
    let body = fill(
        OPERATOR_HTML,
        &[
            ("stream", &escape_html(&view.session)),
            ("role", "waiting room"),
            ("initial", &json_for_script(&initial.to_string())),
        ],
    );
    html(StatusCode::OK, body)
}

/// `GET /`: the form that creates a session; its create-key field shows when the server needs
/// one.
pub fn create_page(key_required: bool) -> Response {
    let hidden = if key_required { "" } else { "hidden" };
    html(StatusCode::OK, fill(CREATE_HTML, &[("key_hidden", hidden)]))
}

/// A page a person can act on, for a refused or failed dashboard request.
pub fn error_page(status: StatusCode, message: &str) -> Response {
    let title = match status.as_u16() {
        401 => "This link's token is missing or not valid",
        403 => "This link does not open this page",
        404 => "No such session",
        410 => "This session has ended",
        429 => "Too many requests",
        _ => "The dashboard could not be shown",
    };
    let body = fill(
        ERROR_HTML,
        &[
            ("title", &escape_html(title)),
            ("message", &escape_html(message)),
        ],
    );
    html(status, body)
}

/// `GET /favicon.ico`: none, said without an error (browsers ask on their own).
pub async fn favicon() -> Response {
    let mut resp = StatusCode::NO_CONTENT.into_response();
    security_headers(&mut resp);
    resp
}

/// `GET /ui/:file`: the embedded assets.
pub async fn asset(Path(file): Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "dashboard.js" => (DASHBOARD_JS, "text/javascript; charset=utf-8"),
        "dashboard.css" => (DASHBOARD_CSS, "text/css; charset=utf-8"),
        "create.js" => (CREATE_JS, "text/javascript; charset=utf-8"),
        "operator.js" => (OPERATOR_JS, "text/javascript; charset=utf-8"),
        "operator.css" => (OPERATOR_CSS, "text/css; charset=utf-8"),
        _ => {
            let mut resp = (StatusCode::NOT_FOUND, "no such asset").into_response();
            security_headers(&mut resp);
            return resp;
        }
    };
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    // Versioned URLs (`?v=`), so they may be cached for a while.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    security_headers(&mut resp);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(
            escape_html("<a href=\"x\">'&'"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;"
        );
        assert_eq!(
            json_for_script(r#"{"a":"</script>"}"#),
            r#"{"a":"\u003c/script\u003e"}"#
        );
    }
}
