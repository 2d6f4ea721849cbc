//! The golden vectors of the canonical encoding (`protocols/vectors/canonical.json`):
//! every input encodes to exactly its canonical text, and canonical text is a fixed point.

use axon_protocols::canonical;
use serde_json::Value;

#[test]
fn golden_vectors() {
    let file: Value = serde_json::from_str(include_str!("../vectors/canonical.json")).unwrap();
    let vectors = file["vectors"].as_array().unwrap();
    assert!(vectors.len() >= 4);
    for v in vectors {
        let name = v["name"].as_str().unwrap();
        let input: Value = serde_json::from_str(v["input"].as_str().unwrap()).unwrap();
        let want = v["canonical"].as_str().unwrap();
        assert_eq!(canonical::to_string(&input).unwrap(), want, "{name}");
        let again: Value = serde_json::from_str(want).unwrap();
        assert_eq!(
            canonical::to_string(&again).unwrap(),
            want,
            "{name}: not a fixed point"
        );
    }
}
