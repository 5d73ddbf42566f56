// graphql-js accepts the schema Postrust serves: buildClientSchema and validateSchema on the
// introspection result, and every operation of the docs page validates against it.
//
// POSTRUST_NODE_FIXTURE names a JSON file {"introspection": {...data...}, "operations": [...]}
// written by tests/graphql_node.rs; without it this test fails rather than pass vacuously.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { buildClientSchema, validateSchema, validate, parse, printSchema } from 'graphql';

function fixture() {
  const path = process.env.POSTRUST_NODE_FIXTURE;
  assert.ok(path, 'POSTRUST_NODE_FIXTURE is not set: run this through `cargo test --test graphql_node`');
  return JSON.parse(readFileSync(path, 'utf8'));
}

test('buildClientSchema and validateSchema accept the introspection result', () => {
  const { introspection } = fixture();
  const schema = buildClientSchema(introspection);
  assert.deepEqual(validateSchema(schema).map((e) => e.message), []);
  const sdl = printSchema(schema);
  assert.match(sdl, /type Subscription/);
  assert.match(sdl, /salesDashboard/);
});

test('every docs-page operation validates with graphql-js', () => {
  const { introspection, operations } = fixture();
  const schema = buildClientSchema(introspection);
  assert.ok(operations.length >= 5, 'the fixture lists the docs-page operations');
  for (const op of operations) {
    const errors = validate(schema, parse(op)).map((e) => e.message);
    assert.deepEqual(errors, [], op);
  }
});

test('graphql-js rejects what Postrust rejects, in the same words', () => {
  const { introspection, rejected } = fixture();
  const schema = buildClientSchema(introspection);
  for (const { query, message } of rejected) {
    const errors = validate(schema, parse(query)).map((e) => e.message);
    // graphql-js may add a suggestion ("Did you mean ...?") after the same message.
    const same = errors.some((e) => e === message || e.startsWith(message.replace(/\.$/, '')));
    assert.ok(same, `${query}\nPostrust: ${message}\ngraphql-js: ${errors}`);
  }
});
