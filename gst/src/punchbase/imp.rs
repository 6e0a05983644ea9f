use std::sync::{Arc, Mutex, OnceLock};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use super::engine::Engine;
use super::enums::{PunchSessionState, PunchTally};
use super::settings::{self, Settings};
use super::{Media, signalling};

/// The settings (writable properties) and the engine of one element.
#[derive(Default)]
pub struct PunchBase {
    settings: Mutex<Settings>,
    /// Created in `constructed`, from the subclass's media.
    engine: OnceLock<Arc<Engine>>,
}

fn abstract_media(_: &super::PunchBase) -> Box<dyn Media> {
    unreachable!("GstPunchBase is abstract: only punchsink and punchsrc are instantiated")
}

#[glib::object_subclass]
impl ObjectSubclass for PunchBase {
    const NAME: &'static str = "GstPunchBase";
    const ABSTRACT: bool = true;
    type Type = super::PunchBase;
    type ParentType = gst::Bin;
    type Class = super::Class;

    fn class_init(klass: &mut Self::Class) {
        klass.media = abstract_media;
    }
}

impl PunchBase {
    fn engine(&self) -> &Arc<Engine> {
        self.engine.get().expect("constructed")
    }

    /// Starts this element's run again (signalling, the inner element) without a state change.
    pub fn restart_run(&self) -> Result<(), String> {
        let engine = self.engine();
        if !engine.active() {
            return Ok(());
        }
        engine.stop();
        let settings = self.settings.lock().unwrap().clone();
        let config = signalling::Config::new(&settings, engine.media.role())?;
        engine.clone().start(config);
        Ok(())
    }

    /// For `URIHandler::uri`.
    pub fn uri(&self) -> Option<String> {
        self.settings.lock().unwrap().uri()
    }

    /// For `URIHandler::set_uri`: only in NULL, and only our schemes.
    pub fn set_uri(&self, uri: &str) -> Result<(), glib::Error> {
        if self.obj().current_state() > gst::State::Null {
            return Err(glib::Error::new(
                gst::URIError::BadState,
                "the URI can only be changed in the NULL state",
            ));
        }
        let scheme = uri
            .split("://")
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if scheme != "punch" && scheme != "punchs" {
            return Err(glib::Error::new(
                gst::URIError::UnsupportedProtocol,
                &format!("unsupported URI {uri:?}: use punch:// or punchs://"),
            ));
        }
        self.settings.lock().unwrap().set_uri(uri).map_err(|e| {
            glib::Error::new(gst::URIError::BadUri, &format!("invalid Punch URI: {e}"))
        })
    }
}

impl ObjectImpl for PunchBase {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: std::sync::LazyLock<Vec<glib::ParamSpec>> =
            std::sync::LazyLock::new(settings::properties);
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let result = settings::set_property(&mut self.settings.lock().unwrap(), value, pspec);
        if let Err(e) = result {
            // reported at NULL→READY (see `Settings::uri_error`)
            gst::warning!(
                self.engine().cat(),
                imp = self,
                "invalid {}: {e}",
                pspec.name()
            );
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        if let Some(v) = settings::property(&self.settings.lock().unwrap(), pspec.name()) {
            return v;
        }
        let engine = self.engine();
        match pspec.name() {
            "session-state" => PunchSessionState::from(engine.stream_state()).to_value(),
            "peer-address" => engine.peer_address().to_value(),
            "tally" => PunchTally::from(engine.tally()).to_value(),
            "stats" => engine.stats().to_value(),
            other => unreachable!("unknown property {other}"),
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        let obj = self.obj();
        let media = (obj.class().as_ref().media)(&obj);
        let templ = obj
            .pad_template(media.pad_name())
            .expect("the element's pad template");
        // In place before the inner element is added: adding it already posts messages.
        let engine = self.engine.get_or_init(|| Arc::new(Engine::new(media)));
        engine.construct(obj.upcast_ref(), &templ);
    }
}

impl GstObjectImpl for PunchBase {}

impl ElementImpl for PunchBase {
    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        let engine = self.engine();
        let media = &engine.media;
        match transition {
            gst::StateChange::NullToReady => {
                if engine.inner().is_none() {
                    gst::element_imp_error!(
                        self,
                        gst::CoreError::MissingPlugin,
                        (
                            "The GStreamer element '{}' is not installed: install the Debian package gstreamer1.0-plugins-bad",
                            media.inner_factory()
                        )
                    );
                    return Err(gst::StateChangeError);
                }
                let target = self.settings.lock().unwrap().target();
                if let Err(e) = target {
                    gst::element_imp_error!(self, gst::ResourceError::Settings, ("{e}"));
                    return Err(gst::StateChangeError);
                }
            }
            gst::StateChange::PausedToReady => engine.stop(),
            _ => {}
        }
        let mut result = self.parent_change_state(transition)?;
        match transition {
            gst::StateChange::ReadyToPaused => {
                let settings = self.settings.lock().unwrap().clone();
                match signalling::Config::new(&settings, media.role()) {
                    Ok(config) => engine.clone().start(config),
                    Err(e) => {
                        gst::element_imp_error!(self, gst::ResourceError::Settings, ("{e}"));
                        return Err(gst::StateChangeError);
                    }
                }
            }
            gst::StateChange::PlayingToPaused | gst::StateChange::PausedToPlaying => {
                // The locked inner element follows pause and resume by hand.
                engine.follow_state(transition.next());
            }
            _ => {}
        }
        let to_paused = matches!(
            transition,
            gst::StateChange::ReadyToPaused | gst::StateChange::PlayingToPaused
        );
        if to_paused && media.live_source() {
            result = gst::StateChangeSuccess::NoPreroll;
        }
        Ok(result)
    }
}

impl BinImpl for PunchBase {
    fn handle_message(&self, msg: gst::Message) {
        let msg = match self.engine.get() {
            Some(engine) => engine.handle_message(msg),
            None => Some(msg),
        };
        if let Some(msg) = msg {
            self.parent_handle_message(msg)
        }
    }
}
