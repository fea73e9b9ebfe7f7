//! App files built to hurt a reader: nesting far past any real Info.plist or network security
//! config, and a binary plist whose shared references double what a reader expands per level.
//! Each comes with the limit the proxy must name when it refuses it.
#![allow(dead_code)]

/// `(what, bytes, the limit named in the refusal)` for every hostile app file of issue 24.
pub fn app_files() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    const DEPTH: &str = "64 levels of nesting";
    const SIZE: &str = "1 MiB (1048576 bytes)";
    const VALUES: &str = "100000 values";
    vec![
        ("XML plist 50 000 deep", xml_plist(50_000), DEPTH),
        ("XML plist 1 000 000 deep", xml_plist(1_000_000), SIZE),
        ("binary plist 50 000 deep", bplist_chain(50_000, 1), DEPTH),
        (
            "binary plist 1 000 000 deep",
            bplist_chain(1_000_000, 1),
            SIZE,
        ),
        ("binary plist bomb, 33 levels", bplist_chain(33, 2), VALUES),
        ("binary plist bomb, 45 levels", bplist_chain(45, 2), VALUES),
        ("Android config 60 000 deep", android(60_000), SIZE),
        ("Android config 30 000 deep", android(30_000), DEPTH),
    ]
}

fn xml_plist(levels: usize) -> Vec<u8> {
    format!(
        "<plist>{}{}</plist>",
        "<array>".repeat(levels),
        "</array>".repeat(levels)
    )
    .into_bytes()
}

fn android(levels: usize) -> Vec<u8> {
    format!(
        "<network-security-config>{}{}</network-security-config>",
        "<domain-config>".repeat(levels),
        "</domain-config>".repeat(levels)
    )
    .into_bytes()
}

/// A binary plist of `levels` arrays, each holding `refs` references to the next one (one
/// reference: plain nesting; two: every level doubles what a reader expands, so 33 levels in
/// about 400 bytes stand for 2^33 values).
fn bplist_chain(levels: usize, refs: usize) -> Vec<u8> {
    let ref_size: usize = if levels < 255 { 1 } else { 4 };
    let be = |v: usize, n: usize| v.to_be_bytes()[8 - n..].to_vec();
    let mut out = b"bplist00".to_vec();
    let mut offsets = Vec::new();
    for i in 0..levels {
        offsets.push(out.len());
        out.push(0xa0 | refs as u8);
        for _ in 0..refs {
            out.extend(be(i + 1, ref_size));
        }
    }
    offsets.push(out.len());
    out.push(0x08); // false: the innermost value
    let table = out.len();
    for o in &offsets {
        out.extend(be(*o, 8));
    }
    out.extend([0u8; 6]);
    out.push(8);
    out.push(ref_size as u8);
    out.extend(be(offsets.len(), 8));
    out.extend(be(0, 8));
    out.extend(be(table, 8));
    out
}
