//! The dashboard in a real headless Chromium (Debian's, driven by playwright-core): a session
//! whose punchsink and punchsrc are streaming turns green, its QR images load, the on-air button
//! makes `punch-tally` appear on the sender's bus, and a wrong token shows the error page.
//! Screenshots are kept in the test's output directory (printed on success and failure).

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

#[test]
fn dashboard_goes_green_shows_qr_codes_and_its_tally_reaches_the_sender() {
    require("chromium", "chromium");
    require("node", "nodejs");
    require("gst-launch-1.0", "gstreamer1.0-tools");
    let browser_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: run `npm ci --prefix tests/browser` (scripts/test.sh does)"
    );
    let rt = runtime();
    let server = rt.block_on(start_default());
    let created = rt.block_on(create(
        &server.base,
        json!({ "name": "browser", "streams": ["cam1"] }),
    ));
    let admin = created["token"].as_str().unwrap().to_string();
    let uri = |role: &str| {
        format!(
            "punch://{}/browser/cam1?token={}",
            server.server.local_addr(),
            stream_token(&created, "cam1", role)
        )
    };
    let out = tempfile::Builder::new()
        .prefix("punch-browser-")
        .tempdir()
        .unwrap()
        .keep();
    // -m prints every bus message: the tally shows up in the camera's log.
    let camera = Proc::shell(
        &out,
        "camera",
        &camera_pipeline(&format!("punchsink uri={}", sh_quote(&uri("sender")))).replacen(
            "gst-launch-1.0 -e",
            "gst-launch-1.0 -e -m",
            1,
        ),
    );
    let decoder = Proc::shell(
        &out,
        "decoder",
        &format!(
            "gst-launch-1.0 -e punchsrc uri={} ! fakesink",
            sh_quote(&uri("receiver"))
        ),
    );
    let mut browser = Proc::shell(
        &out,
        "browser",
        &format!(
            "cd {} && DASHBOARD_URL={} BAD_URL={} STREAM=cam1 OUT_DIR={} exec node dashboard.mjs",
            sh_quote(&browser_dir.display().to_string()),
            sh_quote(created["url"].as_str().unwrap()),
            sh_quote(&format!(
                "{}/s/browser?t=pa.browser.wrong.token",
                server.base
            )),
            sh_quote(&out.display().to_string()),
        ),
    );
    let status = {
        let start = std::time::Instant::now();
        loop {
            if let Some(status) = browser.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "the browser test did not finish:\n{}",
                browser.output()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let view = rt.block_on(get_session(&server.base, "browser", &admin)).1;
    assert!(
        status.success() && browser.output().contains("OK"),
        "browser test failed ({status}); screenshots and logs in {}\n{}\nview: {view}\ncamera:\n{}\ndecoder:\n{}",
        out.display(),
        browser.output(),
        camera.output(),
        decoder.output()
    );
    assert!(out.join("dashboard.png").exists() && out.join("error.png").exists());
    // The click reached the sender's element as a bus message.
    let start = std::time::Instant::now();
    while !camera
        .output()
        .contains("punch-tally, stream=(string)cam1, state=(string)on-air")
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no on-air punch-tally on the sender's bus:\n{}",
            camera.output()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(view["streams"][0]["tally"], "on-air");
    println!("screenshots in {}", out.display());
}
