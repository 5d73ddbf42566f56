//! Several runs of one compiled statement, differing only in their parameters, as one
//! statement: the parameters of each run travel as arrays, unnested into one row per run,
//! and the statement runs once per row (`CROSS JOIN LATERAL`), all under the same role and
//! claims and in one snapshot.
//!
//! ```sql
//! SELECT string_agg(coalesce(q.v, 'null'), chr(30) ORDER BY "postrust mux".i)
//! FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS "postrust mux"(p1, p2, i)
//! CROSS JOIN LATERAL (<the statement, $k read as "postrust mux".pk>) AS q(v)
//! ```
//!
//! The answers come back in one text value, in run order, separated by the record separator
//! (U+001E), which PostgreSQL's JSON output never leaves unescaped. Every placeholder the
//! compiler writes is read as text first (`$k::text::…`), so reading it from a text column
//! instead means the same. All runs share one snapshot, and a part of the statement that
//! reads no parameter may be computed once for all of them; the compiler's statements call
//! no volatile function, so neither changes what they return.

/// The alias of the unnested row: quoted, with a space, so that no alias the compiler
/// writes (`t1`, `o`, `v`, …) can take it.
const ROW: &str = "\"postrust mux\"";

/// What separates the runs' answers in the multiplexed statement's value.
pub const SEPARATOR: char = '\u{1e}';

/// The statement that runs `sql` (with `params` placeholders `$1`…`$params`) once per run,
/// each run's parameters in arrays `$1`…`$params`.
pub fn multiplexed(sql: &str, params: usize) -> String {
    let arrays: Vec<String> = (1..=params).map(|k| format!("${k}::text[]")).collect();
    let mut columns: Vec<String> = (1..=params).map(|k| format!("p{k}")).collect();
    columns.push("i".into());
    // With no parameters there is nothing to tell runs apart: unnest one array of run
    // numbers instead, sent as `$1`.
    let source = if params == 0 {
        format!("unnest($1::int[]) WITH ORDINALITY AS {ROW}(n, i)")
    } else {
        format!(
            "unnest({}) WITH ORDINALITY AS {ROW}({})",
            arrays.join(", "),
            columns.join(", ")
        )
    };
    format!(
        "SELECT string_agg(coalesce(q.v, 'null'), chr(30) ORDER BY {ROW}.i) FROM {source} \
         CROSS JOIN LATERAL ({}) AS q(v)",
        read_from_rows(sql)
    )
}

/// `sql` with every placeholder `$k` read from the unnested row (`"postrust mux".pk`). Placeholders are
/// found outside quoted identifiers and string literals, the only quoting the compiler
/// writes.
fn read_from_rows(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut chars = sql.char_indices().peekable();
    let mut quote: Option<char> = None;
    while let Some((_, c)) = chars.next() {
        match quote {
            // A doubled delimiter inside stays inside; a single one closes.
            Some(q) if c == q => {
                out.push(c);
                if chars.peek().is_some_and(|&(_, n)| n == q) {
                    out.push(q);
                    chars.next();
                } else {
                    quote = None;
                }
            }
            Some(_) => out.push(c),
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                out.push(c);
            }
            None if c == '$' && chars.peek().is_some_and(|(_, n)| n.is_ascii_digit()) => {
                out.push_str(ROW);
                out.push_str(".p");
                while let Some(&(_, d)) = chars.peek() {
                    if !d.is_ascii_digit() {
                        break;
                    }
                    out.push(d);
                    chars.next();
                }
            }
            None => out.push(c),
        }
    }
    out
}

/// A text array literal (`{"a","b\"c"}`) of `values`, for one `$k::text[]` parameter.
pub fn array(values: impl IntoIterator<Item = impl AsRef<str>>) -> String {
    let mut out = String::from("{");
    for (i, v) in values.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('"');
        for c in v.as_ref().chars() {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
    }
    out.push('}');
    out
}

/// The parameters of the multiplexed statement for `runs`, each run's parameters in
/// order (all runs have as many as the statement has placeholders).
pub fn params(runs: &[&[String]]) -> Vec<String> {
    let width = runs.first().map_or(0, |r| r.len());
    if width == 0 {
        return vec![array((1..=runs.len()).map(|n| n.to_string()))];
    }
    (0..width)
        .map(|k| array(runs.iter().map(|run| run[k].as_str())))
        .collect()
}

/// The answers of the runs, in order, from the multiplexed statement's value.
pub fn answers(value: &str) -> impl Iterator<Item = &str> {
    value.split(SEPARATOR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_read_from_the_row_and_quoted_text_is_left_alone() {
        let sql = r#"SELECT "a$1", '$2 it''s', "we""$3" FROM t WHERE x = $1::text::int AND y = $12::text"#;
        assert_eq!(
            read_from_rows(sql),
            r#"SELECT "a$1", '$2 it''s', "we""$3" FROM t WHERE x = "postrust mux".p1::text::int AND y = "postrust mux".p12::text"#
        );
    }

    #[test]
    fn the_statement_unnests_one_array_per_placeholder() {
        let sql = multiplexed("SELECT $1::text || $2::text", 2);
        assert_eq!(
            sql,
            "SELECT string_agg(coalesce(q.v, 'null'), chr(30) ORDER BY \"postrust mux\".i) FROM \
             unnest($1::text[], $2::text[]) WITH ORDINALITY AS \"postrust mux\"(p1, p2, i) \
             CROSS JOIN LATERAL (SELECT \"postrust mux\".p1::text || \"postrust mux\".p2::text) AS q(v)"
        );
        assert!(multiplexed("SELECT 1", 0).contains("unnest($1::int[])"));
    }

    #[test]
    fn arrays_escape_quotes_and_backslashes() {
        assert_eq!(
            array(["a", "b\"c", "d\\e", "", "{x,y}"]),
            r#"{"a","b\"c","d\\e","","{x,y}"}"#
        );
        let a = vec!["1".to_owned(), "x".to_owned()];
        let b = vec!["2".to_owned(), "y".to_owned()];
        assert_eq!(
            params(&[&a, &b]),
            vec![r#"{"1","2"}"#.to_owned(), r#"{"x","y"}"#.to_owned()]
        );
        assert_eq!(params(&[&[], &[]]), vec![r#"{"1","2"}"#.to_owned()]);
        assert_eq!(
            answers("{\"a\":1}\u{1e}null").collect::<Vec<_>>(),
            ["{\"a\":1}", "null"]
        );
    }
}
