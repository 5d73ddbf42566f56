//! PostgreSQL identifiers to GraphQL names, and the deterministic resolution of collisions.
//! The rules are written for users in `docs/naming.md`; the tests below pin them.

use std::collections::HashSet;

/// Splits an identifier into words on `_` and on anything a GraphQL name cannot hold.
fn words(ident: &str) -> Vec<&str> {
    ident
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect()
}

fn upper_first(word: &str, out: &mut String) {
    let mut chars = word.chars();
    if let Some(c) = chars.next() {
        out.push(c.to_ascii_uppercase());
        out.push_str(chars.as_str());
    }
}

/// A GraphQL name cannot start with a digit nor be empty.
fn guard(mut name: String) -> String {
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, '_');
    }
    name
}

/// `sales_dashboard` -> `salesDashboard`, `updated_at` -> `updatedAt`.
pub fn lower_camel(ident: &str) -> String {
    let mut out = String::with_capacity(ident.len());
    for (i, w) in words(ident).into_iter().enumerate() {
        if i == 0 {
            let mut chars = w.chars();
            if let Some(c) = chars.next() {
                out.push(c.to_ascii_lowercase());
                out.push_str(chars.as_str());
            }
        } else {
            upper_first(w, &mut out);
        }
    }
    guard(out)
}

/// `product_sales` -> `ProductSales`: type names.
pub fn upper_camel(ident: &str) -> String {
    let mut out = String::with_capacity(ident.len());
    for w in words(ident) {
        upper_first(w, &mut out);
    }
    guard(out)
}

/// The name of the many-to-one field for a foreign key's columns: the column without its
/// `_id` suffix (`customer_id` -> `customer`); several columns use the referenced table.
pub fn to_one_name(columns: &[String], referenced_table: &str) -> String {
    match columns {
        [one] => {
            let base = one
                .strip_suffix("_id")
                .or_else(|| one.strip_suffix("Id"))
                .filter(|b| !b.is_empty())
                .unwrap_or(one);
            lower_camel(base)
        }
        _ => lower_camel(referenced_table),
    }
}

/// `By` and the columns joined with `And`, for a relation whose short name is ambiguous:
/// `ordersByBillingCustomerId`.
pub fn by_columns(short: &str, columns: &[String]) -> String {
    let mut out = format!("{short}By");
    for (i, c) in columns.iter().enumerate() {
        if i > 0 {
            out.push_str("And");
        }
        out.push_str(&upper_camel(c));
    }
    out
}

/// Hands out names unique within one scope (the types of a schema, the fields of a type):
/// the first claimant keeps a name, later ones get `2`, `3`, ... appended.
#[derive(Debug, Default)]
pub struct Namespace {
    taken: HashSet<String>,
}

impl Namespace {
    pub fn is_taken(&self, name: &str) -> bool {
        self.taken.contains(name)
    }

    pub fn claim(&mut self, wanted: String) -> String {
        if self.taken.insert(wanted.clone()) {
            return wanted;
        }
        (2..)
            .map(|n| format!("{wanted}{n}"))
            .find(|n| self.taken.insert(n.clone()))
            .expect("an unused suffix exists")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn camel_cases() {
        assert_eq!(lower_camel("sales_dashboard"), "salesDashboard");
        assert_eq!(lower_camel("updated_at"), "updatedAt");
        assert_eq!(lower_camel("id"), "id");
        assert_eq!(lower_camel("_private__x_"), "privateX");
        assert_eq!(lower_camel("Weird Name!"), "weirdName");
        assert_eq!(lower_camel("2fa_code"), "_2faCode");
        assert_eq!(lower_camel("ключ"), "_");
        assert_eq!(upper_camel("product_sales"), "ProductSales");
        assert_eq!(upper_camel("orders"), "Orders");
    }

    #[test]
    fn relation_names() {
        assert_eq!(
            to_one_name(&["customer_id".into()], "customers"),
            "customer"
        );
        assert_eq!(to_one_name(&["authorId".into()], "people"), "author");
        assert_eq!(to_one_name(&["owner".into()], "people"), "owner");
        assert_eq!(
            to_one_name(&["region".into(), "code".into()], "warehouses"),
            "warehouses"
        );
        let cols = ["billing_customer_id".to_owned()];
        assert_eq!(by_columns("orders", &cols), "ordersByBillingCustomerId");
    }

    #[test]
    fn later_claimants_get_a_number() {
        let mut ns = Namespace::default();
        assert_eq!(ns.claim("orders".into()), "orders");
        assert_eq!(ns.claim("orders".into()), "orders2");
        assert_eq!(ns.claim("orders".into()), "orders3");
        assert!(ns.is_taken("orders2"));
    }
}
