//! GStreamer plugin `punch`: SRT rendezvous from a Punch session URI.
//!
//! * `punchsink`: the encoder side, around `srtsink`.
//! * `punchsrc`: the decoder side, around `srtsrc`.
//! * `punchbase`: their abstract base `GstPunchBase` (properties, signalling, restarts).
//!
//! Both take `uri=punch://HOST[:PORT]/SESSION[/STREAM]?token=TOKEN`, register with the Punch
//! server, receive the other side's public address and the stream's passphrase, and run the inner
//! SRT element in rendezvous mode. `docs/elements.md` is the reference.
//!
//! Load it with `GST_PLUGIN_PATH=target/release`, or call [`plugin_register_static`] in an
//! application that links this crate.

use std::sync::LazyLock;

use gst::glib;
use gst::prelude::*;

mod punchbase;
pub mod punchsink;
pub mod punchsrc;

pub use punchbase::{PunchBase, PunchSessionState, PunchTally};

/// The plugin's one async runtime, for the signalling connections of every element instance.
pub(crate) static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("punch-signalling")
        .enable_all()
        .build()
        .expect("cannot start the signalling runtime")
});

fn plugin_init(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    // Types of the elements' API that gst-inspect and the documentation cache describe.
    for t in [
        PunchBase::static_type(),
        PunchSessionState::static_type(),
        PunchTally::static_type(),
    ] {
        t.mark_as_plugin_api(gst::PluginAPIFlags::empty());
    }
    punchsink::register(Some(plugin))?;
    punchsrc::register(Some(plugin))?;
    Ok(())
}

gst::plugin_define!(
    punch,
    env!("CARGO_PKG_DESCRIPTION"),
    plugin_init,
    concat!(env!("CARGO_PKG_VERSION"), "-", env!("COMMIT_ID")),
    "MIT/X11",
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_REPOSITORY"),
    env!("BUILD_REL_DATE")
);
