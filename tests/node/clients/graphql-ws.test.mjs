// The real `graphql-ws` client, configured as the product docs page shows it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { createClient } from 'graphql-ws';
import { startServer } from './server.mjs';

const token = 'x';

function docsClient(url, extra = {}) {
  return createClient({
    url,
    webSocketImpl: WebSocket,
    connectionParams: {
      authorization: `Bearer ${token}`,
    },
    retryAttempts: 0,
    ...extra,
  });
}

test('connects with a Bearer token, pings, and gets results and errors', async () => {
  const server = await startServer();
  const events = [];
  const client = docsClient(server.url, {
    // Stay connected after the subscription ends, so there is time to ping.
    lazy: false,
    keepAlive: 50,
    on: {
      connected: (_socket, payload) => events.push(['connected', payload]),
      ping: (received) => events.push(['ping', received]),
      pong: (received) => events.push(['pong', received]),
    },
  });
  try {
    const first = await new Promise((resolve, reject) => {
      const stop = client.subscribe(
        {
          query: `
            subscription {
              orders(filter: { status: { eq: "pending" } }) {
                id
                total
                status
              }
            }
          `,
        },
        {
          next: (data) => {
            stop();
            resolve(data);
          },
          error: reject,
          complete: () => {},
        },
      );
    });
    assert.deepEqual(first.data.orders.map((o) => o.status), ['pending', 'pending']);

    const errors = await new Promise((resolve, reject) => {
      client.subscribe(
        { query: 'subscription { nothingHere { id } }' },
        {
          next: (data) => reject(new Error(`unexpected data ${JSON.stringify(data)}`)),
          error: resolve,
          complete: () => reject(new Error('completed without an error')),
        },
      );
    });
    assert.ok(Array.isArray(errors), `errors is an array: ${JSON.stringify(errors)}`);
    assert.equal(errors[0].extensions.code, 'GRAPHQL_VALIDATION_FAILED');
    assert.deepEqual(errors[0].locations, [{ line: 1, column: 16 }]);

    // keepAlive makes the client ping; wait for the server's pong.
    const deadline = Date.now() + 5000;
    while (!events.some(([kind, received]) => kind === 'pong' && received) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.deepEqual(events[0], ['connected', undefined], 'connection_ack arrived');
    assert.ok(events.some(([kind, received]) => kind === 'ping' && !received), 'client sent a ping');
    assert.ok(events.some(([kind, received]) => kind === 'pong' && received), 'server answered with pong');
  } finally {
    await client.dispose();
    const { code } = await server.stop();
    assert.equal(code, 0);
  }
});

test('the client sees 4408 when it never initialises', async () => {
  const server = await startServer({ POSTRUST_CONNECTION_INIT_TIMEOUT_MS: '200' });
  try {
    const socket = new WebSocket(server.url, 'graphql-transport-ws');
    const closed = await new Promise((resolve) => socket.on('close', (code, reason) => resolve([code, `${reason}`])));
    assert.deepEqual(closed, [4408, 'Connection initialisation timeout']);
  } finally {
    await server.stop();
  }
});

test('server shutdown closes the client with 1001', async () => {
  const server = await startServer();
  const closed = new Promise((resolve) => {
    const client = docsClient(server.url, {
      lazy: false,
      // The close is what this test waits for, not an error to print.
      onNonLazyError: () => {},
      on: { closed: (event) => resolve(event.code) },
    });
    client.on('connected', () => server.stop());
  });
  assert.equal(await closed, 1001);
});
