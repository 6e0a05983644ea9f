//! `srt://` URLs in the dialect of each tool, built in one place. The tools disagree on names
//! and units (see `docs/srt-notes.md`): GStreamer names the local side `localaddress` and
//! `localport` and takes milliseconds; srt-live-transmit names it `adapter` and `port` and takes
//! milliseconds; OBS (ffmpeg's option parser) takes `localip`, `localport` and microseconds.

use super::uri::url_host;

/// One side's view of an SRT rendezvous link: where it sends, which local port it binds, and
/// what both ends must agree on.
#[derive(Debug, Clone, Copy)]
pub struct Rendezvous<'a> {
    /// The address this side targets (the peer's public address, or its relay port).
    pub host: &'a str,
    pub port: u16,
    /// The local UDP port this side binds.
    pub local_port: u16,
    /// SRT latency, milliseconds.
    pub latency_ms: u32,
    pub passphrase: &'a str,
    pub pbkeylen: u8,
}

impl Rendezvous<'_> {
    fn target(&self) -> String {
        format!("srt://{}:{}", url_host(self.host), self.port)
    }

    fn secret(&self) -> String {
        format!("passphrase={}&pbkeylen={}", self.passphrase, self.pbkeylen)
    }

    /// For GStreamer's `srtsrc`/`srtsink` `uri`. The local address must always be given: without
    /// it GStreamer 1.22 binds the remote address.
    pub fn gstreamer(&self, local_address: &str) -> String {
        format!(
            "{}?mode=rendezvous&localaddress={local_address}&localport={}&latency={}&{}",
            self.target(),
            self.local_port,
            self.latency_ms,
            self.secret()
        )
    }

    /// For `srt-live-transmit` (`port` is its local port).
    pub fn srt_live_transmit(&self) -> String {
        format!(
            "{}?mode=rendezvous&adapter=0.0.0.0&port={}&latency={}&{}",
            self.target(),
            self.local_port,
            self.latency_ms,
            self.secret()
        )
    }

    /// For OBS Studio's custom server field. OBS binds the remote port number locally whatever
    /// `localport` says, so it is given the remote port; latency is in microseconds.
    pub fn obs(&self) -> String {
        format!(
            "{}?mode=rendezvous&localip=0.0.0.0&localport={}&latency={}&{}",
            self.target(),
            self.port,
            u64::from(self.latency_ms) * 1000,
            self.secret()
        )
    }
}

/// A caller's or a listener's link (a device side): the address a caller calls, or the port a
/// listener listens on, and the secret. The URL has no latency (units differ per tool: each
/// caller adds its own) and no stream ID (GStreamer cannot take `#` in a URI: it sets the
/// `streamid` property).
#[derive(Debug, Clone, Copy)]
pub struct Link<'a> {
    pub host: &'a str,
    pub port: u16,
    pub passphrase: &'a str,
    pub pbkeylen: u8,
}

impl Link<'_> {
    fn secret(&self) -> String {
        format!("passphrase={}&pbkeylen={}", self.passphrase, self.pbkeylen)
    }

    /// `srt://HOST:PORT?mode=caller&…`
    pub fn caller(&self) -> String {
        format!(
            "srt://{}:{}?mode=caller&{}",
            url_host(self.host),
            self.port,
            self.secret()
        )
    }

    /// `srt://:PORT?mode=listener&…` (every local address).
    pub fn listener(&self) -> String {
        self.listener_on("")
    }

    /// `srt://LOCAL:PORT?mode=listener&…`: GStreamer binds the URI's host in listener mode.
    pub fn listener_on(&self, local: &str) -> String {
        let local = if local.is_empty() {
            String::new()
        } else {
            url_host(local)
        };
        format!(
            "srt://{local}:{}?mode=listener&{}",
            self.port,
            self.secret()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_tool_gets_its_own_names_and_units() {
        let r = Rendezvous {
            host: "2001:db8::7",
            port: 24419,
            local_port: 9000,
            latency_ms: 250,
            passphrase: "0123456789abcdef",
            pbkeylen: 16,
        };
        assert_eq!(
            r.gstreamer("0.0.0.0"),
            "srt://[2001:db8::7]:24419?mode=rendezvous&localaddress=0.0.0.0&localport=9000&latency=250&passphrase=0123456789abcdef&pbkeylen=16"
        );
        assert_eq!(
            r.srt_live_transmit(),
            "srt://[2001:db8::7]:24419?mode=rendezvous&adapter=0.0.0.0&port=9000&latency=250&passphrase=0123456789abcdef&pbkeylen=16"
        );
        let link = Link {
            host: "2001:db8::7",
            port: 9000,
            passphrase: "0123456789abcdef",
            pbkeylen: 16,
        };
        assert_eq!(
            link.caller(),
            "srt://[2001:db8::7]:9000?mode=caller&passphrase=0123456789abcdef&pbkeylen=16"
        );
        assert_eq!(
            link.listener(),
            "srt://:9000?mode=listener&passphrase=0123456789abcdef&pbkeylen=16"
        );
        assert_eq!(
            r.obs(),
            "srt://[2001:db8::7]:24419?mode=rendezvous&localip=0.0.0.0&localport=24419&latency=250000&passphrase=0123456789abcdef&pbkeylen=16"
        );
    }
}
