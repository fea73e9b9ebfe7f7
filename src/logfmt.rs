//! Lists in log lines: a real JSON array in `[log] format = "json"`, "a, b" in text.
//!
//! tracing records a field as a string or a `Debug` value; a JSON array needs the unstable
//! `valuable` support. So a [`LogList`] field is written as its JSON text behind a marker
//! character, and [`JsonLists`], the writer under the JSON formatter, turns exactly those
//! strings back into arrays. Lines without the marker (the access log, almost everything) pass
//! through untouched: one byte search, no parsing. Knows nothing of what is logged.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing_subscriber::fmt::MakeWriter;

/// Set once at start: whether lists are written for [`JsonLists`] to expand.
static JSON: AtomicBool = AtomicBool::new(false);

/// Marks a string field that holds a JSON array (ASCII record separator: never in real text).
const MARK: char = '\u{1e}';
/// How the JSON formatter escapes [`MARK`] inside a string.
const ESCAPED_MARK: &[u8] = b"\\u001e";

/// Lists become JSON arrays from now on (call before the first event).
pub fn json_lists() {
    JSON.store(true, Ordering::Relaxed);
}

/// A list field: `files = %LogList(&files)`. Empty reads "-" in text and `[]` in JSON.
pub struct LogList<'a, T: fmt::Display>(pub &'a [T]);

impl<T: fmt::Display> fmt::Display for LogList<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if JSON.load(Ordering::Relaxed) {
            let items: Vec<String> = self.0.iter().map(ToString::to_string).collect();
            let text = serde_json::to_string(&items).map_err(|_| fmt::Error)?;
            return write!(f, "{MARK}{text}");
        }
        if self.0.is_empty() {
            return f.write_str("-");
        }
        for (i, item) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{item}")?;
        }
        Ok(())
    }
}

/// Wraps the JSON formatter's writer: marked string fields of a line become arrays.
pub struct JsonLists<M>(pub M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for JsonLists<M> {
    type Writer = ExpandLists<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        ExpandLists(self.0.make_writer())
    }
}

/// One event's writer (the fmt layer writes each event in one `write_all`).
pub struct ExpandLists<W>(W);

impl<W: io::Write> io::Write for ExpandLists<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !buf.windows(ESCAPED_MARK.len()).any(|w| w == ESCAPED_MARK) {
            return self.0.write(buf);
        }
        match expand(buf) {
            Some(line) => self.0.write_all(&line)?,
            // Not one JSON object after all: the marked text is still readable as it is.
            None => self.0.write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

fn expand(line: &[u8]) -> Option<Vec<u8>> {
    let mut doc: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(line).ok()?;
    for v in doc.values_mut() {
        if let Some(list) = v.as_str().and_then(|s| s.strip_prefix(MARK))
            && let Ok(array) = serde_json::from_str::<serde_json::Value>(list)
        {
            *v = array;
        }
    }
    let mut out = serde_json::to_vec(&doc).ok()?;
    out.push(b'\n');
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marked_field_becomes_an_array_and_the_rest_stays() {
        let line =
            "{\"level\":\"INFO\",\"files\":\"\\u001e[\\\"a.pem\\\",\\\"b, c.key\\\"]\",\"n\":3}\n";
        let out = expand(line.as_bytes()).expect("json");
        let v: serde_json::Value = serde_json::from_slice(&out).expect("json out");
        assert_eq!(v["files"], serde_json::json!(["a.pem", "b, c.key"]));
        assert_eq!(v["n"], 3);
        assert_eq!(v["level"], "INFO");
    }

    #[test]
    fn text_lists_read_as_a_comma_separated_line_or_a_dash() {
        assert_eq!(LogList(&["a", "b"]).to_string(), "a, b");
        assert_eq!(LogList::<&str>(&[]).to_string(), "-");
    }
}
