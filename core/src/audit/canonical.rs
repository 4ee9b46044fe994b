//! The canonical JSON text that audit hashes and signatures are computed over.
//!
//! Compact (no whitespace), object keys sorted by their UTF-8 bytes at every depth, strings
//! escaped as `serde_json` writes them (only `"`, `\` and control characters; `\b \f \n \r \t`
//! short forms, other controls as `\u00xx`; everything else as raw UTF-8), integers in decimal,
//! other numbers in the shortest form that reads back to the same `f64` (`ryu`: `1.5`, `0.0001`,
//! `1e16`, `1.2e-7`). `docs/audit.md` describes it for re-implementers.

use serde_json::Value;

/// The canonical text of `value`.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_sorted_at_every_depth_and_nothing_is_padded() {
        let v: Value =
            serde_json::from_str(r#"{"b": 1, "a": {"y": [2, {"q": 1, "p": "é\n"}], "x": null}}"#)
                .unwrap();
        assert_eq!(
            canonical_json(&v),
            r#"{"a":{"x":null,"y":[2,{"p":"é\n","q":1}]},"b":1}"#
        );
    }

    #[test]
    fn numbers_use_the_shortest_round_trip_form() {
        let v: Value = serde_json::from_str(
            "[1.5, 0.0001, 0.00001, 1e15, 1e16, 1.2e-7, 3.0, -7, 123456789.125, 1e300, 5e-324, 1.2345e23]",
        )
        .unwrap();
        assert_eq!(
            canonical_json(&v),
            "[1.5,0.0001,0.00001,1000000000000000.0,1e+16,1.2e-7,3.0,-7,123456789.125,1e+300,5e-324,1.2345e+23]"
        );
    }
}
