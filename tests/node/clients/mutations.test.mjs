// Mutations with the real clients, on the chat fixture (tests/fixtures/chat.sql): the server
// logs in as `chat_authenticator`, and row-level security on `messages` decides what each
// token may read and write. graphql-ws runs a mutation over the socket while another user's
// subscription sees it; Apollo Client 4 mutates over HTTP, gets the stable error codes, and
// reads the change back through its cache and a GraphQLWsLink subscription.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { createClient } from 'graphql-ws';
import { ApolloClient, ApolloLink, CombinedGraphQLErrors, HttpLink, InMemoryCache, gql } from '@apollo/client';
import { GraphQLWsLink } from '@apollo/client/link/subscriptions';
import { demoDatabase, psql, startServer } from './server.mjs';

// GraphQLWsLink reads `WebSocket.CLOSED` of the global when the server reports an error, which
// Node 20 does not define: without this, a GraphQL error arrives as a ReferenceError.
globalThis.WebSocket ??= WebSocket;

const here = path.dirname(fileURLToPath(import.meta.url));
const fixture = path.join(here, '..', '..', 'fixtures', 'chat.sql');
const secret = 'mutations-node-secret-0123456789abcdef';

const base64url = (value) => Buffer.from(value).toString('base64url');

/** An HS256 token for `sub` as `chat_user`, signed here so the test depends on no JWT library. */
function token(sub) {
  const claims = { role: 'chat_user', sub, exp: Math.floor(Date.now() / 1000) + 600 };
  const unsigned = `${base64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }))}.${base64url(JSON.stringify(claims))}`;
  return `${unsigned}.${createHmac('sha256', secret).update(unsigned).digest('base64url')}`;
}

/**
 * The server on a fresh database with the chat fixture: room 1 `general` (alice and bob)
 * holds alice's "hello", room 2 `secret` (bob only) holds bob's "for bob only".
 * `admin` is the superuser's URL, which sees every row whatever the policies say.
 */
async function chatServer() {
  const admin = demoDatabase();
  execFileSync('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', admin, '-f', fixture]);
  const databaseUrl = admin.replace('://postgres@', '://chat_authenticator@');
  assert.notEqual(databaseUrl, admin);
  const server = await startServer({ POSTRUST_DATABASE_URL: databaseUrl, POSTRUST_JWT_SECRET: secret });
  return { server, admin };
}

/** Every message as the superuser sees it, `author:body` in id order. */
const allMessages = (admin) =>
  psql(admin, "SELECT coalesce(string_agg(author || ':' || body, ', ' ORDER BY id), '') FROM messages");

/**
 * Resolves when `check` accepts one of `results`, the events of a subscription the caller
 * appends to; an `error` among them ends the subscription, so the wait too.
 */
async function until(results, check, what) {
  const deadline = Date.now() + 15_000;
  while (!results.some(check)) {
    if (results.some((r) => r.error) || Date.now() > deadline) {
      throw new Error(`${what}: never seen in ${JSON.stringify(results)}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

function wsClient(server, sub) {
  return createClient({
    url: server.url,
    webSocketImpl: WebSocket,
    connectionParams: { authorization: `Bearer ${token(sub)}` },
    retryAttempts: 0,
  });
}

/** Every result of one operation sent over graphql-ws, once it completes. */
async function collect(client, query, variables) {
  const results = [];
  for await (const result of client.iterate({ query, variables })) results.push(result);
  return results;
}

/** Apollo Client as an app sets it up: queries and mutations over HTTP, subscriptions over graphql-ws. */
function apolloClient(server, sub) {
  const socket = wsClient(server, sub);
  const http = new HttpLink({
    uri: `http://127.0.0.1:${server.port}/graphql`,
    headers: { authorization: `Bearer ${token(sub)}` },
  });
  const client = new ApolloClient({
    link: ApolloLink.split((op) => op.operationType === 'subscription', new GraphQLWsLink(socket), http),
    cache: new InMemoryCache(),
  });
  return {
    client,
    async close() {
      client.stop();
      await socket.dispose();
    },
  };
}

/** The GraphQL errors `promise` rejects with; fails if it resolves or rejects otherwise. */
async function graphqlErrors(promise) {
  const error = await promise.then(
    (result) => assert.fail(`expected GraphQL errors, got ${JSON.stringify(result)}`),
    (e) => e,
  );
  assert.ok(CombinedGraphQLErrors.is(error), `not GraphQL errors: ${error}`);
  return error.errors;
}

const GENERAL = 'subscription { messages(filter: { roomId: { eq: 1 } }, orderBy: { id: ASC }) { id author body } }';

test('graphql-ws: a mutation over the socket returns nested rows and reaches a subscriber', async () => {
  const { server, admin } = await chatServer();
  const bob = wsClient(server, 'bob');
  const alice = wsClient(server, 'alice');
  const seen = [];
  const stop = bob.subscribe(
    { query: GENERAL },
    { next: (r) => seen.push(r), error: (e) => seen.push({ error: e }), complete: () => {} },
  );
  try {
    await until(seen, (r) => r.data?.messages, "bob's first result");
    assert.deepEqual(seen[0], { data: { messages: [{ id: '1', author: 'alice', body: 'hello' }] } });

    const posted = await collect(
      alice,
      `mutation Post($body: String!) {
        insertMessages(objects: [{ roomId: 1, body: $body }]) { id author body edited slug room { name } }
      }`,
      { body: 'hi bob' },
    );
    assert.deepEqual(posted, [
      {
        data: {
          insertMessages: [
            { id: '3', author: 'alice', body: 'hi bob', edited: false, slug: 'm-3', room: { name: 'general' } },
          ],
        },
      },
    ]);
    assert.equal(allMessages(admin), 'alice:hello, bob:for bob only, alice:hi bob');

    await until(seen, (r) => r.data?.messages?.some((m) => m.body === 'hi bob'), "alice's message at bob's");
    assert.deepEqual(seen.at(-1), {
      data: {
        messages: [
          { id: '1', author: 'alice', body: 'hello' },
          { id: '3', author: 'alice', body: 'hi bob' },
        ],
      },
    });

    // A mutation that fails over the socket ends with the error, and what it wrote before
    // failing never reaches bob: the next result he gets is the write after it.
    const failed = await new Promise((resolve, reject) => {
      alice.subscribe(
        {
          query: `mutation {
            a: insertMessages(objects: [{ roomId: 1, body: "twice" }]) { id }
            b: insertMessages(objects: [{ roomId: 1, body: "twice" }]) { id }
          }`,
        },
        {
          next: (r) => reject(new Error(`unexpected result ${JSON.stringify(r)}`)),
          error: resolve,
          complete: () => reject(new Error('completed without an error')),
        },
      );
    });
    assert.deepEqual(failed.map((e) => e.extensions.code), ['UNIQUE_VIOLATION'], JSON.stringify(failed));
    const after = await collect(alice, 'mutation { insertMessages(objects: [{ roomId: 1, body: "after" }]) { body } }');
    assert.deepEqual(after, [{ data: { insertMessages: [{ body: 'after' }] } }]);
    await until(seen, (r) => r.data?.messages?.some((m) => m.body === 'after'), "the later write at bob's");
    assert.deepEqual(seen.at(-1).data.messages.map((m) => m.body), ['hello', 'hi bob', 'after']);
    assert.ok(seen.every((r) => !JSON.stringify(r).includes('twice')), JSON.stringify(seen));
    assert.ok(seen.every((r) => !r.error && !r.errors), JSON.stringify(seen));
  } finally {
    stop();
    await alice.dispose();
    await bob.dispose();
    await server.stop();
  }
});

const ROOM_MESSAGES = gql`
  query RoomMessages($room: Int!) {
    messages(filter: { roomId: { eq: $room } }, orderBy: { id: ASC }) { id author body edited }
  }
`;

test('Apollo Client: insert, update and delete over HTTP, refused and failed mutations', async () => {
  const { server, admin } = await chatServer();
  const { client, close } = apolloClient(server, 'alice');
  try {
    const inserted = await client.mutate({
      mutation: gql`
        mutation Post($objects: [MessagesInsertInput!]!) {
          insertMessages(objects: $objects) { id author body edited room { id name } }
        }
      `,
      variables: { objects: [{ roomId: 1, body: 'first' }, { roomId: 1, body: 'second' }] },
    });
    const room = { __typename: 'Rooms', id: 1, name: 'general' };
    assert.deepEqual(inserted.data.insertMessages, [
      { __typename: 'Messages', id: '3', author: 'alice', body: 'first', edited: false, room },
      { __typename: 'Messages', id: '4', author: 'alice', body: 'second', edited: false, room },
    ]);

    const updated = await client.mutate({
      mutation: gql`
        mutation Edit($id: BigInt!, $body: String!) {
          updateMessages(filter: { id: { eq: $id } }, set: { body: $body, edited: true }) { id body edited }
        }
      `,
      variables: { id: '3', body: 'first!' },
    });
    assert.deepEqual(updated.data.updateMessages, [
      { __typename: 'Messages', id: '3', body: 'first!', edited: true },
    ]);

    const deleted = await client.mutate({
      mutation: gql`
        mutation Remove {
          deleteMessages(filter: { id: { in: ["3", "4"] } }) { id body edited }
        }
      `,
    });
    assert.deepEqual(deleted.data.deleteMessages, [
      { __typename: 'Messages', id: '3', body: 'first!', edited: true },
      { __typename: 'Messages', id: '4', body: 'second', edited: false },
    ]);
    assert.equal(allMessages(admin), 'alice:hello, bob:for bob only');

    // Alice is no member of room 2: the policy's WITH CHECK refuses the row.
    const refused = await graphqlErrors(
      client.mutate({
        mutation: gql`
          mutation {
            insertMessages(objects: [{ roomId: 2, body: "let me in" }]) { id }
          }
        `,
      }),
    );
    assert.deepEqual(refused.map((e) => e.extensions.code), ['FORBIDDEN']);
    assert.equal(allMessages(admin), 'alice:hello, bob:for bob only');

    // The first field's row would be written, the second collides with it: one transaction,
    // so neither stays.
    const failed = await graphqlErrors(
      client.mutate({
        mutation: gql`
          mutation Twice {
            a: insertMessages(objects: [{ roomId: 1, body: "twice" }]) { id }
            b: insertMessages(objects: [{ roomId: 1, body: "twice" }]) { id }
          }
        `,
      }),
    );
    assert.deepEqual(failed.map((e) => e.extensions.code), ['UNIQUE_VIOLATION']);
    assert.match(failed[0].message, /messages_room_id_body_key/);
    const after = await client.query({ query: ROOM_MESSAGES, variables: { room: 1 }, fetchPolicy: 'network-only' });
    assert.deepEqual(after.data.messages, [
      { __typename: 'Messages', id: '1', author: 'alice', body: 'hello', edited: false },
    ]);
    assert.equal(allMessages(admin), 'alice:hello, bob:for bob only');
  } finally {
    await close();
    await server.stop();
  }
});

test('Apollo Client: after mutations a network-only query, the normalized cache and a subscriber see them', async () => {
  const { server } = await chatServer();
  const alice = apolloClient(server, 'alice');
  const bob = apolloClient(server, 'bob');
  const seen = [];
  // Apollo 4 hands GraphQL errors of a subscription to `next` as `error`; kept readable here.
  const readable = (e) => e.errors ?? String(e);
  const watching = bob.client.subscribe({ query: gql(GENERAL) }).subscribe({
    next: (r) => seen.push(r.error ? { ...r, error: readable(r.error) } : r),
    error: (e) => seen.push({ error: readable(e) }),
  });
  const bodies = (r) => r.data?.messages?.map((m) => m.body);
  try {
    const hello = { __typename: 'Messages', id: '1', author: 'alice', body: 'hello', edited: false };
    const before = await alice.client.query({ query: ROOM_MESSAGES, variables: { room: 1 } });
    assert.deepEqual(before.data.messages, [hello]);
    await until(seen, (r) => bodies(r)?.length === 1, "bob's first result");

    const posted = await alice.client.mutate({
      mutation: gql`
        mutation Post($body: String!) {
          insertMessages(objects: [{ roomId: 1, body: $body }]) { id author body edited }
        }
      `,
      variables: { body: 'lunch?' },
    });
    const lunch = { __typename: 'Messages', id: '3', author: 'alice', body: 'lunch?', edited: false };
    assert.deepEqual(posted.data.insertMessages, [lunch]);

    // The cached list does not know of the new row; asking the server does.
    const cached = await alice.client.query({ query: ROOM_MESSAGES, variables: { room: 1 } });
    assert.deepEqual(cached.data.messages, [hello]);
    const fresh = await alice.client.query({ query: ROOM_MESSAGES, variables: { room: 1 }, fetchPolicy: 'network-only' });
    assert.deepEqual(fresh.data.messages, [hello, lunch]);

    // An update returning `__typename` and `id` is normalized into the cached list.
    await alice.client.mutate({
      mutation: gql`
        mutation Edit($id: BigInt!) {
          updateMessages(filter: { id: { eq: $id } }, set: { body: "lunch at noon?", edited: true }) { id body edited }
        }
      `,
      variables: { id: '3' },
    });
    const edited = alice.client.readQuery({ query: ROOM_MESSAGES, variables: { room: 1 } });
    assert.deepEqual(edited.messages, [hello, { ...lunch, body: 'lunch at noon?', edited: true }]);

    await until(seen, (r) => bodies(r)?.includes('lunch at noon?'), "the edit at bob's");
    // The insert and the edit may reach bob as one result; the last one is what he shows.
    assert.deepEqual(bodies(seen.at(-1)), ['hello', 'lunch at noon?']);
    assert.ok(seen.every((r) => !r.error && !r.errors), JSON.stringify(seen));
  } finally {
    watching.unsubscribe();
    await alice.close();
    await bob.close();
    await server.stop();
  }
});
