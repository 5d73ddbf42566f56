// The playground page: mounts the vendored GraphiQL (see VENDORED.md) with a fetcher of our
// own. Queries and mutations, GraphiQL's schema introspection among them, go over HTTP POST;
// subscriptions go over a WebSocket speaking graphql-transport-ws, one socket per
// subscription. Both carry the token typed into the page's token field, which is kept in
// this browser's localStorage.
//
// A classic script, not a module: it runs after the UMD builds, which leave React, ReactDOM
// and GraphiQL as globals.
'use strict';

(() => {
  const params = new URLSearchParams(window.location.search);

  // The GraphQL endpoint: the server's own /graphql (relative, so a path prefix added by a
  // proxy carries over), or `?endpoint=http://host:port/graphql` for a page served apart
  // from the server, such as during development. That server must list the page's origin
  // in POSTRUST_CORS_ORIGINS.
  const endpoint = new URL(params.get('endpoint') ?? 'graphql', document.baseURI);
  const socketUrl = new URL(endpoint);
  socketUrl.protocol = endpoint.protocol === 'https:' ? 'wss:' : 'ws:';

  // The token is stored per endpoint, so that a link carrying `?endpoint=` to someone
  // else's server cannot make the page send the token saved for this one.
  const tokenKey = `postrust-playground:token:${endpoint.href}`;

  const defaultQuery = `# Live results: run this subscription, then change an order
# in the database. A new result arrives after every commit
# that alters it, until you press stop.
#
# Queries go over HTTP and subscriptions over WebSocket,
# both with the token above. The Docs button lists the
# tables and views; Ctrl-Space completes a field name.
subscription PendingOrders {
  orders(filter: { status: { eq: "pending" } }) {
    id
    total
    status
    customer {
      name
    }
  }
}
`;

  /** The token as the field holds it, without a `Bearer ` someone pasted along with it. */
  function normalizeToken(text) {
    return text.trim().replace(/^bearer\s+/i, '');
  }

  function readToken() {
    try {
      return window.localStorage.getItem(tokenKey) ?? '';
    } catch {
      // Storage can be refused (private modes, blocked cookies); the field still works.
      return '';
    }
  }

  function storeToken(token) {
    try {
      if (token) window.localStorage.setItem(tokenKey, token);
      else window.localStorage.removeItem(tokenKey);
    } catch {
      // As in readToken: the token then lasts as long as the page.
    }
  }

  /**
   * Whether the operation GraphiQL runs is a subscription, from the document GraphiQL parsed
   * (absent when the text does not parse; the server then reports the syntax error).
   */
  function isSubscription(operationName, documentAST) {
    const operations = (documentAST?.definitions ?? []).filter((d) => d.kind === 'OperationDefinition');
    const chosen = operationName
      ? operations.find((op) => op.name?.value === operationName)
      : operations.length === 1 ? operations[0] : undefined;
    return chosen?.operation === 'subscription';
  }

  /** One operation over HTTP POST; resolves to the server's JSON answer, errors included. */
  async function post(request, token) {
    const headers = { 'Content-Type': 'application/json', Accept: 'application/json' };
    if (token) headers.Authorization = `Bearer ${token}`;
    const response = await fetch(endpoint, { method: 'POST', headers, body: JSON.stringify(request) });
    const text = await response.text();
    try {
      return JSON.parse(text);
    } catch {
      throw new Error(`HTTP ${response.status} from ${endpoint.href}, not JSON: ${text.slice(0, 200)}`);
    }
  }

  /**
   * What an unexpected WebSocket close means, for the result pane. A handshake the server
   * refuses (an origin outside POSTRUST_CORS_ORIGINS, say) looks to the page like no server.
   */
  function closeMessage(event, opened) {
    if (!opened) {
      return `could not open a WebSocket to ${socketUrl.href} (is the server up, and does it allow this page's origin?)`;
    }
    const reason = event.reason ? `: ${event.reason}` : '';
    return `the WebSocket closed with code ${event.code}${reason}`;
  }

  /**
   * One subscription over its own graphql-transport-ws socket, as the Observable that
   * GraphiQL accepts from a fetcher: `subscribe(sink)` starts it and returns
   * `{ unsubscribe }`, which GraphiQL calls when the stop button is pressed or another
   * operation is run. `next` carries each result; `error` a list of GraphQL errors (the
   * server's `error` message) or an Error (the socket closed); `complete` the server's end.
   */
  function subscription(request, token) {
    return {
      subscribe(sink) {
        // Only one operation ever runs on this socket, so its id can be fixed.
        const id = '1';
        const socket = new WebSocket(socketUrl, 'graphql-transport-ws');
        // opening -> initialising (connection_init sent) -> subscribed (connection_ack
        // received, subscribe sent) -> done. `done` is entered once, by the first of: the
        // server's complete or error, the socket closing, or GraphiQL unsubscribing.
        let state = 'opening';

        const send = (message) => socket.send(JSON.stringify(message));

        const end = () => {
          const wasSubscribed = state === 'subscribed';
          state = 'done';
          if (socket.readyState === WebSocket.OPEN) {
            // Tell the server before closing, so it stops the operation at once.
            if (wasSubscribed) send({ id, type: 'complete' });
            socket.close(1000, 'done');
          } else if (socket.readyState === WebSocket.CONNECTING) {
            socket.close();
          }
        };

        socket.addEventListener('open', () => {
          if (state !== 'opening') return;
          state = 'initialising';
          send({ type: 'connection_init', payload: token ? { authorization: `Bearer ${token}` } : {} });
        });

        socket.addEventListener('message', (event) => {
          if (state === 'done') return;
          let message;
          try {
            message = JSON.parse(event.data);
          } catch {
            end();
            sink.error(new Error('the server sent a WebSocket message that is not JSON'));
            return;
          }
          switch (message.type) {
            case 'connection_ack':
              if (state === 'initialising') {
                state = 'subscribed';
                send({ id, type: 'subscribe', payload: request });
              }
              break;
            case 'ping':
              send({ type: 'pong' });
              break;
            case 'next':
              if (message.id === id) sink.next(message.payload);
              break;
            case 'error':
              if (message.id === id) {
                // The server has ended the operation; a complete from us would be redundant.
                state = 'done';
                socket.close(1000, 'done');
                sink.error(message.payload);
              }
              break;
            case 'complete':
              if (message.id === id) {
                state = 'done';
                socket.close(1000, 'done');
                sink.complete();
              }
              break;
            default:
              // `pong`, and anything newer than this client: nothing to do.
              break;
          }
        });

        socket.addEventListener('close', (event) => {
          if (state === 'done') return;
          const opened = state !== 'opening';
          state = 'done';
          sink.error(new Error(closeMessage(event, opened)));
        });

        return {
          unsubscribe() {
            if (state !== 'done') end();
          },
        };
      },
    };
  }

  /** The fetcher GraphiQL calls for every operation, the schema introspection included. */
  function createFetcher(token) {
    return (request, options) =>
      isSubscription(request.operationName, options?.documentAST)
        ? subscription(request, token)
        : post(request, token);
  }

  const root = ReactDOM.createRoot(document.getElementById('graphiql'));

  /** (Re)renders GraphiQL; a new fetcher makes it introspect the schema again. */
  function render(token) {
    root.render(
      React.createElement(GraphiQL, {
        fetcher: createFetcher(token),
        defaultQuery,
        // The token field is the one place for credentials; a headers editor beside it
        // would be a second, sent only over HTTP.
        isHeadersEditorEnabled: false,
      }),
    );
  }

  const field = document.getElementById('token');
  document.getElementById('endpoint').textContent = endpoint.href;
  field.value = readToken();
  // On change (Enter, or leaving the field), not on every keystroke: each applied token
  // costs an introspection, and the schema depends on the role the token names.
  field.addEventListener('change', () => {
    const token = normalizeToken(field.value);
    field.value = token;
    storeToken(token);
    render(token);
  });
  render(normalizeToken(field.value));
})();
