//! The nesting bound on client text, checked before any recursive parser or walker sees it.
//!
//! The GraphQL parser (pest), the JSON value builder and every walk over their values
//! recurse once per level of nesting, so a few kilobytes of `[[[[…` would overflow a shard's
//! stack and abort the whole process. These scans find the deepest nesting in one pass over
//! the bytes, with no recursion and no allocation, and stop as soon as it passes the limit
//! (`POSTRUST_MAX_INPUT_DEPTH`). Text that passes bounds every later recursion by the limit.

/// The text nests deeper than allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooDeep {
    pub limit: usize,
}

impl std::fmt::Display for TooDeep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the input nests deeper than {} levels of brackets",
            self.limit
        )
    }
}

/// Checks a GraphQL document: `{`, `[` and `(` outside strings, block strings and comments.
pub fn check_graphql(text: &str, limit: usize) -> Result<(), TooDeep> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'{' | b'[' | b'(' => {
                depth += 1;
                if depth > limit {
                    return Err(TooDeep { limit });
                }
            }
            // An unbalanced closer is the parser's error to report; depth only stays >= 0.
            b'}' | b']' | b')' => depth = depth.saturating_sub(1),
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' && bytes[i] != b'\r' {
                    i += 1;
                }
            }
            b'"' if bytes[i..].starts_with(b"\"\"\"") => {
                // A block string ends at the next `"""` not escaped as `\"""`.
                i += 3;
                while i < bytes.len() && !bytes[i..].starts_with(b"\"\"\"") {
                    i += if bytes[i..].starts_with(b"\\\"\"\"") {
                        4
                    } else {
                        1
                    };
                }
                i += 2;
            }
            b'"' => i = string_end(bytes, i + 1),
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// Checks a JSON text: `{` and `[` outside strings.
pub fn check_json(bytes: &[u8], limit: usize) -> Result<(), TooDeep> {
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'{' | b'[' => {
                depth += 1;
                if depth > limit {
                    return Err(TooDeep { limit });
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            b'"' => i = string_end(bytes, i + 1),
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// The index of the quote closing a string whose content starts at `i` (or the end of the
/// text when it is unterminated), skipping backslash escapes. Shared by JSON and GraphQL,
/// whose single-line strings escape the same way.
fn string_end(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return i,
            _ => i += 1,
        }
    }
    bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(open: &str, close: &str, n: usize) -> String {
        format!("{}1{}", open.repeat(n), close.repeat(n))
    }

    #[test]
    fn graphql_depth_counts_every_kind_of_bracket() {
        let doc = "{ a(f: {in: [1]}) { b } }";
        assert!(check_graphql(doc, 4).is_ok());
        assert_eq!(check_graphql(doc, 3), Err(TooDeep { limit: 3 }));
        let deep = format!(
            "{{ products(filter: {{id: {{in: {}}}}}) {{ id }} }}",
            nested("[", "]", 1600)
        );
        assert!(check_graphql(&deep, 64).is_err());
    }

    #[test]
    fn brackets_in_strings_and_comments_do_not_count() {
        let doc = "{ a(s: \"[[[[\\\"[[[\", t: \"\"\"{{{{ \\\"\"\" [[[[\"\"\") # ((((\n }";
        assert!(check_graphql(doc, 2).is_ok(), "{doc}");
        let json = br#"{"q": "[[[[\"{{{{", "v": [1]}"#;
        assert!(check_json(json, 2).is_ok());
        assert!(check_json(json, 1).is_err());
    }

    #[test]
    fn unbalanced_and_unterminated_input_ends_the_scan_without_error() {
        assert!(check_graphql("}}}]]) {", 1).is_ok());
        assert!(check_graphql("\"[[[[", 1).is_ok());
        assert!(check_graphql("\"\"\"[[[[", 1).is_ok());
        assert!(check_json(b"\"\\", 1).is_ok());
        assert!(check_json(nested("[", "]", 3).as_bytes(), 2).is_err());
    }
}
