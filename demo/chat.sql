-- The demo's chat (after roles.sql): rooms, their members, and messages that each member
-- writes as themself and reads in their rooms only. Row-level security on the JWT's `sub`
-- decides everything; the server serves it with POSTRUST_DB_SCHEMAS=public,chat. Try it in
-- the playground with the two tokens scripts/demo prints: alice and bob share `lobby`, and
-- only bob is in `ops`.

CREATE SCHEMA chat;

-- The signed-in user: the token's `sub`, as the server passes its claims. Used as a column
-- default only: a function of the database's own in a policy would make the server refresh
-- every live query reading the table on every change of any table (what such a function
-- reads cannot be known), so the policies below spell the expression out.
CREATE FUNCTION chat.me() RETURNS text LANGUAGE sql STABLE
  AS $$ SELECT current_setting('request.jwt.claims', true)::json->>'sub' $$;

CREATE TABLE chat.rooms (
  id serial PRIMARY KEY,
  name text NOT NULL UNIQUE
);

CREATE TABLE chat.members (
  room_id integer NOT NULL REFERENCES chat.rooms (id),
  member text NOT NULL,
  PRIMARY KEY (room_id, member)
);

CREATE TABLE chat.messages (
  id bigserial PRIMARY KEY,
  room_id integer NOT NULL REFERENCES chat.rooms (id),
  author text NOT NULL DEFAULT chat.me(),
  body text NOT NULL CHECK (length(body) BETWEEN 1 AND 2000),
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TRIGGER messages_notify
AFTER INSERT OR UPDATE OR DELETE ON chat.messages
FOR EACH ROW EXECUTE FUNCTION notify_table_change();
-- The policies of messages read members: a new member sees the room's messages at once.
CREATE TRIGGER members_notify
AFTER INSERT OR UPDATE OR DELETE ON chat.members
FOR EACH ROW EXECUTE FUNCTION notify_table_change();

GRANT USAGE ON SCHEMA chat TO web_user;
GRANT SELECT ON chat.rooms, chat.members TO web_user;
GRANT SELECT, DELETE ON chat.messages TO web_user;
GRANT INSERT (room_id, body), UPDATE (body) ON chat.messages TO web_user;
GRANT USAGE ON SEQUENCE chat.messages_id_seq TO web_user;

ALTER TABLE chat.members ENABLE ROW LEVEL SECURITY;
CREATE POLICY my_memberships ON chat.members
  USING (member = current_setting('request.jwt.claims', true)::json->>'sub');

ALTER TABLE chat.messages ENABLE ROW LEVEL SECURITY;
CREATE POLICY read_my_rooms ON chat.messages FOR SELECT
  USING (EXISTS (SELECT 1 FROM chat.members m
                 WHERE m.room_id = messages.room_id
                   AND m.member = current_setting('request.jwt.claims', true)::json->>'sub'));
CREATE POLICY post_as_myself ON chat.messages FOR INSERT
  WITH CHECK (author = current_setting('request.jwt.claims', true)::json->>'sub'
              AND EXISTS (SELECT 1 FROM chat.members m
                          WHERE m.room_id = messages.room_id
                            AND m.member = current_setting('request.jwt.claims', true)::json->>'sub'));
CREATE POLICY edit_mine ON chat.messages FOR UPDATE
  USING (author = current_setting('request.jwt.claims', true)::json->>'sub')
  WITH CHECK (author = current_setting('request.jwt.claims', true)::json->>'sub');
CREATE POLICY delete_mine ON chat.messages FOR DELETE
  USING (author = current_setting('request.jwt.claims', true)::json->>'sub');

INSERT INTO chat.rooms (name) VALUES ('lobby'), ('ops');
INSERT INTO chat.members VALUES (1, 'alice'), (1, 'bob'), (2, 'bob');
INSERT INTO chat.messages (room_id, author, body, created_at) VALUES
  (1, 'alice', 'Welcome to the lobby!', '2026-01-05 09:00:00+00'),
  (2, 'bob', 'Deploy at noon.', '2026-01-05 09:05:00+00');
