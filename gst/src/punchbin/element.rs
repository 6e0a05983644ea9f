//! The GObject glue of both elements. Every virtual method forwards to the element's
//! [`PunchBin`](super::PunchBin) (its field `bin`); only the metadata and the pad differ.

/// Implements `ObjectImpl`, `GstObjectImpl`, `ElementImpl`, `BinImpl` and `URIHandlerImpl` for an
/// element struct holding a `bin: PunchBin`.
macro_rules! punch_element_impls {
    (
        $imp:ty,
        long_name: $long_name:literal,
        klass: $klass:literal,
        description: $description:literal,
        pad: $pad:literal,
        direction: $direction:expr,
        uri_type: $uri_type:expr $(,)?
    ) => {
        impl ObjectImpl for $imp {
            fn properties() -> &'static [glib::ParamSpec] {
                static PROPERTIES: std::sync::LazyLock<Vec<glib::ParamSpec>> =
                    std::sync::LazyLock::new($crate::punchbin::settings::properties);
                PROPERTIES.as_ref()
            }

            fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
                self.bin.set_property(self.obj().upcast_ref(), value, pspec);
            }

            fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
                self.bin.property(pspec)
            }

            fn constructed(&self) {
                self.parent_constructed();
                let obj = self.obj();
                let templ = obj.pad_template($pad).expect("the element's pad template");
                self.bin.construct(obj.upcast_ref(), &templ);
            }
        }

        impl GstObjectImpl for $imp {}

        impl ElementImpl for $imp {
            fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
                static METADATA: std::sync::LazyLock<gst::subclass::ElementMetadata> =
                    std::sync::LazyLock::new(|| {
                        gst::subclass::ElementMetadata::new(
                            $long_name,
                            $klass,
                            $description,
                            "The Punch developers",
                        )
                    });
                Some(&*METADATA)
            }

            fn pad_templates() -> &'static [gst::PadTemplate] {
                static TEMPLATES: std::sync::LazyLock<Vec<gst::PadTemplate>> =
                    std::sync::LazyLock::new(|| {
                        vec![
                            gst::PadTemplate::new(
                                $pad,
                                $direction,
                                gst::PadPresence::Always,
                                &gst::Caps::new_any(),
                            )
                            .expect("pad template"),
                        ]
                    });
                TEMPLATES.as_ref()
            }

            fn change_state(
                &self,
                transition: gst::StateChange,
            ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
                self.bin
                    .change_state(self.obj().upcast_ref(), transition, |t| {
                        self.parent_change_state(t)
                    })
            }
        }

        impl BinImpl for $imp {
            fn handle_message(&self, msg: gst::Message) {
                if let Some(msg) = self.bin.handle_message(msg) {
                    self.parent_handle_message(msg)
                }
            }
        }

        impl URIHandlerImpl for $imp {
            const URI_TYPE: gst::URIType = $uri_type;

            fn protocols() -> &'static [&'static str] {
                &["punch", "punchs"]
            }

            fn uri(&self) -> Option<String> {
                self.bin.uri()
            }

            fn set_uri(&self, uri: &str) -> Result<(), glib::Error> {
                self.bin.set_uri(self.obj().upcast_ref(), uri)
            }
        }
    };
}

pub(crate) use punch_element_impls;
