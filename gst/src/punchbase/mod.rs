//! `GstPunchBase`: the abstract base class of `punchsink` and `punchsrc`. A bin around one
//! locked inner SRT element, driven by the peer state machine of `punch::client::peer`.
//!
//! The base owns what both elements share: every property (installed once, so both elements
//! show them), the state changes, the signalling task, health reports and bus messages. What
//! differs (the inner element, the pad, how upstream or downstream is kept safe while the
//! inner element restarts) is the element's [`Media`], which each subclass provides through
//! [`PunchBaseImpl`]. `docs/elements.md` is the user's reference.

mod engine;
mod enums;
pub mod health;
mod imp;
pub mod settings;
mod signalling;

use std::sync::Weak;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use punch::protocol::Role;

pub use engine::Engine;
pub use enums::{PunchSessionState, PunchTally};

glib::wrapper! {
    pub struct PunchBase(ObjectSubclass<imp::PunchBase>)
        @extends gst::Bin, gst::Element, gst::Object, @implements gst::ChildProxy;
}

/// What differs between `punchsink` and `punchsrc`.
pub trait Media: Send + Sync + 'static {
    /// Which side of a stream the element is.
    fn role(&self) -> Role;
    /// The element's debug category.
    fn cat(&self) -> gst::DebugCategory;
    /// The inner SRT element's factory name.
    fn inner_factory(&self) -> &'static str;
    /// The inner element's static pad, targeted by the bin's ghost pad of the same name.
    fn pad_name(&self) -> &'static str;
    /// SINK or SOURCE.
    fn element_flags(&self) -> gst::ElementFlags;
    /// A live source answers `NoPreroll` when going to PAUSED.
    fn live_source(&self) -> bool;
    /// Creates the ghost pad, with the pad functions this side needs.
    fn ghost_pad(&self, templ: &gst::PadTemplate, engine: Weak<Engine>) -> gst::GhostPad;
    /// Sets the inner element's fixed properties, once.
    fn configure_inner(&self, _inner: &gst::Element) {}
    /// The ghost pad is in place: add probes.
    fn constructed(&self, _engine: &std::sync::Arc<Engine>, _ghost: &gst::GhostPad) {}
    /// The inner element is about to be restarted.
    fn inner_restarting(&self, _ghost: &gst::GhostPad) {}
    /// The inner element has its new URI and is about to start.
    fn inner_configured(&self, _ghost: &gst::GhostPad, _inner: &gst::Element) {}
    /// The inner element runs.
    fn inner_started(&self, _bin: &gst::Bin, _ghost: &gst::GhostPad) {}
    /// The element stopped its inner element.
    fn inner_stopped(&self, _ghost: &gst::GhostPad) {}
    /// The element starts (READY→PAUSED), before signalling.
    fn starting(&self) {}
    /// The SRT link connected (`up`) or was lost: first connect, reconnect, new peer, new path.
    fn link_changed(&self, _up: bool, _ghost: &gst::GhostPad) {}
    /// While connected, at every statistics poll: why the link stopped carrying data, if it did.
    fn stalled(&self, _stats: &gst::StructureRef) -> Option<String> {
        None
    }
    /// The stream has `receivers` receivers and this element links with all of them (called
    /// on the plugin runtime, at most once per run).
    fn fan_out(&self, _engine: &std::sync::Arc<Engine>, _receivers: u8) {}
    /// A message from an element inside the bin other than the inner SRT element; returns what
    /// to pass on.
    fn child_message(
        &self,
        _engine: &std::sync::Arc<Engine>,
        msg: gst::Message,
    ) -> Option<gst::Message> {
        Some(msg)
    }
    /// Options this side adds to the inner element's SRT URI (`&key=value…`).
    fn srt_options(&self, _latency_ms: u32) -> String {
        String::new()
    }
}

/// Implemented by `punchsink` and `punchsrc`: they provide their [`Media`].
pub trait PunchBaseImpl: BinImpl + ObjectSubclass<Type: IsA<PunchBase>> {
    /// This element's media; called once, when the element is constructed.
    fn media(&self) -> Box<dyn Media>;
}

/// The base's class: how to get an instance's media from the subclass.
#[repr(C)]
pub struct Class {
    parent: gst::ffi::GstBinClass,
    media: fn(&PunchBase) -> Box<dyn Media>,
}

/// The class's `media` for subclass `T`.
fn media_of<T: PunchBaseImpl>(obj: &PunchBase) -> Box<dyn Media> {
    obj.downcast_ref::<T::Type>()
        .expect("an instance of the class it was created from")
        .imp()
        .media()
}

unsafe impl ClassStruct for Class {
    type Type = imp::PunchBase;
}

impl std::ops::Deref for Class {
    type Target = glib::Class<gst::Bin>;

    fn deref(&self) -> &Self::Target {
        // SAFETY: the parent class struct comes first and is a GstBinClass.
        unsafe { &*(&self.parent as *const _ as *const Self::Target) }
    }
}

unsafe impl<T: PunchBaseImpl> IsSubclassable<T> for PunchBase {
    fn class_init(class: &mut glib::Class<Self>) {
        Self::parent_class_init::<T>(class);
        class.as_mut().media = media_of::<T>;
    }
}

/// Starts `element`'s run again — its signalling connection and its inner element — without a
/// state change: how a `punchsink` leg recovers (setting it to NULL would stop the stream its
/// queue feeds it, and with it the `tee` and the other legs).
pub fn restart_run(element: &PunchBase) -> Result<(), String> {
    element.imp().restart_run()
}

/// The URI schemes both elements handle.
pub const PROTOCOLS: &[&str] = &["punch", "punchs"];

/// An element's metadata (the author is the same for both).
pub fn metadata(long_name: &str, klass: &str, description: &str) -> gst::subclass::ElementMetadata {
    gst::subclass::ElementMetadata::new(long_name, klass, description, "The Punch developers")
}

/// The element's one always-present pad, of any caps.
pub fn pad_templates(name: &str, direction: gst::PadDirection) -> Vec<gst::PadTemplate> {
    vec![
        gst::PadTemplate::new(
            name,
            direction,
            gst::PadPresence::Always,
            &gst::Caps::new_any(),
        )
        .expect("pad template"),
    ]
}

/// What the subclasses' URI handlers forward to.
pub trait PunchBaseExt: IsA<PunchBase> + 'static {
    fn punch_uri(&self) -> Option<String> {
        self.upcast_ref::<PunchBase>().imp().uri()
    }

    fn set_punch_uri(&self, uri: &str) -> Result<(), glib::Error> {
        self.upcast_ref::<PunchBase>().imp().set_uri(uri)
    }
}

impl<O: IsA<PunchBase>> PunchBaseExt for O {}
