// The other clients people use: urql over graphql-ws, and the legacy
// subscriptions-transport-ws client (protocol `graphql-ws`) as older Apollo set-ups do.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { createClient as createWsClient } from 'graphql-ws';
import { Client, subscriptionExchange, fetchExchange, gql } from '@urql/core';
import { pipe, subscribe as wonkaSubscribe } from 'wonka';
import { SubscriptionClient } from 'subscriptions-transport-ws';
import { psql, startServer } from './server.mjs';

const ORDERS = `subscription { orders(filter: { status: { eq: "pending" } }) { id total status } }`;

function collector() {
  const items = [];
  const waiters = [];
  return {
    push(item) {
      const w = waiters.shift();
      if (w) w(item);
      else items.push(item);
    },
    next() {
      if (items.length) return Promise.resolve(items.shift());
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no result within 10 s')), 10_000);
        waiters.push((item) => {
          clearTimeout(timer);
          resolve(item);
        });
      });
    },
  };
}

test('urql with a graphql-ws subscription exchange: query and live subscription', async () => {
  const server = await startServer();
  const wsClient = createWsClient({
    url: server.url,
    webSocketImpl: WebSocket,
    connectionParams: { authorization: 'Bearer x' },
    retryAttempts: 0,
  });
  const client = new Client({
    url: `http://127.0.0.1:${server.port}/graphql`,
    exchanges: [
      fetchExchange,
      subscriptionExchange({
        forwardSubscription(request) {
          const input = { ...request, query: request.query || '' };
          return {
            subscribe(sink) {
              const unsubscribe = wsClient.subscribe(input, sink);
              return { unsubscribe };
            },
          };
        },
      }),
    ],
  });
  try {
    const queried = await client.query(gql`{ products(orderBy: { id: ASC }, limit: 1) { name } }`, {}).toPromise();
    assert.equal(queried.error, undefined, String(queried.error));
    assert.deepEqual(queried.data.products, [{ name: 'Widget' }]);

    const feed = collector();
    const { unsubscribe } = pipe(
      client.subscription(gql(ORDERS), {}),
      wonkaSubscribe((result) => feed.push(result)),
    );
    const first = await feed.next();
    assert.equal(first.error, undefined, String(first.error));
    const count = first.data.orders.length;
    psql(server.databaseUrl, "INSERT INTO orders (customer_id, total, status) VALUES (1, 3.00, 'pending')");
    const second = await feed.next();
    assert.equal(second.data.orders.length, count + 1);
    unsubscribe();
  } finally {
    await wsClient.dispose();
    await server.stop();
  }
});

test('subscriptions-transport-ws (legacy graphql-ws protocol): subscribe, update, stop', async () => {
  const server = await startServer({ POSTRUST_KEEPALIVE_MS: '200' });
  const client = new SubscriptionClient(
    server.url,
    { connectionParams: { authorization: 'Bearer x' }, reconnect: false },
    WebSocket,
  );
  try {
    const feed = collector();
    const subscription = client.request({ query: ORDERS }).subscribe({
      next: (result) => feed.push(result),
      error: (err) => feed.push({ error: err }),
    });
    const first = await feed.next();
    assert.equal(first.error, undefined, JSON.stringify(first.error));
    const count = first.data.orders.length;
    psql(server.databaseUrl, "UPDATE orders SET status = 'pending' WHERE status <> 'pending' AND id = (SELECT min(id) FROM orders WHERE status <> 'pending')");
    const second = await feed.next();
    assert.equal(second.data.orders.length, count + 1);
    subscription.unsubscribe();

    // Errors arrive as the protocol's `error` message, which the client reports.
    const bad = collector();
    client.request({ query: 'subscription { nowhere { id } }' }).subscribe({
      next: (result) => bad.push(result),
      error: (err) => bad.push({ error: err }),
    });
    const failure = await bad.next();
    const errors = failure.error ?? failure.errors;
    assert.ok(errors, JSON.stringify(failure));
    assert.match(JSON.stringify(errors), /GRAPHQL_VALIDATION_FAILED|Cannot query field/);
  } finally {
    client.close();
    await server.stop();
  }
});
