use proptest::prelude::*;

use super::*;

fn norm(p: &str) -> Result<String, PathError> {
    normalise(p).map(|n| n.as_str().to_string())
}

/// A route table for the properties: longest prefix on segment boundaries.
const PREFIXES: [&str; 4] = ["/jwt/open", "/jwt", "/a", ""];

fn find(p: &str) -> Option<usize> {
    PREFIXES.iter().position(|prefix| {
        p.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/') || prefix.is_empty())
    })
}

/// An upstream written independently of the normaliser: decodes every escape once (or only
/// the unreserved ones), may read `\` as `/` and cut `;params` before or after decoding, merges
/// slashes and resolves dot segments.
fn upstream_view(p: &str, decode_all: bool, backslash: bool, cut: u8) -> String {
    let cut_params = |s: &str| {
        s.split('/')
            .map(|seg| seg.split(';').next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join("/")
    };
    let mut s = p.to_string();
    if cut == 1 {
        s = cut_params(&s);
    }
    if decode_all {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%'
                && i + 2 < b.len()
                && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
            {
                out.push(v);
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        s = String::from_utf8_lossy(&out).into_owned();
    }
    if backslash {
        s = s.replace('\\', "/");
    }
    if cut == 2 {
        s = cut_params(&s);
    }
    let mut segs: Vec<&str> = Vec::new();
    for seg in s.split('/').filter(|x| !x.is_empty()) {
        match seg {
            "." => {}
            ".." => {
                segs.pop();
            }
            _ => segs.push(seg),
        }
    }
    let trailing = s.ends_with('/') && !segs.is_empty();
    format!("/{}{}", segs.join("/"), if trailing { "/" } else { "" })
}

#[test]
fn unreserved_escapes_are_decoded_and_others_upper_cased() {
    assert_eq!(norm("/%6Awt/x").as_deref(), Ok("/jwt/x"));
    assert_eq!(norm("/a%7e%2D%5f%2E").as_deref(), Ok("/a~-_."));
    assert_eq!(norm("/a%2fb%3a").as_deref(), Ok("/a%2Fb%3A"));
    assert_eq!(norm("/a%20b").as_deref(), Ok("/a%20b"));
}

#[test]
fn duplicate_slashes_are_merged() {
    assert_eq!(norm("//jwt//x/").as_deref(), Ok("/jwt/x/"));
    assert_eq!(norm("///").as_deref(), Ok("/"));
}

#[test]
fn canonical_paths_are_borrowed_not_copied() {
    for p in ["/", "/api/v1/items", "/a%20b", "/jwt;p/x", "*", "/x.y/..z"] {
        let n = normalise(p).expect("canonical");
        assert!(!n.is_changed(), "{p}");
    }
}

#[test]
fn nul_bad_escapes_and_dot_segments_are_refused() {
    assert_eq!(norm("/a%00b"), Err(PathError::Nul));
    assert_eq!(norm("/a\0b"), Err(PathError::Nul));
    for bad in ["/a%", "/a%2", "/a%zz", "/%G1"] {
        assert_eq!(norm(bad), Err(PathError::BadEncoding), "{bad}");
    }
    for dots in ["/a/../b", "/a/%2e%2E/b", "/./x", "/a/.", "/a/.%2e"] {
        assert_eq!(norm(dots), Err(PathError::DotSegment), "{dots}");
    }
}

#[test]
fn an_encoded_slash_or_parameter_that_would_change_the_route_is_refused() {
    let route_of = |p: &str| route(&normalise(p)?, find, |a, b| a == b);
    assert_eq!(route_of("/jwt%2Fx"), Err(PathError::Ambiguous));
    assert_eq!(route_of("/jwt;p/x"), Err(PathError::Ambiguous));
    assert_eq!(route_of("/jwt\\x"), Err(PathError::Ambiguous));
    assert_eq!(route_of("/jwt%5cx"), Err(PathError::Ambiguous));
    assert_eq!(route_of("/x/..;/jwt"), Err(PathError::DotSegment));
    // The same bytes where every reading picks the same route are forwarded as they are.
    assert_eq!(route_of("/b/c%2Fd;e"), Ok(Some(3)));
    assert_eq!(route_of("/jwt/x%2Fy"), Ok(Some(1)));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn normalising_never_panics(s in "\\PC{0,40}") {
        let _ = normalise(&s).map(|n| n.readings());
    }

    #[test]
    fn normalising_twice_changes_nothing(
        parts in proptest::collection::vec(prop_oneof![
            Just("/"), Just("//"), Just("jwt"), Just("a"), Just("open"), Just("%2F"), Just("%2f"),
            Just("%5C"), Just("\\"), Just(";"), Just(";p"), Just("%3B"), Just("."), Just(".."),
            Just("%2e"), Just("%6A"), Just("%6a"), Just("%00"), Just("%"), Just("%G1"), Just("%41"),
            Just("~"), Just("%7E"), Just("%20"), Just("x"),
        ], 0..12)
    ) {
        let raw = format!("/{}", parts.concat());
        if let Ok(n) = normalise(&raw) {
            let again = normalise(n.as_str()).expect("a normal path normalises");
            prop_assert_eq!(again.as_str(), n.as_str());
            prop_assert!(!again.is_changed());
            prop_assert_eq!(again.is_ambiguous(), n.is_ambiguous());
            // What is forwarded routes as what was routed, however an upstream reads it.
            if let Ok(found) = route(&n, find, |a, b| a == b) {
                for decode_all in [false, true] {
                    for backslash in [false, true] {
                        for cut in 0..3 {
                            let seen = upstream_view(n.as_str(), decode_all, backslash, cut);
                            prop_assert_eq!(
                                find(&seen), found,
                                "{} forwarded as {}, read as {}", raw, n.as_str(), seen
                            );
                        }
                    }
                }
            }
        }
    }
}
