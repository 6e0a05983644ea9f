//! The documentation stays true to the code: every property `gst-inspect-1.0` shows for the
//! elements is in `docs/elements.md` with its description, and no document cites a file outside
//! the repository.

mod common;

use common::*;

/// `(name, description)` of every property `gst-inspect-1.0 ELEMENT` lists, except GstBin's
/// and GstObject's own.
fn inspected_properties(element: &str) -> Vec<(String, String)> {
    require("gst-inspect-1.0", "gstreamer1.0-tools");
    let out = std::process::Command::new("gst-inspect-1.0")
        .arg(element)
        .env("GST_PLUGIN_PATH", plugin_dir())
        .output()
        .expect("gst-inspect-1.0 runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "gst-inspect-1.0 {element} failed:\n{text}"
    );
    let props = text
        .split_once("Element Properties:")
        .unwrap_or_else(|| panic!("no properties in:\n{text}"))
        .1;
    let inherited = ["name", "parent", "async-handling", "message-forward"];
    props
        .lines()
        .filter_map(|l| {
            let l = l.strip_prefix("  ")?;
            if l.starts_with(' ') {
                return None;
            }
            let (name, blurb) = l.split_once(" : ")?;
            Some((name.trim().to_string(), blurb.trim().to_string()))
        })
        .filter(|(name, _)| !inherited.contains(&name.as_str()))
        .collect()
}

#[test]
fn every_element_property_is_in_the_reference_with_its_description() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/elements.md"))
        .expect("docs/elements.md");
    for element in ["punchsink", "punchsrc"] {
        let props = inspected_properties(element);
        assert!(props.len() >= 17, "{element}: {props:?}");
        for (name, blurb) in props {
            let row = format!("| `{name}` |");
            let line = doc
                .lines()
                .find(|l| l.starts_with(&row))
                .unwrap_or_else(|| panic!("docs/elements.md has no row for {element}'s {name}"));
            assert!(
                line.contains(&blurb),
                "docs/elements.md describes {name} otherwise than the element ({blurb:?}):\n{line}"
            );
        }
    }
}

#[test]
fn the_repository_stands_on_its_own() {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut stray = Vec::new();
    let mut stack: Vec<std::path::PathBuf> = [
        "src",
        "gst/src",
        "gst/tests",
        "gst/examples",
        "docs",
        "tests",
        "examples",
        "scripts",
        ".ci",
    ]
    .iter()
    .map(|d| std::path::Path::new(root).join(d))
    .collect();
    stack.push(std::path::Path::new(root).join("README.md"));
    while let Some(p) = stack.pop() {
        if p.is_dir() {
            if p.ends_with("node_modules") {
                continue;
            }
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
        } else if let Ok(text) = std::fs::read_to_string(&p) {
            // The names of the team's private notes, assembled here so that this file does not
            // name them itself.
            let notes = ["srt", "-facts"].concat();
            let style = ["style", ".md"].concat();
            let dirs = ["docs", "seeds", "natlab"].map(|d| format!("{}/{d}", "shared"));
            for needle in [notes.as_str(), style.as_str()]
                .into_iter()
                .chain(dirs.iter().map(String::as_str))
            {
                if text.contains(needle) {
                    stray.push(format!("{} cites {needle}", p.display()));
                }
            }
        }
    }
    assert!(
        stray.is_empty(),
        "citations of files users do not have: {stray:#?}"
    );
}
