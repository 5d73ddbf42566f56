//! Parsing and validation of GraphQL operations against the generated [`Schema`].
//!
//! [`validate`] parses the document (async-graphql-parser), applies the specification's
//! validation rules to every operation in it, picks the operation to run, coerces its
//! variables, and returns it as an [`Operation`]: fragments inlined, `@skip`/`@include`
//! applied, fields with the same response key merged, arguments coerced. Errors follow
//! graphql-js wording and carry locations.
//!
//! - [`walk`]: the rules that need the schema (fields, arguments, values, directives,
//!   fragment spreads, leaves, depth, overlapping fields).
//! - [`values`]: input values and variable coercion.
//! - [`error`]: the error type and its codes.

pub mod error;
pub mod json;
pub mod values;
mod walk;

use std::collections::{HashMap, HashSet};

use async_graphql_parser::types::{
    DocumentOperations, ExecutableDocument, OperationDefinition, OperationType, Selection,
    SelectionSet,
};
use async_graphql_parser::{Pos, Positioned};
use async_graphql_value::{ConstValue, Name};
use simd_json::OwnedValue;
use simd_json::prelude::*;

pub use error::{ErrorCode, GraphQLError, Location, PathSegment};

use crate::schema::{Schema, TypeId, TypeRef};
use values::{check_literal, coerce_json, is_subtype, resolve_type};
use walk::Walker;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperationKind {
    Query,
    Subscription,
    Mutation,
}

/// Which field a selection reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldRef {
    /// Index into the parent type's fields.
    Field(usize),
    Typename,
    Schema,
    Type,
}

/// One field of a normalized selection.
#[derive(Debug, Clone)]
pub struct Selected {
    /// The response key: the alias, or the field name.
    pub key: String,
    pub name: String,
    pub parent: TypeId,
    pub field: FieldRef,
    /// Arguments given, coerced, in the order the field defines them.
    pub args: Vec<(String, ConstValue)>,
    /// The arguments as written, to tell whether two selections of a key agree.
    arg_nodes: Vec<(String, String)>,
    pub children: Vec<Selected>,
    pub pos: Pos,
}

impl Selected {
    pub fn arg(&self, name: &str) -> Option<&ConstValue> {
        self.args
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
            .filter(|v| !matches!(v, ConstValue::Null))
    }
}

/// Bounds on what one operation may ask for, checked before any SQL is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Deepest nesting of object fields (introspection excluded).
    pub max_depth: usize,
    /// Most fields and spreads walked in the document, each fragment counted wherever it
    /// is spread.
    pub max_fields: usize,
    /// Deepest nesting of brackets in the document, checked before it is parsed, and of
    /// selections once fragments are expanded.
    pub max_input_depth: usize,
    /// Most errors reported; validation stops past them.
    pub max_errors: usize,
}

impl Default for Limits {
    /// The defaults of `POSTRUST_MAX_QUERY_DEPTH`, `POSTRUST_MAX_QUERY_FIELDS`,
    /// `POSTRUST_MAX_INPUT_DEPTH` and `POSTRUST_MAX_ERRORS`.
    fn default() -> Self {
        Limits {
            max_depth: 10,
            max_fields: 2000,
            max_input_depth: 64,
            max_errors: 100,
        }
    }
}

/// A validated operation, ready for introspection and compilation.
#[derive(Debug, Clone)]
pub struct Operation {
    pub kind: OperationKind,
    pub name: Option<String>,
    /// The root type (`Query` or `Subscription`).
    pub root: TypeId,
    pub selection: Vec<Selected>,
}

fn syntax(err: async_graphql_parser::Error) -> Vec<GraphQLError> {
    use async_graphql_parser::Error as E;
    let (message, at): (String, Vec<Pos>) = match &err {
        E::Syntax { message, start, .. } => {
            // pest's message repeats the position in a multi-line drawing; the first line
            // after it says what was expected.
            let what = message
                .lines()
                .rfind(|l| l.trim_start().starts_with('='))
                .map(|l| l.trim_start().trim_start_matches('=').trim().to_owned())
                .unwrap_or_else(|| message.clone());
            // pest names grammar rules (`executable_definition`); read them as words.
            (
                format!("Syntax Error: {}", what.replace('_', " ")),
                vec![*start],
            )
        }
        E::MultipleOperations { anonymous, .. } => (
            "This anonymous operation must be the only defined operation.".into(),
            vec![*anonymous],
        ),
        E::OperationDuplicated {
            operation,
            first,
            second,
        } => (
            format!("There can be only one operation named \"{operation}\"."),
            vec![*first, *second],
        ),
        E::FragmentDuplicated {
            fragment,
            first,
            second,
        } => (
            format!("There can be only one fragment named \"{fragment}\"."),
            vec![*first, *second],
        ),
        E::MissingOperation => ("Must provide an operation.".into(), vec![]),
        other => (other.to_string(), other.positions().collect()),
    };
    let code = match err {
        E::Syntax { .. } | E::RecursionLimitExceeded => ErrorCode::Parse,
        E::MissingOperation => ErrorCode::OperationResolution,
        _ => ErrorCode::Validation,
    };
    vec![GraphQLError::new(code, message, &at)]
}

/// Parses, validates and prepares the operation `operation_name` (or the only one).
pub fn validate(
    schema: &Schema,
    query: &str,
    variables: Option<&OwnedValue>,
    operation_name: Option<&str>,
    limits: &Limits,
) -> Result<Operation, Vec<GraphQLError>> {
    // The parser and every walk below recurse per level of nesting: bound it first.
    if let Err(deep) = crate::nesting::check_graphql(query, limits.max_input_depth) {
        return Err(vec![GraphQLError::new(
            ErrorCode::InputTooDeep,
            format!("The document nests deeper than {} levels.", deep.limit),
            &[],
        )]);
    }
    let doc = async_graphql_parser::parse_query(query).map_err(syntax)?;
    let mut errors = Vec::new();
    let ops: Vec<(Option<&Name>, &Positioned<OperationDefinition>)> = match &doc.operations {
        DocumentOperations::Single(op) => vec![(None, op)],
        DocumentOperations::Multiple(map) => map.iter().map(|(n, op)| (Some(n), op)).collect(),
    };
    let chosen = match (operation_name, ops.as_slice()) {
        (None, [only]) => Some(only),
        (None, _) => {
            return Err(vec![GraphQLError::new(
                ErrorCode::OperationResolution,
                "Must provide operation name if query contains multiple operations.",
                &[],
            )]);
        }
        (Some(wanted), _) => ops
            .iter()
            .find(|(n, _)| n.is_some_and(|n| n.as_str() == wanted)),
    };
    let Some(&(chosen_name, chosen_op)) = chosen else {
        return Err(vec![GraphQLError::new(
            ErrorCode::OperationResolution,
            format!(
                "Unknown operation named \"{}\".",
                operation_name.unwrap_or_default()
            ),
            &[],
        )]);
    };
    fragment_cycles(&doc, &mut errors);
    let mut used_fragments = HashSet::new();
    let mut result = None;
    // One field budget for the whole document, so that many operations spreading one large
    // fragment cost no more than one.
    let mut walked = 0;
    for &(name, op) in &ops {
        let is_chosen = std::ptr::eq(op, chosen_op);
        let (selection, used) = operation(
            schema,
            &doc,
            (name, op),
            is_chosen.then_some(variables),
            limits,
            &mut walked,
            &mut errors,
        );
        used_fragments.extend(used);
        if is_chosen {
            result = selection;
        }
    }
    for (name, def) in &doc.fragments {
        if !used_fragments.contains(name) {
            errors.push(GraphQLError::validation(
                format!("Fragment \"{name}\" is never used."),
                &[def.pos],
            ));
        }
    }
    dedup(&mut errors);
    if errors.len() > limits.max_errors {
        // As graphql-js does: a document repeating one mistake gets a bounded answer.
        errors.truncate(limits.max_errors);
        errors.push(GraphQLError::new(
            ErrorCode::Validation,
            "Too many validation errors, error limit reached. Validation aborted.",
            &[],
        ));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let (root, kind) = match chosen_op.node.ty {
        OperationType::Subscription => (schema.subscription, OperationKind::Subscription),
        OperationType::Mutation => (
            schema
                .mutation
                .expect("validated: the schema has mutations"),
            OperationKind::Mutation,
        ),
        OperationType::Query => (schema.query, OperationKind::Query),
    };
    Ok(Operation {
        kind,
        name: chosen_name.map(|n| n.to_string()),
        root,
        selection: result.unwrap_or_default(),
    })
}

/// Errors about fragments show once, however often the fragment is spread.
fn dedup(errors: &mut Vec<GraphQLError>) {
    let mut seen = HashSet::new();
    errors.retain(|e| seen.insert((e.message.clone(), e.locations.clone())));
    // Variable coercion errors are meaningless next to validation errors, and a walk cut
    // short by the field or nesting limit leaves fragments looking unused.
    let cut_short =
        |e: &GraphQLError| matches!(e.code, ErrorCode::TooComplex | ErrorCode::InputTooDeep);
    if errors.iter().any(cut_short) {
        errors.retain(cut_short);
    } else if errors.iter().any(|e| e.code != ErrorCode::BadVariables) {
        errors.retain(|e| e.code != ErrorCode::BadVariables);
    }
}

fn op_label(name: Option<&Name>) -> String {
    name.map_or(String::new(), |n| format!(" by operation \"{n}\""))
}

/// Validates one operation; with `variables` (the chosen operation) also coerces them and
/// builds the selection tree. Returns the tree and the fragments it spreads.
fn operation(
    schema: &Schema,
    doc: &ExecutableDocument,
    (name, op): (Option<&Name>, &Positioned<OperationDefinition>),
    variables: Option<Option<&OwnedValue>>,
    limits: &Limits,
    walked: &mut usize,
    errors: &mut Vec<GraphQLError>,
) -> (Option<Vec<Selected>>, HashSet<Name>) {
    let root = match op.node.ty {
        OperationType::Query => schema.query,
        OperationType::Subscription => schema.subscription,
        OperationType::Mutation => match schema.mutation {
            Some(root) => root,
            None => {
                errors.push(GraphQLError::validation(
                    "Schema is not configured to execute mutation operation.",
                    &[op.pos],
                ));
                return (None, HashSet::new());
            }
        },
    };
    // Variable definitions: unique, input types, valid defaults.
    let mut defs: Vec<(String, Option<TypeRef>, Pos, bool)> = Vec::new();
    let mut def_usages = Vec::new();
    // Where each name is in `defs`: lookups stay linear however many variables there are.
    let mut def_index: HashMap<String, usize> = HashMap::new();
    for v in &op.node.variable_definitions {
        let vname = v.node.name.node.to_string();
        if def_index.contains_key(&vname) {
            errors.push(GraphQLError::validation(
                format!("There can be only one variable named \"${vname}\"."),
                &[v.pos],
            ));
        }
        let ty = match resolve_type(schema, &v.node.var_type.node) {
            Ok(t) if schema.is_input_type(t.named()) => Some(t),
            Ok(_) => {
                errors.push(GraphQLError::validation(
                    format!(
                        "Variable \"${vname}\" cannot be non-input type \"{}\".",
                        v.node.var_type.node
                    ),
                    &[v.node.var_type.pos],
                ));
                None
            }
            Err(unknown) => {
                errors.push(GraphQLError::validation(
                    format!("Unknown type \"{unknown}\"."),
                    &[v.node.var_type.pos],
                ));
                None
            }
        };
        if let (Some(t), Some(d)) = (&ty, &v.node.default_value) {
            let mut messages = Vec::new();
            let lit = d.node.clone().into_value();
            check_literal(
                schema,
                &lit,
                t,
                d.pos,
                false,
                &mut def_usages,
                &mut messages,
            );
            for m in messages {
                errors.push(GraphQLError::validation(m, &[d.pos]));
            }
        }
        let has_default = v
            .node
            .default_value
            .as_ref()
            .is_some_and(|d| !matches!(d.node, ConstValue::Null));
        def_index.entry(vname.clone()).or_insert(defs.len());
        defs.push((vname, ty, v.pos, has_default));
    }
    // Coerce the chosen operation's variables.
    let coerced = variables.map(|given| {
        let mut out = HashMap::new();
        for v in &op.node.variable_definitions {
            let vname = v.node.name.node.as_str();
            let Some((_, Some(ty), ..)) = def_index.get(vname).map(|i| &defs[*i]) else {
                continue;
            };
            let value = given.and_then(|g| g.get(vname));
            match (value, &v.node.default_value) {
                (None, Some(d)) => {
                    // Coerced like an argument literal: a single value given for a list wraps.
                    let lit = d.node.clone().into_value();
                    if let Some(c) = values::coerce_literal(&lit, ty, schema, &HashMap::new()) {
                        out.insert(vname.to_owned(), c);
                    }
                }
                (None, None) if matches!(ty, TypeRef::NonNull(_)) => {
                    errors.push(GraphQLError::new(
                        ErrorCode::BadVariables,
                        format!(
                            "Variable \"${vname}\" of required type \"{}\" was not provided.",
                            schema.display(ty)
                        ),
                        &[v.pos],
                    ));
                }
                (None, None) => {}
                (Some(json), _) => match coerce_json(schema, json, ty) {
                    Ok(c) => {
                        out.insert(vname.to_owned(), c);
                    }
                    Err(why) => errors.push(GraphQLError::new(
                        ErrorCode::BadVariables,
                        format!(
                            "Variable \"${vname}\" got invalid value {}; {why}",
                            simd_json::prelude::Writable::encode(json)
                        ),
                        &[v.pos],
                    )),
                },
            }
        }
        out
    });
    let mut walker = Walker::new(schema, doc, coerced.as_ref(), *limits, *walked);
    let location = match op.node.ty {
        OperationType::Subscription => "SUBSCRIPTION",
        OperationType::Mutation => "MUTATION",
        OperationType::Query => "QUERY",
    };
    walker.directives(&op.node.directives, location);
    for v in &op.node.variable_definitions {
        walker.directives(&v.node.directives, "VARIABLE_DEFINITION");
    }
    let mut selection = Vec::new();
    walker.selection_set(root, &op.node.selection_set, 0, false, &mut selection);
    walker.usages.extend(def_usages);
    let Walker {
        errors: walk_errors,
        usages,
        used_fragments,
        fields,
        ..
    } = walker;
    *walked = fields;
    errors.extend(walk_errors);
    // Variables: defined, used, and used where their type fits.
    let mut used = HashSet::new();
    for u in &usages {
        used.insert(u.name.clone());
        match def_index.get(&u.name).map(|i| &defs[*i]) {
            None => errors.push(GraphQLError::validation(
                format!("Variable \"${}\" is not defined{}.", u.name, op_label(name)),
                &[u.pos, op.pos],
            )),
            Some((_, Some(var_ty), def_pos, has_default)) => {
                let fits = match (var_ty, &u.expected) {
                    (TypeRef::NonNull(_), _) => is_subtype(var_ty, &u.expected),
                    (_, TypeRef::NonNull(inner)) if *has_default || u.location_default => {
                        is_subtype(var_ty, inner)
                    }
                    _ => is_subtype(var_ty, &u.expected),
                };
                if !fits {
                    errors.push(GraphQLError::validation(
                        format!(
                            "Variable \"${}\" of type \"{}\" used in position expecting type \"{}\".",
                            u.name,
                            schema.display(var_ty),
                            schema.display(&u.expected)
                        ),
                        &[*def_pos, u.pos],
                    ));
                }
            }
            Some(_) => {}
        }
    }
    for (vname, _, pos, _) in &defs {
        if !used.contains(vname) {
            let message = match name {
                Some(n) => format!("Variable \"${vname}\" is never used in operation \"{n}\"."),
                None => format!("Variable \"${vname}\" is never used."),
            };
            errors.push(GraphQLError::validation(message, &[*pos]));
        }
    }
    if op.node.ty == OperationType::Subscription {
        single_root_field(doc, name, &op.node.selection_set, errors);
    }
    (coerced.map(|_| selection), used_fragments)
}

/// Collects the root fields of a subscription as written (fragments followed, directives
/// ignored, as the specification's CollectFields does without variables).
fn root_fields<'d>(
    doc: &'d ExecutableDocument,
    set: &'d SelectionSet,
    seen: &mut HashSet<&'d str>,
    out: &mut Vec<(&'d str, &'d str, Pos)>,
) {
    for item in &set.items {
        match &item.node {
            Selection::Field(f) => out.push((
                f.node.response_key().node.as_str(),
                f.node.name.node.as_str(),
                f.pos,
            )),
            Selection::FragmentSpread(s) => {
                let n = s.node.fragment_name.node.as_str();
                if seen.insert(n)
                    && let Some(def) = doc.fragments.get(&s.node.fragment_name.node)
                {
                    root_fields(doc, &def.node.selection_set.node, seen, out);
                }
            }
            Selection::InlineFragment(i) => {
                root_fields(doc, &i.node.selection_set.node, seen, out);
            }
        }
    }
}

fn single_root_field(
    doc: &ExecutableDocument,
    name: Option<&Name>,
    set: &Positioned<SelectionSet>,
    errors: &mut Vec<GraphQLError>,
) {
    let mut fields = Vec::new();
    root_fields(doc, &set.node, &mut HashSet::new(), &mut fields);
    let label = name.map_or("Anonymous Subscription".to_owned(), |n| {
        format!("Subscription \"{n}\"")
    });
    let mut keys: Vec<&str> = fields.iter().map(|(k, ..)| *k).collect();
    keys.dedup();
    if keys.len() > 1 {
        let extra: Vec<Pos> = fields
            .iter()
            .filter(|(k, ..)| *k != keys[0])
            .map(|(.., p)| *p)
            .collect();
        errors.push(GraphQLError::validation(
            format!("{label} must select only one top level field."),
            &extra,
        ));
    }
    for (_, field, pos) in &fields {
        if field.starts_with("__") {
            errors.push(GraphQLError::validation(
                format!("{label} must not select an introspection top level field."),
                &[*pos],
            ));
        }
    }
}

/// The spec's "Fragments must not form cycles", reported once per cycle at its spreads.
/// Reports every fragment that spreads itself, directly or through others.
///
/// One depth-first walk over the graph of fragment spreads, each fragment entered once
/// (graphql-js's NoFragmentCyclesRule), so the work is linear in the number of spreads
/// however they are shared: a document where each fragment spreads the next one twice
/// costs no more than one where it spreads it once. The walk keeps its own stack, so a long
/// chain of fragments cannot exhaust the thread's.
fn fragment_cycles(doc: &ExecutableDocument, errors: &mut Vec<GraphQLError>) {
    // Recurses per nested selection set: bounded by `max_input_depth`, checked before parsing.
    fn spreads<'d>(set: &'d SelectionSet, out: &mut Vec<(&'d Name, Pos)>) {
        for item in &set.items {
            match &item.node {
                Selection::Field(f) => spreads(&f.node.selection_set.node, out),
                Selection::FragmentSpread(s) => out.push((&s.node.fragment_name.node, s.pos)),
                Selection::InlineFragment(i) => spreads(&i.node.selection_set.node, out),
            }
        }
    }
    let spreads_of = |name: &Name| {
        let mut out = Vec::new();
        if let Some(def) = doc.fragments.get(name) {
            spreads(&def.node.selection_set.node, &mut out);
        }
        out.into_iter()
    };
    let mut names: Vec<&Name> = doc.fragments.keys().collect();
    names.sort();
    let mut entered: HashSet<&Name> = HashSet::new();
    // The spreads followed from the walk's start to the fragment being walked, and for each
    // fragment on that path, where in `path` it was entered. `path` is one shorter than
    // `stack`: the start was entered by no spread.
    let mut path: Vec<(&Name, Pos)> = Vec::new();
    let mut on_path: HashMap<&Name, usize> = HashMap::new();
    let mut stack = Vec::new();
    for start in names {
        if !entered.insert(start) {
            continue;
        }
        on_path.insert(start, 0);
        stack.push((start, spreads_of(start)));
        while let Some((name, pending)) = stack.last_mut() {
            let Some((next, pos)) = pending.next() else {
                on_path.remove(*name);
                stack.pop();
                path.pop();
                continue;
            };
            if let Some(&at) = on_path.get(next) {
                let via: Vec<String> = path[at..].iter().map(|(n, _)| format!("\"{n}\"")).collect();
                let message = if via.is_empty() {
                    format!("Cannot spread fragment \"{next}\" within itself.")
                } else {
                    format!(
                        "Cannot spread fragment \"{next}\" within itself via {}.",
                        via.join(", ")
                    )
                };
                let mut at: Vec<Pos> = path[at..].iter().map(|(_, p)| *p).collect();
                at.push(pos);
                errors.push(GraphQLError::validation(message, &at));
            } else if doc.fragments.contains_key(next) && entered.insert(next) {
                path.push((next, pos));
                on_path.insert(next, path.len());
                stack.push((next, spreads_of(next)));
            }
        }
    }
}

#[cfg(test)]
mod tests;
