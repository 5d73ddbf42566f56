//! Input values: checking literals against input types (the spec's "Values of Correct Type"),
//! coercing variable values given as JSON, and substituting variables into arguments.

use std::collections::HashMap;

use async_graphql_parser::Pos;
use async_graphql_parser::types::{BaseType, Type};
use async_graphql_value::{ConstValue, Name, Number, Value};
use indexmap::IndexMap;
use simd_json::OwnedValue;
use simd_json::prelude::*;

use crate::schema::{Kind, Scalar, Schema, TypeRef};

/// Where a variable is used and the type expected there.
#[derive(Debug, Clone)]
pub struct Usage {
    pub name: String,
    pub pos: Pos,
    pub expected: TypeRef,
    /// The position has a default (an input field or argument default), so null is allowed.
    pub location_default: bool,
}

/// The schema type for a type written in a variable definition.
pub fn resolve_type(schema: &Schema, t: &Type) -> Result<TypeRef, String> {
    let base = match &t.base {
        BaseType::Named(name) => {
            TypeRef::Named(schema.type_id(name).ok_or_else(|| name.to_string())?)
        }
        BaseType::List(inner) => resolve_type(schema, inner)?.list(),
    };
    Ok(if t.nullable { base } else { base.non_null() })
}

/// A variable of type `var` may be used where `expected` is wanted.
pub fn is_subtype(var: &TypeRef, expected: &TypeRef) -> bool {
    match (var, expected) {
        (TypeRef::NonNull(v), TypeRef::NonNull(e)) => is_subtype(v, e),
        (_, TypeRef::NonNull(_)) => false,
        (TypeRef::NonNull(v), e) => is_subtype(v, e),
        (TypeRef::List(v), TypeRef::List(e)) => is_subtype(v, e),
        (TypeRef::Named(v), TypeRef::Named(e)) => v == e,
        _ => false,
    }
}

fn scalar_literal_ok(scalar: Scalar, v: &Value) -> bool {
    match (scalar, v) {
        (Scalar::Int, Value::Number(n)) => n.as_i64().is_some_and(|i| i32::try_from(i).is_ok()),
        (Scalar::Float | Scalar::BigFloat, Value::Number(_)) => true,
        (Scalar::BigInt, Value::Number(n)) => n.is_i64() || n.is_u64(),
        (Scalar::Id, Value::Number(n)) => n.is_i64(),
        (Scalar::Boolean, Value::Boolean(_)) => true,
        (Scalar::Json, _) => true,
        (Scalar::BigInt, Value::String(s)) => s.trim_start_matches('-').parse::<u64>().is_ok(),
        (Scalar::BigFloat, Value::String(s)) => s.parse::<f64>().is_ok(),
        (
            Scalar::String | Scalar::Id | Scalar::Datetime | Scalar::Date | Scalar::Uuid,
            Value::String(_),
        ) => true,
        _ => false,
    }
}

/// graphql-js's wording for a literal the built-in scalars refuse.
fn scalar_message(scalar: Scalar, v: &Value) -> Option<String> {
    Some(match scalar {
        Scalar::Int if matches!(v, Value::Number(n) if n.is_i64()) => {
            format!("Int cannot represent non 32-bit signed integer value: {v}")
        }
        Scalar::Int => format!("Int cannot represent non-integer value: {v}"),
        Scalar::Float => format!("Float cannot represent non numeric value: {v}"),
        Scalar::String => format!("String cannot represent a non string value: {v}"),
        Scalar::Boolean => format!("Boolean cannot represent a non boolean value: {v}"),
        Scalar::Id => format!("ID cannot represent a non-string and non-integer value: {v}"),
        _ => return None,
    })
}

/// Checks a literal against `ty`, pushing one message per problem and recording variables.
/// Recurses once per level of the literal: at most `POSTRUST_MAX_INPUT_DEPTH` levels,
/// checked on the document before it is parsed.
pub fn check_literal(
    schema: &Schema,
    value: &Value,
    ty: &TypeRef,
    pos: Pos,
    location_default: bool,
    usages: &mut Vec<Usage>,
    errors: &mut Vec<String>,
) {
    if let Value::Variable(name) = value {
        usages.push(Usage {
            name: name.to_string(),
            pos,
            expected: ty.clone(),
            location_default,
        });
        return;
    }
    let expected = || {
        format!(
            "Expected value of type \"{}\", found {value}.",
            schema.display(ty)
        )
    };
    match ty {
        TypeRef::NonNull(inner) => {
            if matches!(value, Value::Null) {
                errors.push(expected());
            } else {
                check_literal(schema, value, inner, pos, false, usages, errors);
            }
        }
        _ if matches!(value, Value::Null) => {}
        TypeRef::List(inner) => match value {
            Value::List(items) => {
                for item in items {
                    check_literal(schema, item, inner, pos, false, usages, errors);
                }
            }
            other => check_literal(schema, other, inner, pos, false, usages, errors),
        },
        TypeRef::Named(id) => match &schema.ty(*id).kind {
            Kind::Scalar(s) => {
                if !scalar_literal_ok(*s, value) {
                    errors.push(scalar_message(*s, value).unwrap_or_else(expected));
                }
            }
            Kind::Enum { values, .. } => match value {
                Value::Enum(n) if values.iter().any(|v| v.name == n.as_str()) => {}
                Value::Enum(n) => errors.push(format!(
                    "Value \"{n}\" does not exist in \"{}\" enum.",
                    schema.name(*id)
                )),
                other => errors.push(format!(
                    "Enum \"{}\" cannot represent non-enum value: {other}.",
                    schema.name(*id)
                )),
            },
            Kind::Input { fields, .. } => match value {
                Value::Object(map) => {
                    for (k, v) in map {
                        match fields.iter().find(|f| f.name == k.as_str()) {
                            Some(f) => check_literal(
                                schema,
                                v,
                                &f.ty,
                                pos,
                                f.default.is_some(),
                                usages,
                                errors,
                            ),
                            None => errors.push(format!(
                                "Field \"{k}\" is not defined by type \"{}\".",
                                schema.name(*id)
                            )),
                        }
                    }
                    for f in fields {
                        if matches!(f.ty, TypeRef::NonNull(_))
                            && f.default.is_none()
                            && !map.contains_key(f.name.as_str())
                        {
                            errors.push(format!(
                                "Field \"{}.{}\" of required type \"{}\" was not provided.",
                                schema.name(*id),
                                f.name,
                                schema.display(&f.ty)
                            ));
                        }
                    }
                }
                _ => errors.push(expected()),
            },
            Kind::Object { .. } => errors.push(expected()),
        },
    }
}

/// Replaces variables by their coerced values and wraps single values given for lists.
/// Only called on literals that passed [`check_literal`]; recurses as deep as it did.
pub fn coerce_literal(
    value: &Value,
    ty: &TypeRef,
    schema: &Schema,
    vars: &HashMap<String, ConstValue>,
) -> Option<ConstValue> {
    if let Value::Variable(name) = value {
        return vars.get(name.as_str()).cloned();
    }
    let inner = match ty {
        TypeRef::NonNull(inner) => return coerce_literal(value, inner, schema, vars),
        _ if matches!(value, Value::Null) => return Some(ConstValue::Null),
        TypeRef::List(inner) => inner,
        TypeRef::Named(id) => {
            return Some(match (value, &schema.ty(*id).kind) {
                (Value::Object(map), Kind::Input { fields, .. }) => {
                    let mut out = IndexMap::new();
                    for (k, v) in map {
                        if let Some(f) = fields.iter().find(|f| f.name == k.as_str())
                            && let Some(c) = coerce_literal(v, &f.ty, schema, vars)
                        {
                            out.insert(k.clone(), c);
                        }
                    }
                    ConstValue::Object(out)
                }
                (v, _) => v.clone().into_const()?,
            });
        }
    };
    Some(match value {
        Value::List(items) => ConstValue::List(
            items
                .iter()
                .map(|i| coerce_literal(i, inner, schema, vars).unwrap_or(ConstValue::Null))
                .collect(),
        ),
        other => ConstValue::List(vec![coerce_literal(other, inner, schema, vars)?]),
    })
}

fn json_number(v: &OwnedValue) -> Option<Number> {
    if let Some(i) = v.as_i64() {
        Some(Number::from(i))
    } else if let Some(u) = v.as_u64() {
        Some(Number::from(u))
    } else {
        v.as_f64().and_then(Number::from_f64)
    }
}

/// Any JSON value as a GraphQL constant (for the `JSON` scalar). Recurses once per level:
/// at most `POSTRUST_MAX_INPUT_DEPTH`, checked on the message before it is parsed.
pub fn json_to_const(v: &OwnedValue) -> ConstValue {
    if v.is_null() {
        ConstValue::Null
    } else if let Some(b) = v.as_bool() {
        ConstValue::Boolean(b)
    } else if let Some(s) = v.as_str() {
        ConstValue::String(s.to_owned())
    } else if let Some(items) = v.as_array() {
        ConstValue::List(items.iter().map(json_to_const).collect())
    } else if let Some(map) = v.as_object() {
        ConstValue::Object(
            map.iter()
                .map(|(k, v)| (Name::new(k), json_to_const(v)))
                .collect(),
        )
    } else {
        json_number(v).map_or(ConstValue::Null, ConstValue::Number)
    }
}

fn scalar_from_json(scalar: Scalar, v: &OwnedValue) -> Option<ConstValue> {
    let n = json_number(v);
    match scalar {
        Scalar::Json => Some(json_to_const(v)),
        Scalar::Int => n
            .filter(|n| n.as_i64().is_some_and(|i| i32::try_from(i).is_ok()))
            .map(ConstValue::Number),
        Scalar::Float => n.map(ConstValue::Number),
        Scalar::Boolean => v.as_bool().map(ConstValue::Boolean),
        Scalar::BigInt | Scalar::BigFloat | Scalar::Id if n.is_some() => {
            let n = n?;
            let ok = scalar == Scalar::BigFloat || n.is_i64() || n.is_u64();
            ok.then_some(ConstValue::Number(n))
        }
        _ => {
            let s = v.as_str()?;
            let lit = Value::String(s.to_owned());
            scalar_literal_ok(scalar, &lit).then(|| ConstValue::String(s.to_owned()))
        }
    }
}

/// Coerces a variable's JSON value to `ty`; the error says why it does not fit. Recurses
/// once per level of the value: at most `POSTRUST_MAX_INPUT_DEPTH`, checked on the message
/// before it is parsed.
pub fn coerce_json(schema: &Schema, v: &OwnedValue, ty: &TypeRef) -> Result<ConstValue, String> {
    match ty {
        TypeRef::NonNull(inner) => {
            if v.is_null() {
                Err(format!(
                    "Expected non-nullable type \"{}\" not to be null.",
                    schema.display(ty)
                ))
            } else {
                coerce_json(schema, v, inner)
            }
        }
        _ if v.is_null() => Ok(ConstValue::Null),
        TypeRef::List(inner) => match v.as_array() {
            Some(items) => items
                .iter()
                .map(|i| coerce_json(schema, i, inner))
                .collect::<Result<_, _>>()
                .map(ConstValue::List),
            None => Ok(ConstValue::List(vec![coerce_json(schema, v, inner)?])),
        },
        TypeRef::Named(id) => {
            let name = schema.name(*id);
            match &schema.ty(*id).kind {
                Kind::Scalar(s) => {
                    scalar_from_json(*s, v).ok_or_else(|| format!("Expected type \"{name}\"."))
                }
                Kind::Enum { values, .. } => match v.as_str() {
                    Some(s) if values.iter().any(|e| e.name == s) => {
                        Ok(ConstValue::Enum(Name::new(s)))
                    }
                    _ => Err(format!("Value does not exist in \"{name}\" enum.")),
                },
                Kind::Input { fields, .. } => {
                    let map = v
                        .as_object()
                        .ok_or_else(|| format!("Expected type \"{name}\" to be an object."))?;
                    // Fields keep the client's order: it matters for `orderBy`.
                    let mut out = IndexMap::new();
                    for (k, fv) in map.iter() {
                        let f = fields
                            .iter()
                            .find(|f| f.name == k.as_str())
                            .ok_or_else(|| {
                                format!("Field \"{k}\" is not defined by type \"{name}\".")
                            })?;
                        let c = coerce_json(schema, fv, &f.ty)
                            .map_err(|e| format!("At \"{}\": {e}", f.name))?;
                        out.insert(Name::new(&f.name), c);
                    }
                    if let Some(f) = fields.iter().find(|f| {
                        matches!(f.ty, TypeRef::NonNull(_)) && !map.contains_key(f.name.as_str())
                    }) {
                        return Err(format!(
                            "Field \"{}\" of required type \"{}\" was not provided.",
                            f.name,
                            schema.display(&f.ty)
                        ));
                    }
                    Ok(ConstValue::Object(out))
                }
                Kind::Object { .. } => Err(format!("\"{name}\" is not an input type.")),
            }
        }
    }
}
