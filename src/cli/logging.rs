//! The log `punch serve` writes to stderr. Log lines carry strings clients chose (session names
//! from a URL path, labels, error messages quoting them): every control character in a line is
//! written escaped (`\n`, `\u{1b}`), so a client cannot forge a log line or send terminal escape
//! sequences to whoever reads the log.

use std::io::Write;

/// Writes each log event with its control characters escaped (its final newline kept).
pub struct Escaping<W>(pub W);

impl<W: Write> Write for Escaping<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let (body, newline) = match text.strip_suffix('\n') {
            Some(body) => (body, "\n"),
            None => (&*text, ""),
        };
        self.0.write_all(escape(body).as_bytes())?;
        self.0.write_all(newline.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// Writes each JSON log event with the control characters JSON leaves as they are (DEL, the C1
/// range, which terminals act on) written as JSON escapes (`\u009b`): the line stays valid
/// JSON (serde has escaped the others already).
pub struct JsonEscaping<W>(pub W);

impl<W: Write> Write for JsonEscaping<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let (body, newline) = match text.strip_suffix('\n') {
            Some(body) => (body, "\n"),
            None => (&*text, ""),
        };
        let mut out = String::with_capacity(body.len());
        for c in body.chars() {
            if c.is_control() {
                out.push_str(&format!("\\u{:04x}", c as u32));
            } else {
                out.push(c);
            }
        }
        self.0.write_all(out.as_bytes())?;
        self.0.write_all(newline.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// `s` with its control characters written as Rust escapes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One line of text per event.
    Text,
    /// One JSON object per line (`timestamp`, `level`, `fields` with `message` and the event's
    /// fields, `span`s): for log shippers.
    Json,
}

/// Sets up the log: `RUST_LOG` (default `info`), no colours (their escape codes would be
/// escaped too), control characters escaped (JSON escapes them itself).
pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(false);
    let _ = match format {
        LogFormat::Text => builder
            .with_writer(|| Escaping(std::io::stderr()))
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_writer(|| JsonEscaping(std::io::stderr()))
            .try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_line_stays_valid_json_without_terminal_controls() {
        let mut out = Vec::new();
        let line = serde_json::json!({ "message": "session a\u{7f}\u{9b}31m\nb" }).to_string();
        JsonEscaping(&mut out)
            .write_all(format!("{line}\n").as_bytes())
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(!text.trim_end().chars().any(char::is_control), "{text:?}");
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["message"], "session a\u{7f}\u{9b}31m\nb");
    }

    #[test]
    fn a_forged_line_stays_on_its_line() {
        let mut out = Vec::new();
        Escaping(&mut out)
            .write_all(b"request refused session=a\nINFO forged \x1b[31mred\n")
            .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "request refused session=a\\nINFO forged \\u{1b}[31mred\n"
        );
    }
}
