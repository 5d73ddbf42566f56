//! GraphQL over HTTP: `POST /graphql` with a JSON body and `GET /graphql?query=…`.
//!
//! Queries, and mutations over `POST` only; a subscription needs the WebSocket. The client
//! is authenticated from the
//! `Authorization` header, the operation prepared by the engine and run as the client's
//! role and claims. GraphQL errors come back with status 200 in `errors`; authentication
//! failures with 401, an unreachable database with 503.

use std::sync::Arc;

use simd_json::prelude::*;

use super::{ShardContext, unauthorized};
use crate::execute::{self, Failure};
use crate::graphql::OperationKind;
use crate::http::{Method, RequestHead, Response, Status, query_param};
use crate::protocol::{ErrorCode, GraphQLError, OperationRequest, operation_request};

fn errors(status: Status, errors: &[GraphQLError]) -> Response {
    Response::json(
        status,
        format!("{{\"errors\":{}}}", GraphQLError::list_json(errors)),
    )
}

fn bad_request(message: impl Into<String>) -> Response {
    errors(
        Status::BadRequest,
        &[GraphQLError::server(ErrorCode::BadRequest, message)],
    )
}

fn too_deep(deep: crate::nesting::TooDeep) -> Response {
    errors(
        Status::BadRequest,
        &[GraphQLError::server(
            ErrorCode::InputTooDeep,
            deep.to_string(),
        )],
    )
}

/// The request of a `POST`: a JSON object with `query`, `variables`, `operationName`.
/// `max_depth` bounds the nesting of the body before it is parsed
/// (`POSTRUST_MAX_INPUT_DEPTH`).
pub fn post_request(
    head: &RequestHead,
    body: &[u8],
    max_depth: usize,
) -> Result<OperationRequest, Response> {
    let json = head.content_type.as_deref().is_some_and(|t| {
        t.split(';')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
    });
    if !json {
        return Err(Response::error(
            Status::UnsupportedMediaType,
            "send the request as Content-Type: application/json",
        ));
    }
    crate::nesting::check_json(body, max_depth).map_err(too_deep)?;
    let mut bytes = body.to_vec();
    let value = simd_json::to_borrowed_value(&mut bytes)
        .map_err(|_| bad_request("the body is not valid JSON"))?;
    operation_request(Some(&value)).map_err(|why| bad_request(format!("invalid request: {why}")))
}

/// The request of a `GET`: `query`, `variables` and `operationName` in the URL.
pub fn get_request(head: &RequestHead, max_depth: usize) -> Result<OperationRequest, Response> {
    let params = head.query.as_deref().unwrap_or("");
    let query = query_param(params, "query")
        .ok_or_else(|| bad_request("the query parameter is missing"))?;
    let variables = match query_param(params, "variables").filter(|v| !v.is_empty()) {
        None => None,
        Some(text) => {
            crate::nesting::check_json(text.as_bytes(), max_depth).map_err(too_deep)?;
            let mut bytes = text.into_bytes();
            match simd_json::to_owned_value(&mut bytes) {
                Ok(v) if v.is_object() => Some(v),
                Ok(v) if v.is_null() => None,
                _ => return Err(bad_request("the variables parameter must be a JSON object")),
            }
        }
    };
    Ok(OperationRequest {
        query,
        variables,
        operation_name: query_param(params, "operationName").filter(|n| !n.is_empty()),
    })
}

/// Runs a query for the client that sent `head`.
pub async fn respond(
    shard: &ShardContext,
    head: &RequestHead,
    request: OperationRequest,
) -> Response {
    let identity = match shard.auth.authenticate(head.authorization.as_deref()) {
        Ok(identity) => identity,
        Err(err) => {
            shard.metrics().error(err.code());
            return unauthorized(&err);
        }
    };
    let engine = Arc::clone(&shard.engine.borrow());
    let prepared = match engine.prepare(
        &request.query,
        request.variables.as_ref(),
        request.operation_name.as_deref(),
    ) {
        Ok(p) => p,
        Err(errs) => {
            for e in &errs {
                shard.metrics().error(e.code.as_str());
            }
            return errors(Status::Ok, &errs);
        }
    };
    if prepared.kind == OperationKind::Subscription {
        return errors(
            Status::BadRequest,
            &[GraphQLError::server(
                ErrorCode::OperationResolution,
                "subscriptions run over a WebSocket at this same URL (ws://…/graphql)",
            )],
        );
    }
    // GET must be safe (GraphQL over HTTP): a link or a prefetch must not write.
    if prepared.kind == OperationKind::Mutation && head.method() != Method::Post {
        return errors(
            Status::MethodNotAllowed,
            &[GraphQLError::server(
                ErrorCode::OperationResolution,
                "mutations are sent with POST",
            )],
        )
        .with_header("Allow: POST");
    }
    match execute::run_plan(&shard.db, shard.metrics(), &identity, &prepared.plan).await {
        Ok(data) => Response::json(Status::Ok, format!("{{\"data\":{data}}}")),
        Err(Failure::Final(e)) => errors(Status::Ok, &[e]),
        Err(Failure::Unavailable(e)) => errors(Status::ServiceUnavailable, &[e]),
    }
}
