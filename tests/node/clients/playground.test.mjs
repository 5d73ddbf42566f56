// The playground page at GET /, in headless Chromium (Debian's, driven by playwright-core):
// it loads with every request answered and none to another origin, shows the server's
// refusal until a token is entered and then the schema (docs explorer and autocompletion),
// and streams a subscription: its first result, then the next one after each write. With
// POSTRUST_PLAYGROUND=false there is no page.
//
// PLAYGROUND_FROM_DISK=1 serves the page from assets/playground/ instead of the
// binary (a small front server on another port passes every other request, WebSockets
// included, to the real server), so the page can be worked on without rebuilding.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { freePort, psql, startServer } from './server.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const assets = path.join(here, '..', '..', '..', 'assets', 'playground');
const chromiumPath = process.env.CHROMIUM ?? '/usr/bin/chromium';
const secret = 'playground-node-secret-0123456789abcdef';
const timeout = 15_000;

const base64url = (value) => Buffer.from(value).toString('base64url');

/** An HS256 token, signed here so the test depends on no JWT library. */
function sign(claims) {
  const unsigned = `${base64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }))}.${base64url(JSON.stringify(claims))}`;
  return `${unsigned}.${createHmac('sha256', secret).update(unsigned).digest('base64url')}`;
}

/**
 * Polls `probe`, which answers `{ ok, value }`, until `ok`; resolves to that `value`. Fails
 * after `timeout` with `what` and the last value seen.
 */
async function until(probe, what) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    last = await probe();
    if (last.ok) return last.value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeout} ms; last seen ${JSON.stringify(last.value)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * The front server of PLAYGROUND_FROM_DISK: `/` and `/playground/<file>` from
 * assets/playground/, as the binary maps them; everything else, WebSocket upgrades
 * included, passed through to `port`.
 */
async function frontServer(port) {
  const types = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.txt': 'text/plain', '.md': 'text/markdown' };
  const front = http.createServer((req, res) => {
    const { pathname } = new URL(req.url, 'http://front');
    const name = pathname === '/' ? 'index.html' : pathname.match(/^\/playground\/([^/]+)$/)?.[1];
    if (name !== undefined) {
      const file = path.join(assets, name);
      if (!fs.existsSync(file)) {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { 'Content-Type': `${types[path.extname(name)]}; charset=utf-8` });
      res.end(fs.readFileSync(file));
      return;
    }
    const upstream = http.request({ host: '127.0.0.1', port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode, answer.headers);
      answer.pipe(res);
    });
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  front.on('upgrade', (req, socket, head) => {
    const upstream = net.connect(port, '127.0.0.1', () => {
      const lines = [`${req.method} ${req.url} HTTP/1.1`];
      for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
      upstream.write(`${lines.join('\r\n')}\r\n\r\n`);
      upstream.write(head);
      upstream.pipe(socket);
      socket.pipe(upstream);
    });
    upstream.on('error', () => socket.destroy());
    socket.on('error', () => upstream.destroy());
  });
  const frontPort = await freePort();
  await new Promise((resolve, reject) => {
    front.once('error', reject);
    front.listen(frontPort, '127.0.0.1', resolve);
  });
  return {
    url: `http://127.0.0.1:${frontPort}/`,
    close: () => {
      front.closeAllConnections();
      return new Promise((resolve) => front.close(resolve));
    },
  };
}

/** The page's address: GET / of the server, or of the front server (see the top). */
async function playground(server) {
  if (process.env.PLAYGROUND_FROM_DISK) return frontServer(server.port);
  return { url: `http://127.0.0.1:${server.port}/`, close: async () => {} };
}

/** Chromium with a profile of its own, so no stored token or query carries over. */
async function launch() {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'postrust-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: chromiumPath,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  return {
    context,
    page: context.pages()[0] ?? (await context.newPage()),
    async close() {
      await context.close();
      fs.rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** Everything the browser asks for and what went wrong, from the first request on. */
function watch(context, page) {
  const seen = { requests: [], types: new Map(), failures: [], pageErrors: [], sockets: [], sent: [], closed: 0 };
  context.on('request', (request) => seen.requests.push(request));
  context.on('requestfailed', (request) => {
    seen.failures.push(`${request.method()} ${request.url()}: ${request.failure()?.errorText}`);
  });
  context.on('response', (response) => {
    const request = response.request();
    seen.types.set(new URL(response.url()).pathname, response.headers()['content-type']);
    if (response.status() >= 400) seen.failures.push(`${request.method()} ${response.url()}: HTTP ${response.status()}`);
  });
  page.on('pageerror', (error) => seen.pageErrors.push(error.message));
  page.on('websocket', (socket) => {
    seen.sockets.push(socket.url());
    socket.on('framesent', (frame) => seen.sent.push(JSON.parse(frame.payload)));
    socket.on('close', () => seen.closed++);
  });
  return seen;
}

// GraphiQL's editors are CodeMirror 5 editors, whose instance hangs on their element.
const QUERY_EDITOR = 'section.graphiql-query-editor .CodeMirror';
const RESULT_PANE = 'section.result-window .CodeMirror';
const TABS = 'ul[aria-label="Select active operation"]';

function editorText(page, selector) {
  return page.evaluate((selector) => document.querySelector(selector)?.CodeMirror.getValue() ?? '', selector);
}

/** Replaces the query editor's text and leaves the cursor at `cursor` ({ line, ch }). */
function setQuery(page, text, cursor = { line: 0, ch: 0 }) {
  return page.evaluate(([selector, text, cursor]) => {
    const editor = document.querySelector(selector).CodeMirror;
    editor.setValue(text);
    editor.focus();
    editor.setCursor(cursor);
  }, [QUERY_EDITOR, text, cursor]);
}

/** The result pane's JSON once `check` accepts it. */
function result(page, check, what) {
  return until(async () => {
    const text = await editorText(page, RESULT_PANE);
    let value;
    try {
      value = JSON.parse(text);
    } catch {
      return { ok: false, value: text };
    }
    return { ok: check(value), value };
  }, what);
}

const PENDING_ORDERS = `subscription PendingOrdersById {
  orders(filter: { status: { eq: "pending" } }, orderBy: { id: ASC }) {
    id
    total
    status
    customer { name }
  }
}`;

/** The pending orders in a result, as `id total customer` lines. */
const pending = (value) => value.data?.orders?.map((o) => `${o.id} ${o.total} ${o.customer.name}`);

test('the playground loads, shows the schema, and streams a subscription after writes', async () => {
  const server = await startServer({ POSTRUST_JWT_SECRET: secret });
  const site = await playground(server);
  const browser = await launch();
  const { page } = browser;
  const seen = watch(browser.context, page);
  const token = sign({ role: 'web_user' });
  try {
    const origin = new URL(site.url).origin;
    const response = await page.goto(site.url);
    assert.equal(response.status(), 200, 'GET / serves the playground');
    assert.match(response.headers()['content-type'], /^text\/html/);
    await page.locator('.graphiql-container').waitFor({ timeout });
    // A fresh profile gets the default query: the demo's pending orders, live.
    assert.match(await editorText(page, QUERY_EDITOR), /subscription PendingOrders \{\s+orders\(filter: \{ status: \{ eq: "pending" \} \}\)/);

    // No token yet: the introspection is refused, and the refusal is shown, not hidden.
    await until(async () => {
      const text = await editorText(page, RESULT_PANE);
      return { ok: text.includes('AUTH_TOKEN_REQUIRED'), value: text };
    }, 'the refused introspection in the result pane');
    // GraphiQL asks twice (the second time without newer introspection fields); the pane
    // shows the refusal only when both answers are in.
    const refused = seen.failures.splice(0);
    assert.ok(refused.length > 0);
    for (const failure of refused) assert.equal(failure, `POST ${origin}/graphql: HTTP 401`);

    // The token field: Enter applies it (a pasted `Bearer ` is dropped) and stores it.
    await page.fill('#token', `Bearer ${token}`);
    await page.press('#token', 'Enter');
    assert.equal(await page.inputValue('#token'), token);
    const stored = await page.evaluate(() => Object.values(window.localStorage));
    assert.ok(stored.includes(token), 'the token is kept in localStorage');

    // The schema, introspected with the token: the docs explorer lists the subscription
    // root's fields, and the query editor completes a field name.
    await page.click('button[aria-label="Show Documentation Explorer"]');
    const docs = page.locator('section.graphiql-doc-explorer');
    await docs.getByText('Subscription', { exact: true }).click({ timeout });
    await docs.getByText('orders', { exact: true }).waitFor({ timeout });
    await setQuery(page, 'subscription {\n  \n}', { line: 1, ch: 2 });
    await page.keyboard.type('ord');
    const hints = page.locator('.CodeMirror-hints');
    await hints.getByText('orderItems', { exact: true }).waitFor({ timeout });
    await page.keyboard.press('Escape');

    // The subscription: its first result, then one after each write that changes it.
    await setQuery(page, PENDING_ORDERS);
    // GraphiQL parses the editor's text 100 ms after a change; the tab takes the operation's
    // name when it has. Run before, and it would send the previous text's operation name.
    await page.locator(TABS).getByText('PendingOrdersById', { exact: true }).waitFor({ timeout });
    await page.click('button.graphiql-execute-button');
    const first = await result(page, (v) => pending(v) !== undefined, 'the first result');
    assert.deepEqual(pending(first), ['1 44.48 Acme Corp', '3 19.98 Globex']);

    psql(server.databaseUrl, 'UPDATE orders SET total = 12.34 WHERE id = 1');
    const second = await result(page, (v) => pending(v)?.[0] !== '1 44.48 Acme Corp', 'the result after an update');
    assert.deepEqual(pending(second), ['1 12.34 Acme Corp', '3 19.98 Globex']);

    psql(server.databaseUrl, "UPDATE orders SET status = 'paid' WHERE id = 3");
    const third = await result(page, (v) => pending(v)?.length !== 2, 'the result after an order left the filter');
    assert.deepEqual(pending(third), ['1 12.34 Acme Corp']);

    // Stop: the client completes the operation, then closes its socket.
    await page.click('button[aria-label^="Stop"]');
    await until(async () => ({ ok: seen.closed === 1, value: seen.sent }), 'the socket closed on stop');
    assert.deepEqual(seen.sent.at(-1), { id: '1', type: 'complete' });

    // A subscription the server refuses: its errors reach the pane, and the socket closes.
    await setQuery(page, 'subscription Refused { nothingHere { id } }');
    await page.locator(TABS).getByText('Refused', { exact: true }).waitFor({ timeout });
    await page.click('button.graphiql-execute-button');
    const refusal = await result(page, (v) => v.errors !== undefined, 'the refused subscription');
    assert.equal(refusal.errors[0].extensions.code, 'GRAPHQL_VALIDATION_FAILED');
    await until(async () => ({ ok: seen.closed === 2, value: seen.sent }), 'the second socket closed');

    // The token went with every operation: on HTTP (the introspection) and on the socket.
    const posts = seen.requests.filter((r) => r.method() === 'POST');
    assert.ok(posts.some((r) => r.headers().authorization === `Bearer ${token}`), 'an HTTP POST with the token');
    const init = seen.sent.find((m) => m.type === 'connection_init');
    assert.deepEqual(init, { type: 'connection_init', payload: { authorization: `Bearer ${token}` } });
    const subscribe = seen.sent.find((m) => m.type === 'subscribe');
    assert.equal(subscribe.payload.operationName, 'PendingOrdersById');

    // Everything came from the page's own origin, and every request was answered.
    const elsewhere = seen.requests.map((r) => r.url()).filter((url) => !url.startsWith('data:') && new URL(url).origin !== origin);
    assert.deepEqual(elsewhere, [], 'requests to another origin');
    const socketUrl = `${origin.replace(/^http/, 'ws')}/graphql`;
    assert.deepEqual(seen.sockets, [socketUrl, socketUrl]);
    // Under nosniff, which the server sends, a browser runs a script only if it is served
    // as JavaScript and applies a style sheet only if it is served as text/css.
    const types = {
      '/playground/react.production.min.js': /^text\/javascript/,
      '/playground/react-dom.production.min.js': /^text\/javascript/,
      '/playground/graphiql.min.js': /^text\/javascript/,
      '/playground/playground.js': /^text\/javascript/,
      '/playground/graphiql.min.css': /^text\/css/,
      '/playground/playground.css': /^text\/css/,
    };
    for (const [asset, type] of Object.entries(types)) assert.match(seen.types.get(asset) ?? 'not requested', type, asset);
    assert.deepEqual(seen.failures, [], 'failed requests');
    assert.deepEqual(seen.pageErrors, [], 'uncaught errors in the page');
  } finally {
    await browser.close();
    await site.close();
    await server.stop();
  }
});

test('POSTRUST_PLAYGROUND=false serves no page, and /graphql as before', async () => {
  const server = await startServer({ POSTRUST_PLAYGROUND: 'false' });
  try {
    for (const route of ['/', '/playground/playground.js']) {
      const response = await fetch(`http://127.0.0.1:${server.port}${route}`);
      assert.equal(response.status, 404, route);
    }
    const response = await fetch(`http://127.0.0.1:${server.port}/graphql`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ query: '{ __typename }' }),
    });
    assert.deepEqual(await response.json(), { data: { __typename: 'Query' } });
  } finally {
    await server.stop();
  }
});
