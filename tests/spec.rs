//! The generated spec: the committed files are what the code generates, the server serves the
//! same, every route the server has is in it, and every JSON example in `docs/protocol.md`
//! conforms to it.

mod common;

use common::*;
use serde_json::Value;

const REGENERATE: &str = "cargo run -- spec docs/spec";

#[test]
fn the_committed_spec_is_what_the_code_generates() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/spec");
    for (name, generated) in punch::server::spec::files() {
        let committed = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        assert!(
            committed == generated,
            "docs/spec/{name} differs from what the code generates: run `{REGENERATE}` and commit it"
        );
    }
}

#[tokio::test]
async fn the_server_serves_the_same_documents() {
    let srv = start_default().await;
    for (path, doc) in [
        ("/api/openapi.json", punch::server::spec::openapi()),
        ("/api/schema/messages.json", punch::server::spec::messages()),
    ] {
        let resp = http()
            .get(format!("{}{path}", srv.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let served: Value = resp.json().await.unwrap();
        assert_eq!(served, doc, "{path}");
    }
}

#[test]
fn every_route_of_the_server_is_in_the_spec() {
    // the router's routes, as written in src/server/http/mod.rs
    let source = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/server/http/mod.rs"),
    )
    .unwrap();
    let spec = punch::server::spec::route_paths();
    let mut found = 0;
    for line in source.lines().map(str::trim) {
        let Some(rest) = line.strip_prefix(".route(\"") else {
            continue;
        };
        let (path, handlers) = rest.split_once('"').unwrap();
        for method in ["get", "post", "put", "patch", "delete"] {
            if handlers.contains(&format!("{method}(")) {
                found += 1;
                assert!(
                    spec.contains(&(method, path)),
                    "{method} {path} is routed but not in the spec (src/server/spec.rs)"
                );
            }
        }
    }
    // (a route spread over several lines: the path alone)
    for line in source.lines().map(str::trim) {
        if line.starts_with('"') && line.ends_with("\",") && line.contains("/api/") {
            let path = line.trim_matches(|c| c == '"' || c == ',');
            assert!(
                spec.iter().any(|(_, p)| *p == path),
                "{path} is routed but not in the spec"
            );
        }
    }
    assert!(found >= 20, "read {found} routes only");
    // and the other way: nothing in the spec the server does not route
    for (method, path) in &spec {
        assert!(
            source.contains(&format!("\"{path}\"")),
            "{method} {path} is in the spec but not routed"
        );
    }
}

/// The JSON examples of `docs/protocol.md`: every value in its ```json blocks.
fn examples() -> Vec<(usize, Value)> {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/protocol.md"),
    )
    .unwrap();
    let mut out = Vec::new();
    let mut block: Option<(usize, String)> = None;
    for (n, line) in text.lines().enumerate() {
        match (&mut block, line.trim()) {
            (None, "```json") => block = Some((n + 1, String::new())),
            (Some((start, body)), "```") => {
                // (a block may hold several values, one after the other)
                for value in serde_json::Deserializer::from_str(body).into_iter::<Value>() {
                    let value = value.unwrap_or_else(|e| {
                        panic!("docs/protocol.md line {start}: the example is not JSON ({e})")
                    });
                    out.push((*start, value));
                }
                block = None;
            }
            (Some((_, body)), _) => {
                body.push_str(line);
                body.push('\n');
            }
            _ => {}
        }
    }
    out
}

#[test]
fn the_examples_in_the_protocol_doc_conform() {
    let messages = punch::server::spec::messages();
    let openapi = punch::server::spec::openapi();
    let root = |schema: Value, refs: (&str, &Value)| {
        let mut doc =
            serde_json::json!({ "$schema": "https://json-schema.org/draft/2020-12/schema" });
        doc[refs.0] = refs.1.clone();
        for (k, v) in schema.as_object().unwrap() {
            doc[k] = v.clone();
        }
        jsonschema::draft202012::new(&doc).unwrap()
    };
    let client = root(
        serde_json::json!({ "$ref": "#/$defs/ClientMessage" }),
        ("$defs", &messages["$defs"]),
    );
    let server = root(
        serde_json::json!({ "$ref": "#/$defs/ServerMessage" }),
        ("$defs", &messages["$defs"]),
    );
    // every request and answer body of the API that has required fields, with its properties
    // (an example must be one of them, with no field it does not have)
    let schemas = openapi["components"]["schemas"].as_object().unwrap();
    let bodies: Vec<(String, Vec<String>, jsonschema::Validator)> = schemas
        .iter()
        .filter(|(_, s)| s["required"].as_array().is_some_and(|r| !r.is_empty()))
        .map(|(name, s)| {
            let props = s["properties"]
                .as_object()
                .map(|p| p.keys().cloned().collect())
                .unwrap_or_default();
            (
                name.clone(),
                props,
                root(
                    serde_json::json!({ "$ref": format!("#/components/schemas/{name}") }),
                    ("components", &openapi["components"]),
                ),
            )
        })
        .collect();
    let found = examples();
    assert!(found.len() >= 15, "only {} examples found", found.len());
    for (line, example) in found {
        if example.get("type").is_some_and(Value::is_string) {
            let ok = client.is_valid(&example) || server.is_valid(&example);
            let why: Vec<String> = server
                .iter_errors(&example)
                .chain(client.iter_errors(&example))
                .map(|e| e.to_string())
                .collect();
            assert!(
                ok,
                "docs/protocol.md line {line}: not a Punch message: {why:?}\n{example}"
            );
        } else {
            let keys: Vec<&String> = example
                .as_object()
                .map(|o| o.keys().collect())
                .unwrap_or_default();
            assert!(
                bodies.iter().any(|(_, props, v)| {
                    v.is_valid(&example) && keys.iter().all(|k| props.contains(k))
                }),
                "docs/protocol.md line {line}: no body of the API looks like this:\n{example}"
            );
        }
    }
}

#[test]
#[should_panic(expected = "does not conform to the spec")]
fn the_conformance_check_refuses_a_body_the_spec_does_not_allow() {
    // a session view without its required fields
    conform::http_response(
        "GET",
        "/api/session/show",
        200,
        Some(&serde_json::json!({ "session": "show" })),
    );
}

#[test]
#[should_panic(expected = "does not conform to the spec")]
fn the_conformance_check_refuses_a_message_the_spec_does_not_allow() {
    conform::server_message(r#"{"type": "tally", "stream": "cam1", "state": "purple"}"#);
}
