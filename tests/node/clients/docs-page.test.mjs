// Every subscription of the product docs page, written exactly as there, against a demo
// database: each gets its current result at once, and a new one after every committed
// change that alters it, and nothing for a change that cannot.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { createClient } from 'graphql-ws';
import { ApolloClient, InMemoryCache, gql } from '@apollo/client';
import { GraphQLWsLink } from '@apollo/client/link/subscriptions';
import { psql, startServer } from './server.mjs';

const token = 'x';

/** Results as they arrive, and a way to wait for the next one. */
class Feed {
  constructor() {
    this.items = [];
    this.waiters = [];
  }
  push(item) {
    const waiter = this.waiters.shift();
    if (waiter) waiter(item);
    else this.items.push(item);
  }
  next(what = 'a result') {
    if (this.items.length) return Promise.resolve(this.items.shift());
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${what} within 10 s`)), 10_000);
      this.waiters.push((item) => {
        clearTimeout(timer);
        resolve(item);
      });
    });
  }
}

/** The docs page's JavaScript client configuration. */
function docsClient(url) {
  return createClient({
    url,
    webSocketImpl: WebSocket,
    connectionParams: {
      authorization: `Bearer ${token}`,
    },
    retryAttempts: 0,
  });
}

function subscribe(client, query) {
  const feed = new Feed();
  const unsubscribe = client.subscribe(
    { query },
    {
      next: (data) => feed.push(data),
      error: (err) => feed.push({ error: err }),
      complete: () => {},
    },
  );
  return { feed, unsubscribe };
}

test('users: insert, update and delete each send the new result', async () => {
  const server = await startServer();
  const client = docsClient(server.url);
  try {
    const { feed } = subscribe(
      client,
      `
# Subscribe to all changes on a table
subscription {
users {
id
name
email
updatedAt
}
}`,
    );
    const initial = await feed.next();
    const count = initial.data.users.length;
    assert.ok(count > 0);
    assert.ok('updatedAt' in initial.data.users[0]);

    psql(server.databaseUrl, "INSERT INTO users (name, email) VALUES ('Zed', 'zed@example.test')");
    const inserted = await feed.next();
    assert.equal(inserted.data.users.length, count + 1);
    assert.ok(inserted.data.users.some((u) => u.name === 'Zed'));

    psql(server.databaseUrl, "UPDATE users SET email = 'z@example.test' WHERE name = 'Zed'");
    const updated = await feed.next();
    assert.equal(updated.data.users.find((u) => u.name === 'Zed').email, 'z@example.test');

    psql(server.databaseUrl, "DELETE FROM users WHERE name = 'Zed'");
    const deleted = await feed.next();
    assert.equal(deleted.data.users.length, count);
  } finally {
    await client.dispose();
    await server.stop();
  }
});

test('pending orders with their customer follow orders and customers, not other tables', async () => {
  const server = await startServer();
  const client = docsClient(server.url);
  try {
    const { feed } = subscribe(
      client,
      `
# Subscribe with filters
subscription {
orders(filter: { status: { eq: "pending" } }) {
id
total
status
customer {
name
email
}
}
}`,
    );
    const initial = await feed.next();
    const pending = initial.data.orders.length;
    assert.ok(initial.data.orders.every((o) => o.status === 'pending'));
    assert.ok(initial.data.orders[0].customer.name);

    psql(server.databaseUrl, "INSERT INTO orders (customer_id, total, status) VALUES (2, 7.50, 'pending')");
    const inserted = await feed.next();
    assert.equal(inserted.data.orders.length, pending + 1);

    psql(server.databaseUrl, "UPDATE customers SET name = 'Globex Renamed' WHERE id = 2");
    const renamed = await feed.next();
    assert.ok(renamed.data.orders.some((o) => o.customer.name === 'Globex Renamed'));

    // A change to a table the subscription does not read, then one it does: the next
    // message must be the second, so the first sent nothing.
    psql(server.databaseUrl, "UPDATE products SET price = price + 1");
    psql(server.databaseUrl, "UPDATE orders SET status = 'shipped' WHERE total = 7.50");
    const shipped = await feed.next();
    assert.equal(shipped.data.orders.length, pending);

    psql(server.databaseUrl, "DELETE FROM order_items WHERE order_id IN (SELECT id FROM orders WHERE status = 'pending'); DELETE FROM orders WHERE status = 'pending'");
    const deleted = await feed.next();
    assert.deepEqual(deleted.data.orders, []);
  } finally {
    await client.dispose();
    await server.stop();
  }
});

test('the sales dashboard view follows its base tables', async () => {
  const server = await startServer();
  const client = docsClient(server.url);
  try {
    const { feed } = subscribe(
      client,
      `
subscription {
salesDashboard {
totalRevenue
orderCount
averageOrderValue
topProducts {
name
salesCount
}
}
}`,
    );
    const initial = await feed.next();
    // One object, as the docs page reads it (the demo's view is `@postrust single-row`).
    const dashboard = initial.data.salesDashboard;
    assert.equal(typeof dashboard.totalRevenue, 'string');
    assert.ok(dashboard.topProducts.length > 0);
    assert.ok('name' in dashboard.topProducts[0] && 'salesCount' in dashboard.topProducts[0]);

    psql(
      server.databaseUrl,
      "INSERT INTO order_items (order_id, product_id, quantity, unit_price) SELECT min(id), (SELECT min(id) FROM products), 10, 1.00 FROM orders",
    );
    const changed = await feed.next();
    assert.notDeepEqual(changed.data.salesDashboard, initial.data.salesDashboard);
  } finally {
    await client.dispose();
    await server.stop();
  }
});

test('the JavaScript client example, exactly as written, and unsubscribe', async () => {
  const server = await startServer();
  const client = createClient({
    url: server.url,
    webSocketImpl: WebSocket,
    connectionParams: {
      authorization: `Bearer ${token}`,
    },
  });
  try {
    const updates = new Feed();
    // Subscribe to orders
    const unsubscribe = client.subscribe(
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
        next: (data) => updates.push(data),
        error: (err) => updates.push({ error: err }),
        complete: () => updates.push('done'),
      },
    );
    const first = await updates.next();
    assert.ok(Array.isArray(first.data.orders));
    psql(server.databaseUrl, "INSERT INTO orders (customer_id, total, status) VALUES (1, 1.00, 'pending')");
    const second = await updates.next();
    assert.equal(second.data.orders.length, first.data.orders.length + 1);
    // Later: unsubscribe()
    unsubscribe();
    assert.equal(await updates.next('completion'), 'done');
  } finally {
    await client.dispose();
    await server.stop();
  }
});

test('Apollo Client with GraphQLWsLink runs the docs page subscription', async () => {
  const server = await startServer();
  const wsClient = docsClient(server.url);
  const apollo = new ApolloClient({
    link: new GraphQLWsLink(wsClient),
    cache: new InMemoryCache(),
  });
  try {
    const ORDERS_SUBSCRIPTION = gql`
      subscription OnOrderUpdate {
        orders(filter: { status: { eq: "pending" } }) {
          id
          total
          status
          customer { name }
        }
      }
    `;
    const feed = new Feed();
    const subscription = apollo.subscribe({ query: ORDERS_SUBSCRIPTION }).subscribe({
      next: (result) => feed.push(result),
      error: (err) => feed.push({ error: err }),
    });
    const first = await feed.next();
    assert.equal(first.error, undefined, JSON.stringify(first.error));
    const { data } = first;
    // What the docs page's component renders from it.
    const items = data.orders.map((order) => `Order #${order.id} - $${order.total}`);
    assert.ok(items.length > 0);
    assert.ok(data.orders.every((o) => o.customer.name));

    psql(server.databaseUrl, "UPDATE orders SET total = 99.99 WHERE id = (SELECT min(id) FROM orders WHERE status = 'pending')");
    const next = await feed.next();
    assert.ok(next.data.orders.some((o) => o.total === '99.99'));
    subscription.unsubscribe();
  } finally {
    apollo.stop();
    await wsClient.dispose();
    await server.stop();
  }
});
