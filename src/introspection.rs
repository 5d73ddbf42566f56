//! Answers `__schema` and `__type` from the [`Schema`] in Rust: no SQL is involved. The
//! result is written as JSON text, fields in the order they were selected.

use async_graphql_value::ConstValue;

use crate::graphql::json::{opt_quote, quote};
use crate::graphql::{FieldRef, Selected};
use crate::schema::{Directive, EnumValue, Field, InputValue, Kind, Schema, TypeId, TypeRef};

/// An object of the introspection types.
#[derive(Clone, Copy)]
enum Node<'s> {
    Schema,
    Type(&'s TypeRef),
    Named(TypeId),
    Field(&'s Field),
    InputValue(&'s InputValue),
    EnumValue(&'s EnumValue),
    Directive(&'s Directive),
}

/// Writes the value of a root `__schema` or `__type` selection.
pub fn resolve(schema: &Schema, sel: &Selected, out: &mut String) {
    match sel.field {
        FieldRef::Schema => object(schema, Node::Schema, &sel.children, out),
        FieldRef::Type => {
            let found = match sel.arg("name") {
                Some(ConstValue::String(n)) => schema.type_id(n),
                _ => None,
            };
            match found {
                Some(id) => object(schema, Node::Named(id), &sel.children, out),
                None => out.push_str("null"),
            }
        }
        _ => out.push_str("null"),
    }
}

fn type_name(schema: &Schema, id: TypeId) -> &'static str {
    match schema.ty(id).kind {
        Kind::Scalar(_) => "SCALAR",
        Kind::Object { .. } => "OBJECT",
        Kind::Enum { .. } => "ENUM",
        Kind::Input { .. } => "INPUT_OBJECT",
    }
}

fn list<'s, T>(
    schema: &'s Schema,
    items: impl Iterator<Item = T>,
    node: impl Fn(T) -> Node<'s>,
    sel: &[Selected],
    out: &mut String,
) where
    T: Copy,
{
    out.push('[');
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(',');
        }
        object(schema, node(item), sel, out);
    }
    out.push(']');
}

fn object<'s>(schema: &'s Schema, node: Node<'s>, sel: &[Selected], out: &mut String) {
    // A wrapper type and the named type it ends in behave alike from here.
    let node = match node {
        Node::Type(TypeRef::Named(id)) => Node::Named(*id),
        n => n,
    };
    out.push('{');
    for (i, s) in sel.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        quote(&s.key, out);
        out.push(':');
        if s.field == FieldRef::Typename {
            let name = match node {
                Node::Schema => "__Schema",
                Node::Type(_) | Node::Named(_) => "__Type",
                Node::Field(_) => "__Field",
                Node::InputValue(_) => "__InputValue",
                Node::EnumValue(_) => "__EnumValue",
                Node::Directive(_) => "__Directive",
            };
            quote(name, out);
            continue;
        }
        value(schema, node, s, out);
    }
    out.push('}');
}

fn value<'s>(schema: &'s Schema, node: Node<'s>, s: &Selected, out: &mut String) {
    let c = &s.children;
    let name = s.name.as_str();
    match (node, name) {
        (Node::Schema, "description") => out.push_str("null"),
        (Node::Schema, "types") => list(schema, 0..schema.types.len(), Node::Named, c, out),
        (Node::Schema, "queryType") => object(schema, Node::Named(schema.query), c, out),
        (Node::Schema, "mutationType") => match schema.mutation {
            Some(root) => object(schema, Node::Named(root), c, out),
            None => out.push_str("null"),
        },
        (Node::Schema, "subscriptionType") => {
            object(schema, Node::Named(schema.subscription), c, out)
        }
        (Node::Schema, "directives") => {
            list(schema, schema.directives.iter(), Node::Directive, c, out)
        }
        (Node::Type(t), _) => wrapper(schema, t, s, out),
        (Node::Named(id), _) => named(schema, id, s, out),
        (Node::Field(f), "name") => quote(&f.name, out),
        (Node::Field(f), "description") => opt_quote(f.description.as_deref(), out),
        (Node::Field(f), "args") => list(schema, f.args.iter(), Node::InputValue, c, out),
        (Node::Field(f), "type") => object(schema, Node::Type(&f.ty), c, out),
        (Node::InputValue(v), "name") => quote(&v.name, out),
        (Node::InputValue(v), "description") => opt_quote(v.description.as_deref(), out),
        (Node::InputValue(v), "type") => object(schema, Node::Type(&v.ty), c, out),
        (Node::InputValue(v), "defaultValue") => opt_quote(v.default, out),
        (Node::EnumValue(v), "name") => quote(&v.name, out),
        (Node::EnumValue(v), "description") => opt_quote(v.description.as_deref(), out),
        (Node::Directive(d), "name") => quote(d.name, out),
        (Node::Directive(d), "description") => quote(d.description, out),
        (Node::Directive(_), "isRepeatable") => out.push_str("false"),
        (Node::Directive(d), "locations") => {
            out.push('[');
            for (i, l) in d.locations.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                quote(l, out);
            }
            out.push(']');
        }
        (Node::Directive(d), "args") => list(schema, d.args.iter(), Node::InputValue, c, out),
        (_, "isDeprecated") => out.push_str("false"),
        _ => out.push_str("null"),
    }
}

/// `__Type` fields of a `LIST` or `NON_NULL` wrapper.
fn wrapper<'s>(schema: &'s Schema, t: &'s TypeRef, s: &Selected, out: &mut String) {
    let (kind, inner) = match t {
        TypeRef::List(inner) => ("LIST", inner),
        TypeRef::NonNull(inner) => ("NON_NULL", inner),
        TypeRef::Named(id) => return named(schema, *id, s, out),
    };
    match s.name.as_str() {
        "kind" => quote(kind, out),
        "ofType" => object(schema, Node::Type(inner), &s.children, out),
        _ => out.push_str("null"),
    }
}

/// `__Type` fields of a named type.
fn named(schema: &Schema, id: TypeId, s: &Selected, out: &mut String) {
    let def = schema.ty(id);
    let c = &s.children;
    match (s.name.as_str(), &def.kind) {
        ("kind", _) => quote(type_name(schema, id), out),
        ("name", _) => quote(&def.name, out),
        ("description", _) => opt_quote(def.description.as_deref(), out),
        ("fields", Kind::Object { fields, .. }) => list(schema, fields.iter(), Node::Field, c, out),
        ("interfaces", Kind::Object { .. }) => out.push_str("[]"),
        ("enumValues", Kind::Enum { values, .. }) => {
            list(schema, values.iter(), Node::EnumValue, c, out)
        }
        ("inputFields", Kind::Input { fields, .. }) => {
            list(schema, fields.iter(), Node::InputValue, c, out)
        }
        ("isOneOf", Kind::Input { .. }) => out.push_str("false"),
        _ => out.push_str("null"),
    }
}
