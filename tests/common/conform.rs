//! Conformance: every HTTP response body and every WebSocket message the tests see from the
//! server is checked against the committed spec (`docs/spec/`, which `tests/spec.rs` keeps equal
//! to what the code generates). A body or message the spec does not allow fails the test that
//! received it, naming the route or message and what is wrong.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use serde_json::{Value, json};

fn spec_file(name: &str) -> Value {
    // (the workspace's, from the root package or the plugin's tests)
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root
        .ancestors()
        .map(|d| d.join("docs/spec"))
        .find(|d| d.is_dir())
        .unwrap_or_else(|| root.join("docs/spec"));
    let path = dir.join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run `punch spec docs/spec`)", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

static OPENAPI: LazyLock<Value> = LazyLock::new(|| spec_file("openapi.json"));
static MESSAGES: LazyLock<Value> = LazyLock::new(|| spec_file("messages.schema.json"));

/// `schema`, with `refs` (the document its `$ref`s point into) beside it.
fn validator(schema: &Value, refs: (&str, &Value)) -> jsonschema::Validator {
    let mut doc = json!({ "$schema": "https://json-schema.org/draft/2020-12/schema" });
    doc[refs.0] = refs.1.clone();
    for (k, v) in schema.as_object().expect("a schema object") {
        doc[k] = v.clone();
    }
    jsonschema::draft202012::new(&doc).unwrap_or_else(|e| panic!("invalid schema: {e}"))
}

fn check(validator: &jsonschema::Validator, value: &Value, what: &str) {
    let errors: Vec<String> = validator
        .iter_errors(value)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what} does not conform to the spec (docs/spec/):\n  {}\nbody: {value}",
        errors.join("\n  ")
    );
}

/// The server's messages' validator.
static SERVER_MESSAGE: LazyLock<jsonschema::Validator> = LazyLock::new(|| {
    validator(
        &json!({ "$ref": "#/$defs/ServerMessage" }),
        ("$defs", &MESSAGES["$defs"]),
    )
});

/// A WebSocket message from the server, as it came.
pub fn server_message(text: &str) {
    let value: Value = serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("a server message is not JSON ({e}): {text}"));
    let kind = value["type"].as_str().unwrap_or("?").to_string();
    check(
        &SERVER_MESSAGE,
        &value,
        &format!("the server message {kind:?}"),
    );
}

/// The route template of `path` (`/api/session/x/tally` → `/api/session/{id}/tally`).
fn template(method: &str, path: &str) -> Option<String> {
    let path = path.split('?').next().unwrap_or(path);
    let segments: Vec<&str> = path.split('/').collect();
    OPENAPI["paths"]
        .as_object()?
        .iter()
        .filter(|(_, ops)| ops.get(method).is_some())
        .map(|(t, _)| t)
        .find(|t| {
            let ts: Vec<&str> = t.split('/').collect();
            ts.len() == segments.len()
                && ts
                    .iter()
                    .zip(&segments)
                    .all(|(t, s)| t.starts_with('{') || t == s)
        })
        .cloned()
}

static HTTP: LazyLock<Mutex<HashMap<String, &'static jsonschema::Validator>>> =
    LazyLock::new(Default::default);

/// An HTTP answer: `method` on `path` answered `status` with `body` (`None`: not JSON, a page
/// or an image). A JSON body must be what the spec says for that route and status, and a
/// route whose answer the spec says is JSON must have sent JSON.
pub fn http_response(method: &str, path: &str, status: u16, body: Option<&Value>) {
    let method = method.to_ascii_lowercase();
    let Some(tpl) = template(&method, path) else {
        // an endpoint the spec does not have answers the spec's 404 body
        if status == 404 || status == 405 {
            let body = body.unwrap_or_else(|| panic!("{method} {path} {status}: not JSON"));
            return error_body(body, &format!("{method} {path}"));
        }
        panic!("{method} {path} is not in the spec (docs/spec/openapi.json)");
    };
    let content = &OPENAPI["paths"][&tpl][&method]["responses"][status.to_string()]["content"];
    let json_expected = !content["application/json"].is_null();
    let Some(body) = body else {
        assert!(
            !json_expected,
            "{method} {tpl} answered {status} with a body that is not JSON; the spec says JSON"
        );
        return;
    };
    let key = format!("{method} {tpl} {status}");
    let found = HTTP.lock().unwrap().get(&key).copied();
    let validator = match found {
        Some(v) => v,
        None => {
            let response = &OPENAPI["paths"][&tpl][&method]["responses"][status.to_string()];
            assert!(
                !response.is_null(),
                "{method} {tpl} answered {status}, a status the spec does not list for it; body: {body}"
            );
            let schema = &response["content"]["application/json"]["schema"];
            assert!(
                !schema.is_null(),
                "{method} {tpl} {status} has no JSON body in the spec; got {body}"
            );
            let v: &'static jsonschema::Validator = Box::leak(Box::new(validator(
                schema,
                ("components", &OPENAPI["components"]),
            )));
            HTTP.lock().unwrap().insert(key, v);
            v
        }
    };
    check(validator, body, &format!("{method} {tpl} {status}"));
}

/// An error body (`{"error": {"code", "message"}}`).
fn error_body(body: &Value, what: &str) {
    static ERROR: LazyLock<jsonschema::Validator> = LazyLock::new(|| {
        validator(
            &json!({ "$ref": "#/components/schemas/ErrorResponse" }),
            ("components", &OPENAPI["components"]),
        )
    });
    check(&ERROR, body, what);
}
