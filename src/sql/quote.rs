//! Quoting of what the compiler writes into SQL text: identifiers from the catalog and
//! literals from the schema (type names, enum labels, response keys). User values never pass
//! through here; they are bind parameters.

/// `"na""me"`: always quoted, so case and reserved words survive.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'it''s'`, for `standard_conforming_strings = on` (the default since PostgreSQL 9.1).
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_double_their_delimiters() {
        assert_eq!(ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(literal("it's"), "'it''s'");
    }
}
