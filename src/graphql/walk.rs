//! Walks an operation's selections against the schema: the field, argument, directive,
//! fragment-spread and leaf rules, variable usages, depth, and the merged, normalized
//! selection tree that introspection and the SQL compiler read.

use std::collections::{HashMap, HashSet};

use async_graphql_parser::Pos;
use async_graphql_parser::Positioned;
use async_graphql_parser::types::{
    Directive, ExecutableDocument, Field, Selection, SelectionSet, TypeCondition,
};
use async_graphql_value::{ConstValue, Name, Value};

use super::values::{Usage, check_literal, coerce_literal};
use super::{FieldRef, GraphQLError, Limits, Selected};
use crate::schema::{InputValue, Kind, Schema, TypeId, TypeRef};

pub(super) struct Walker<'a> {
    pub schema: &'a Schema,
    pub doc: &'a ExecutableDocument,
    /// Coerced variable values; `None` while walking operations that will not run.
    pub vars: Option<&'a HashMap<String, ConstValue>>,
    pub limits: Limits,
    /// Fields and fragment spreads walked so far in the document (every operation's walk
    /// continues the count); past `limits.max_fields` the walk stops.
    pub fields: usize,
    /// Selection sets being walked, one inside the other: the walk's recursion depth,
    /// fragments expanded. Bounded by `limits.max_input_depth`.
    level: usize,
    pub errors: Vec<GraphQLError>,
    pub usages: Vec<Usage>,
    pub used_fragments: HashSet<Name>,
    /// Fragments being expanded, to stop at cycles (reported by the cycle rule).
    stack: Vec<Name>,
    depth_reported: bool,
}

fn conflict(key: &str, reason: &str, a: Pos, b: Pos) -> GraphQLError {
    GraphQLError::validation(
        format!(
            "Fields \"{key}\" conflict because {reason}. Use different aliases on the fields to fetch both if this was intentional."
        ),
        &[a, b],
    )
}

impl<'a> Walker<'a> {
    pub fn new(
        schema: &'a Schema,
        doc: &'a ExecutableDocument,
        vars: Option<&'a HashMap<String, ConstValue>>,
        limits: Limits,
        fields: usize,
    ) -> Self {
        Walker {
            schema,
            doc,
            vars,
            limits,
            fields,
            level: 0,
            errors: Vec::new(),
            usages: Vec::new(),
            used_fragments: HashSet::new(),
            stack: Vec::new(),
            depth_reported: false,
        }
    }

    /// The walk was cut short: the budget is spent, which also stops every later walk of
    /// the same document (its operations share the count).
    fn stopped(&self) -> bool {
        self.fields > self.limits.max_fields
    }

    /// Reports why the walk stops, and stops it.
    fn stop(&mut self, code: super::ErrorCode, message: String, at: Pos) {
        self.errors.push(GraphQLError::new(code, message, &[at]));
        self.fields = self.limits.max_fields + 1;
    }

    fn error(&mut self, message: String, at: &[Pos]) {
        self.errors.push(GraphQLError::validation(message, at));
    }

    /// Checks arguments given against `defs`; returns them coerced, defaults applied.
    fn arguments(
        &mut self,
        given: &[(Positioned<Name>, Positioned<Value>)],
        defs: &[InputValue],
        owner: &str,
        on_directive: bool,
        at: Pos,
    ) -> Vec<(String, ConstValue)> {
        let mut seen = HashSet::new();
        for (name, value) in given {
            if !seen.insert(name.node.as_str()) {
                self.error(
                    format!("There can be only one argument named \"{}\".", name.node),
                    &[name.pos],
                );
            }
            match defs.iter().find(|d| d.name == name.node.as_str()) {
                Some(def) => {
                    let mut messages = Vec::new();
                    check_literal(
                        self.schema,
                        &value.node,
                        &def.ty,
                        value.pos,
                        def.default.is_some(),
                        &mut self.usages,
                        &mut messages,
                    );
                    for m in messages {
                        self.error(m, &[value.pos]);
                    }
                }
                None if on_directive => self.error(
                    format!(
                        "Unknown argument \"{}\" on directive \"@{owner}\".",
                        name.node
                    ),
                    &[name.pos],
                ),
                None => self.error(
                    format!("Unknown argument \"{}\" on field \"{owner}\".", name.node),
                    &[name.pos],
                ),
            }
        }
        let mut out = Vec::new();
        for def in defs {
            let value = given.iter().find(|(n, _)| n.node.as_str() == def.name);
            if value.is_none() && def.default.is_none() && matches!(def.ty, TypeRef::NonNull(_)) {
                let what = if on_directive {
                    "Directive \"@"
                } else {
                    "Field \""
                };
                let short = owner.rsplit('.').next().unwrap_or(owner);
                self.error(
                    format!(
                        "{what}{short}\" argument \"{}\" of type \"{}\" is required, but it was not provided.",
                        def.name,
                        self.schema.display(&def.ty)
                    ),
                    &[at],
                );
            }
            if let (Some((_, v)), Some(vars)) = (value, self.vars)
                && let Some(c) = coerce_literal(&v.node, &def.ty, self.schema, vars)
            {
                out.push((def.name.clone(), c));
            }
        }
        out
    }

    /// Checks directives at a location; returns whether `@skip`/`@include` keep the node.
    pub fn directives(&mut self, list: &[Positioned<Directive>], location: &str) -> bool {
        let mut keep = true;
        let mut seen = HashSet::new();
        for d in list {
            let name = d.node.name.node.as_str();
            let Some(def) = self.schema.directive(name) else {
                self.error(format!("Unknown directive \"@{name}\"."), &[d.pos]);
                continue;
            };
            if !seen.insert(name) {
                self.error(
                    format!("The directive \"@{name}\" can only be used once at this location."),
                    &[d.pos],
                );
            }
            if !def.locations.contains(&location) {
                self.error(
                    format!("Directive \"@{name}\" may not be used on {location}."),
                    &[d.pos],
                );
                continue;
            }
            let args = self.arguments(&d.node.arguments, &def.args, name, true, d.pos);
            let flag = args.iter().find(|(n, _)| n == "if").map(|(_, v)| v);
            match (name, flag) {
                ("skip", Some(ConstValue::Boolean(true))) => keep = false,
                ("include", Some(ConstValue::Boolean(false))) => keep = false,
                _ => {}
            }
        }
        keep
    }

    /// Walks a selection set of object type `parent` into `out`.
    pub fn selection_set(
        &mut self,
        parent: TypeId,
        set: &Positioned<SelectionSet>,
        depth: usize,
        meta: bool,
        out: &mut Vec<Selected>,
    ) {
        // Fields and fragments both recurse through here: one bound covers nested
        // selections, chains of fragments and inline fragments inside either.
        if self.level >= self.limits.max_input_depth {
            if !self.stopped() {
                let message = format!(
                    "Selections nest more than {} levels deep, fragments expanded.",
                    self.limits.max_input_depth
                );
                self.stop(super::ErrorCode::InputTooDeep, message, set.pos);
            }
            return;
        }
        self.level += 1;
        self.selection_items(parent, set, depth, meta, out);
        self.level -= 1;
    }

    fn selection_items(
        &mut self,
        parent: TypeId,
        set: &Positioned<SelectionSet>,
        depth: usize,
        meta: bool,
        out: &mut Vec<Selected>,
    ) {
        for item in &set.node.items {
            if self.stopped() {
                // Fragments spread within fragments can multiply a short document without
                // bound; stop walking rather than spend the time.
                return;
            }
            // Spreads count as well as fields: a spread of a fragment already being expanded
            // selects nothing, yet walking to it repeatedly costs time all the same.
            if self.fields == self.limits.max_fields {
                let message = format!(
                    "The operation selects more than {} fields.",
                    self.limits.max_fields
                );
                self.stop(super::ErrorCode::TooComplex, message, item.pos);
                return;
            }
            self.fields += 1;
            match &item.node {
                Selection::Field(f) => {
                    let keep = self.directives(&f.node.directives, "FIELD");
                    if let Some(sel) = self.field(parent, f, depth, meta)
                        && keep
                    {
                        self.merge(out, sel);
                    }
                }
                Selection::FragmentSpread(spread) => {
                    let keep = self.directives(&spread.node.directives, "FRAGMENT_SPREAD");
                    let name = &spread.node.fragment_name.node;
                    self.used_fragments.insert(name.clone());
                    let Some(def) = self.doc.fragments.get(name) else {
                        self.error(format!("Unknown fragment \"{name}\"."), &[spread.pos]);
                        continue;
                    };
                    if self.stack.contains(name) {
                        continue;
                    }
                    let Some(cond) = self.condition(
                        parent,
                        Some(&def.node.type_condition),
                        Some(name.as_str()),
                        spread.pos,
                    ) else {
                        continue;
                    };
                    self.stack.push(name.clone());
                    self.directives(&def.node.directives, "FRAGMENT_DEFINITION");
                    let mut inner = Vec::new();
                    self.selection_set(cond, &def.node.selection_set, depth, meta, &mut inner);
                    self.stack.pop();
                    if keep {
                        for s in inner {
                            self.merge(out, s);
                        }
                    }
                }
                Selection::InlineFragment(inline) => {
                    let keep = self.directives(&inline.node.directives, "INLINE_FRAGMENT");
                    let Some(cond) = self.condition(
                        parent,
                        inline.node.type_condition.as_ref(),
                        None,
                        inline.pos,
                    ) else {
                        continue;
                    };
                    let mut inner = Vec::new();
                    self.selection_set(cond, &inline.node.selection_set, depth, meta, &mut inner);
                    if keep {
                        for s in inner {
                            self.merge(out, s);
                        }
                    }
                }
            }
        }
    }

    /// Checks a fragment's type condition; every type here is an object type, so a spread
    /// fits only on its own type.
    fn condition(
        &mut self,
        parent: TypeId,
        cond: Option<&Positioned<TypeCondition>>,
        fragment: Option<&str>,
        at: Pos,
    ) -> Option<TypeId> {
        let Some(cond) = cond else {
            return Some(parent);
        };
        let name = cond.node.on.node.as_str();
        let Some(id) = self.schema.type_id(name) else {
            self.error(format!("Unknown type \"{name}\"."), &[cond.node.on.pos]);
            return None;
        };
        if !matches!(self.schema.ty(id).kind, Kind::Object { .. }) {
            let message = match fragment {
                Some(f) => {
                    format!("Fragment \"{f}\" cannot condition on non composite type \"{name}\".")
                }
                None => format!("Fragment cannot condition on non composite type \"{name}\"."),
            };
            self.error(message, &[cond.node.on.pos]);
            return None;
        }
        if id != parent {
            let parent = self.schema.name(parent);
            let message = match fragment {
                Some(f) => format!(
                    "Fragment \"{f}\" cannot be spread here as objects of type \"{parent}\" can never be of type \"{name}\"."
                ),
                None => format!(
                    "Fragment cannot be spread here as objects of type \"{parent}\" can never be of type \"{name}\"."
                ),
            };
            self.error(message, &[at]);
            return None;
        }
        Some(id)
    }

    fn field(
        &mut self,
        parent: TypeId,
        f: &Positioned<Field>,
        depth: usize,
        meta: bool,
    ) -> Option<Selected> {
        let schema = self.schema;
        let name = f.node.name.node.as_str();
        let parent_name = schema.name(parent);
        let string_t = TypeRef::Named(schema.type_id("String")?);
        let type_args;
        let (field_ref, ty, defs): (FieldRef, TypeRef, &[InputValue]) = match name {
            "__typename" => (FieldRef::Typename, string_t.non_null(), &[]),
            "__schema" if parent == schema.query => (
                FieldRef::Schema,
                TypeRef::Named(schema.type_id("__Schema")?).non_null(),
                &[],
            ),
            "__type" if parent == schema.query => {
                type_args = [crate::schema::meta::input(
                    "name",
                    string_t.non_null(),
                    None,
                )];
                (
                    FieldRef::Type,
                    TypeRef::Named(schema.type_id("__Type")?),
                    &type_args,
                )
            }
            _ => match schema.field(parent, name) {
                Some((i, def)) => (FieldRef::Field(i), def.ty.clone(), &def.args),
                None => {
                    self.error(
                        format!("Cannot query field \"{name}\" on type \"{parent_name}\"."),
                        &[f.pos],
                    );
                    return None;
                }
            },
        };
        let owner = format!("{parent_name}.{name}");
        let args = self.arguments(&f.node.arguments, defs, &owner, false, f.pos);
        let named = ty.named();
        let has_selection = !f.node.selection_set.node.items.is_empty();
        let meta = meta || matches!(field_ref, FieldRef::Schema | FieldRef::Type);
        let mut children = Vec::new();
        if schema.is_leaf(named) {
            if has_selection {
                self.error(
                    format!(
                        "Field \"{name}\" must not have a selection since type \"{}\" has no subfields.",
                        schema.display(&ty)
                    ),
                    &[f.node.selection_set.pos],
                );
            }
        } else if !has_selection {
            self.error(
                format!(
                    "Field \"{name}\" of type \"{}\" must have a selection of subfields. Did you mean \"{name} {{ ... }}\"?",
                    schema.display(&ty)
                ),
                &[f.pos],
            );
        } else {
            let depth = if meta { depth } else { depth + 1 };
            if depth > self.limits.max_depth && !self.depth_reported {
                self.depth_reported = true;
                self.errors.push(GraphQLError::new(
                    super::ErrorCode::TooDeep,
                    format!(
                        "The selection nests {depth} levels deep; at most {} are allowed.",
                        self.limits.max_depth
                    ),
                    &[f.pos],
                ));
            }
            self.selection_set(named, &f.node.selection_set, depth, meta, &mut children);
        }
        Some(Selected {
            key: f.node.response_key().node.to_string(),
            name: name.to_owned(),
            parent,
            field: field_ref,
            args,
            arg_nodes: f
                .node
                .arguments
                .iter()
                .map(|(n, v)| (n.node.to_string(), v.node.to_string()))
                .collect(),
            children,
            pos: f.pos,
        })
    }

    /// Adds `sel` to `out`, merging it with a selection of the same response key; keys that
    /// name different fields or arguments conflict.
    fn merge(&mut self, out: &mut Vec<Selected>, sel: Selected) {
        let Some(existing) = out.iter_mut().find(|s| s.key == sel.key) else {
            out.push(sel);
            return;
        };
        if existing.name != sel.name {
            let reason = format!(
                "\"{}\" and \"{}\" are different fields",
                existing.name, sel.name
            );
            let e = conflict(&sel.key, &reason, existing.pos, sel.pos);
            self.errors.push(e);
            return;
        }
        let mut a = existing.arg_nodes.clone();
        let mut b = sel.arg_nodes.clone();
        a.sort();
        b.sort();
        if a != b {
            let e = conflict(
                &sel.key,
                "they have differing arguments",
                existing.pos,
                sel.pos,
            );
            self.errors.push(e);
            return;
        }
        for c in sel.children {
            self.merge(&mut existing.children, c);
        }
    }
}
