// Row-level security with the real graphql-ws client: the server logs in as a non-superuser
// (tests/fixtures/rls.sql) and each client sees what the policy on `notes` lets its token see.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { createClient } from 'graphql-ws';
import { demoDatabase, psql, startServer } from './server.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const fixture = path.join(here, '..', '..', 'fixtures', 'rls.sql');
const secret = 'rls-node-secret-0123456789abcdefghij';
const NOTES = 'subscription { notes(orderBy: { id: ASC }) { owner body } }';

const base64url = (value) => Buffer.from(value).toString('base64url');

/** An HS256 token, signed here so the test depends on no JWT library. */
function sign(claims) {
  const unsigned = `${base64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }))}.${base64url(JSON.stringify(claims))}`;
  return `${unsigned}.${createHmac('sha256', secret).update(unsigned).digest('base64url')}`;
}

const now = () => Math.floor(Date.now() / 1000);

/** The server on a fresh database with the RLS fixture; `admin` writes as the superuser. */
async function rlsServer() {
  const admin = demoDatabase();
  execFileSync('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', admin, '-f', fixture]);
  const databaseUrl = admin.replace('://postgres@', '://rls_authenticator@');
  assert.notEqual(databaseUrl, admin);
  const server = await startServer({
    POSTRUST_DATABASE_URL: databaseUrl,
    POSTRUST_JWT_SECRET: secret,
    POSTRUST_JWT_LEEWAY_S: '0',
  });
  return { server, admin };
}

/** Resolves when `check` accepts one of `results` (an array the caller appends to). */
async function until(results, check, what) {
  const deadline = Date.now() + 15_000;
  while (!results.some(check)) {
    if (Date.now() > deadline) throw new Error(`${what}: never seen in ${JSON.stringify(results)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const bodies = (result) => result.data.notes.map((n) => n.body);

test('an expired token closes the socket and a fresh token resumes the subscription', async () => {
  const { server, admin } = await rlsServer();
  const issued = [];
  const closes = [];
  const client = createClient({
    url: server.url,
    webSocketImpl: WebSocket,
    // Called on every (re)connect: the first token lives two seconds, later ones ten minutes.
    connectionParams: () => {
      const exp = now() + (issued.length === 0 ? 2 : 600);
      issued.push(exp);
      return { authorization: `Bearer ${sign({ role: 'rls_user', sub: 'alice', exp })}` };
    },
    retryAttempts: 3,
    retryWait: async () => {},
    on: { closed: (event) => closes.push([event.code, event.reason]) },
  });
  const results = [];
  const errors = [];
  const stop = client.subscribe(
    { query: NOTES },
    { next: (r) => results.push(r), error: (e) => errors.push(e), complete: () => {} },
  );
  try {
    await until(results, (r) => bodies(r).length === 2, 'the first result');
    assert.deepEqual(bodies(results[0]), ['alice 1', 'alice 2']);
    await until(closes, ([code]) => code === 4403, 'the expiry close');
    assert.deepEqual(closes[0], [4403, 'token expired']);
    psql(admin, "INSERT INTO notes (owner, body) VALUES ('alice', 'alice 3'), ('bob', 'bob 2')");
    await until(results, (r) => bodies(r).includes('alice 3'), 'a result after reconnecting');
    assert.ok(issued.length >= 2, 'a fresh token was asked for');
    assert.deepEqual(errors, []);
    for (const r of results) {
      assert.ok(r.data.notes.every((n) => n.owner === 'alice'), JSON.stringify(r));
    }
  } finally {
    stop();
    await client.dispose();
    await server.stop();
  }
});

test('a role without SELECT gets a FORBIDDEN error and the client keeps working', async () => {
  const { server } = await rlsServer();
  const closes = [];
  const client = createClient({
    url: server.url,
    webSocketImpl: WebSocket,
    lazy: false,
    connectionParams: {
      authorization: `Bearer ${sign({ role: 'rls_outsider', sub: 'alice', exp: now() + 600 })}`,
    },
    retryAttempts: 0,
    on: { closed: (event) => closes.push(event.code) },
  });
  const run = (query) =>
    new Promise((resolve) => {
      const out = [];
      client.subscribe(
        { query },
        {
          next: (r) => out.push(['next', r]),
          error: (e) => resolve([...out, ['error', e]]),
          complete: () => resolve(out),
        },
      );
    });
  try {
    const denied = await run(NOTES);
    assert.equal(denied.length, 1, JSON.stringify(denied));
    const [kind, errors] = denied[0];
    assert.equal(kind, 'error');
    assert.deepEqual(errors.map((e) => e.extensions.code), ['FORBIDDEN']);
    const allowed = await run('{ products(limit: 1) { id } }');
    assert.equal(allowed.length, 1);
    assert.equal(allowed[0][1].data.products.length, 1);
    assert.deepEqual(closes, [], 'the socket stayed open');
  } finally {
    await client.dispose();
    await server.stop();
  }
});
