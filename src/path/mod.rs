//! The request path as routing, token checks and the upstream all read it: normalised once
//! (unreserved characters decoded, hex upper-cased, duplicate slashes merged), refused when it
//! cannot be (NUL, bad encodings, dot segments), and checked against the other readings an
//! upstream may give bytes that cannot be normalised safely (`%2F`, `%5C`, `\`, `;` params).
//! Pure string work; no sockets, no route table (the caller passes its lookup).

use std::borrow::Cow;

/// Why a path is refused with 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("NUL in path")]
    Nul,
    #[error("invalid percent-encoding in path")]
    BadEncoding,
    #[error("dot segments in path")]
    DotSegment,
    /// Another reading of `%2F`, `%5C`, `\` or `;` would pick another route.
    #[error("path routes differently under another reading")]
    Ambiguous,
}

/// A path in normal form; borrowed when the request's path already was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normal<'a> {
    path: Cow<'a, str>,
    /// Holds `%2F`, `%5C`, `%3B`, `\` or `;`: bytes an upstream may read as structure.
    ambiguous: bool,
}

impl Normal<'_> {
    pub fn as_str(&self) -> &str {
        &self.path
    }

    /// Whether normalising changed the path (it must then be sent as normalised).
    pub fn is_changed(&self) -> bool {
        matches!(self.path, Cow::Owned(_))
    }

    pub fn is_ambiguous(&self) -> bool {
        self.ambiguous
    }

    /// The path under each other reading an upstream may apply (`%2F`, `%5C`, `\` as `/`;
    /// `;params` cut from each segment, before or after that), each normalised again. Empty
    /// for a path without such bytes.
    pub fn readings(&self) -> Result<Vec<String>, PathError> {
        let mut out = Vec::new();
        if !self.ambiguous {
            return Ok(out);
        }
        for slash in [false, true] {
            for backslash in [false, true] {
                for params in [Params::Kept, Params::CutFirst, Params::CutAfter] {
                    if !slash && !backslash && params == Params::Kept {
                        continue;
                    }
                    let mut p = self.path.to_string();
                    if params == Params::CutFirst {
                        p = cut_params(&p);
                    }
                    if slash {
                        p = p.replace("%2F", "/");
                    }
                    if backslash {
                        p = p.replace("%5C", "/").replace('\\', "/");
                    }
                    if params == Params::CutAfter {
                        p = cut_params(&p);
                    }
                    let n = normalise(&p)?.path.into_owned();
                    if n != self.path && !out.contains(&n) {
                        out.push(n);
                    }
                }
            }
        }
        Ok(out)
    }
}

/// Normalises `raw` (a request path without its query). Allocates only when it changes.
pub fn normalise(raw: &str) -> Result<Normal<'_>, PathError> {
    let bytes = raw.as_bytes();
    let mut out: Option<String> = None;
    // `raw[copied..i]` is output not yet pushed into `out`.
    let mut copied = 0;
    let mut last = 0u8;
    let mut ambiguous = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'/' if last == b'/' => {
                let o = out.get_or_insert_with(|| String::with_capacity(raw.len()));
                o.push_str(&raw[copied..i]);
                copied = i + 1;
            }
            b'%' => {
                let (Some(hi), Some(lo)) = (
                    bytes.get(i + 1).and_then(|h| hex(*h)),
                    bytes.get(i + 2).and_then(|h| hex(*h)),
                ) else {
                    return Err(PathError::BadEncoding);
                };
                let v = hi << 4 | lo;
                if v == 0 {
                    return Err(PathError::Nul);
                }
                let unreserved =
                    v.is_ascii_alphanumeric() || matches!(v, b'-' | b'.' | b'_' | b'~');
                let upper =
                    !bytes[i + 1].is_ascii_lowercase() && !bytes[i + 2].is_ascii_lowercase();
                ambiguous |= matches!(v, b'/' | b'\\' | b';');
                if unreserved || !upper {
                    let o = out.get_or_insert_with(|| String::with_capacity(raw.len()));
                    o.push_str(&raw[copied..i]);
                    if unreserved {
                        o.push(char::from(v));
                    } else {
                        o.push('%');
                        o.push(char::from(HEX[usize::from(hi)]));
                        o.push(char::from(HEX[usize::from(lo)]));
                    }
                    copied = i + 3;
                }
                last = if unreserved { v } else { HEX[usize::from(lo)] };
                i += 3;
                continue;
            }
            0 => return Err(PathError::Nul),
            b'\\' | b';' => ambiguous = true,
            _ => {}
        }
        last = b;
        i += 1;
    }
    let path = match out {
        None => Cow::Borrowed(raw),
        Some(mut o) => {
            o.push_str(&raw[copied..]);
            Cow::Owned(o)
        }
    };
    if path.split('/').any(|s| s == "." || s == "..") {
        return Err(PathError::DotSegment);
    }
    Ok(Normal { path, ambiguous })
}

/// The route for `path` by `find`, refused when another reading of its ambiguous bytes would
/// pick a different one (`same` compares two lookups).
pub fn route<T>(
    path: &Normal<'_>,
    find: impl Fn(&str) -> T,
    same: impl Fn(&T, &T) -> bool,
) -> Result<T, PathError> {
    let found = find(path.as_str());
    for reading in path.readings()? {
        if !same(&find(&reading), &found) {
            return Err(PathError::Ambiguous);
        }
    }
    Ok(found)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Params {
    Kept,
    /// Cut before slashes are decoded (Tomcat), or after.
    CutFirst,
    CutAfter,
}

/// Each segment up to its first `;` (or `%3B`).
fn cut_params(p: &str) -> String {
    p.split('/')
        .map(|seg| {
            let end = [seg.find(';'), seg.find("%3B")]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(seg.len());
            &seg[..end]
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

#[cfg(test)]
mod tests;
