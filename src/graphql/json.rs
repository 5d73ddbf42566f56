//! The little JSON writing the GraphQL layer needs (errors, introspection results), in the
//! order fields were selected, which a map-based JSON value would not keep.

use std::fmt::Write;

/// Appends `s` as a JSON string literal.
pub fn quote(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A JSON string literal, or `null`.
pub fn opt_quote(s: Option<&str>, out: &mut String) {
    match s {
        Some(s) => quote(s, out),
        None => out.push_str("null"),
    }
}

/// JSON text without whitespace between tokens, key order and string contents untouched.
/// PostgreSQL's `json_build_object` writes `"a" : 1, "b" : 2`; this makes results smaller
/// for fan-out and byte-comparable however they were produced.
pub fn compact(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in json.chars() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !c.is_ascii_whitespace() {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compacts_between_tokens_only() {
        assert_eq!(
            compact("{\"a b\" : [1, \n 2], \"c\" : \"x \\\" y\"}"),
            r#"{"a b":[1,2],"c":"x \" y"}"#
        );
    }

    #[test]
    fn escapes_what_json_requires() {
        let mut out = String::new();
        quote("a\"b\\c\nd\u{1}é", &mut out);
        assert_eq!(out, r#""a\"b\\c\nd\u0001é""#);
    }
}
