//! `include/p11kms.h` and `protocol::vendor` must define the same constants.

use std::collections::BTreeMap;

#[test]
fn header_matches_rust_constants() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../include/p11kms.h");
    let text = std::fs::read_to_string(path).expect("read include/p11kms.h");
    let mut header = BTreeMap::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("#define") {
            continue;
        }
        let (Some(name), Some(value)) = (words.next(), words.next()) else {
            continue;
        };
        let value = value.trim_end_matches("UL");
        let parsed = match value.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => value.parse(),
        };
        if let Ok(v) = parsed {
            header.insert(name.to_string(), v);
        }
    }
    let rust: BTreeMap<String, u64> = p11kms_protocol::vendor::ALL
        .iter()
        .map(|(n, v)| ((*n).to_string(), *v))
        .collect();
    assert_eq!(
        header, rust,
        "include/p11kms.h and protocol/src/vendor.rs disagree"
    );
}
