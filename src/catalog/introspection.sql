-- The catalog of the exposed schemas as one JSON document. $1: the schemas, text[].
-- Only relations and columns that some role the connecting role may become can SELECT are
-- listed: the server runs every client's statements under the client's role, and a login
-- role set up as NOINHERIT (so that it holds nothing of its own) must still offer what its
-- client roles may read. PostgreSQL checks each client's own rights when a statement runs.
WITH RECURSIVE
may_become AS (
  SELECT r.oid FROM pg_roles r WHERE pg_has_role(current_user, r.oid, 'MEMBER')
),
rels AS (
  SELECT c.oid, n.nspname, c.relname, c.relkind
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname = ANY ($1::text[])
    AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
    AND NOT c.relispartition
    AND EXISTS (
      SELECT 1 FROM may_become m
      WHERE has_schema_privilege(m.oid, n.oid, 'USAGE')
        AND (has_table_privilege(m.oid, c.oid, 'SELECT')
             OR has_any_column_privilege(m.oid, c.oid, 'SELECT'))
    )
),
-- A type as the schema sees it: domains resolved to their base type, arrays to their
-- element type plus a flag.
types AS (
  SELECT t.oid,
         CASE WHEN t.typcategory = 'A' AND t.typelem <> 0 THEN t.typelem ELSE t.oid END AS elem,
         t.typcategory = 'A' AND t.typelem <> 0 AS is_array
  FROM pg_type t
),
type_json AS (
  SELECT ty.oid,
         json_build_object(
           'schema', en.nspname,
           'name', et.typname,
           'kind', et.typtype,
           'array', ty.is_array,
           'sortable', NOT ty.is_array AND EXISTS (
             SELECT 1 FROM pg_opclass oc JOIN pg_am am ON am.oid = oc.opcmethod
             WHERE am.amname = 'btree' AND oc.opcdefault
               AND (oc.opcintype = et.oid
                    OR (et.typtype = 'e' AND oc.opcintype = 'anyenum'::regtype)))
         ) AS j
  FROM types ty
  JOIN LATERAL (
    -- Domains over domains resolve to the innermost base type.
    WITH RECURSIVE d(oid) AS (
      SELECT ty.elem
      UNION ALL
      SELECT t.typbasetype FROM d JOIN pg_type t ON t.oid = d.oid WHERE t.typtype = 'd'
    )
    SELECT t.* FROM d JOIN pg_type t ON t.oid = d.oid WHERE t.typtype <> 'd' LIMIT 1
  ) et ON true
  JOIN pg_namespace en ON en.oid = et.typnamespace
),
-- Views to the relations their rewrite rules read, followed through views on views.
view_reads(view_oid, oid) AS (
  SELECT DISTINCT r.oid, d.refobjid
  FROM rels r
  JOIN pg_rewrite rw ON rw.ev_class = r.oid
  JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = rw.oid
                  AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> r.oid
  WHERE r.relkind = 'v'
  UNION
  SELECT vr.view_oid, d.refobjid
  FROM view_reads vr
  JOIN pg_class c ON c.oid = vr.oid AND c.relkind = 'v'
  JOIN pg_rewrite rw ON rw.ev_class = c.oid
  JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = rw.oid
                  AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> c.oid
),
-- What each relation's rows depend on, transitively: the relations its view rules read,
-- and the relations the row-level security policies of every relation reached read (a
-- policy's subquery decides which rows a client sees). Also every function they call.
deps(root, oid) AS (
  SELECT r.oid, r.oid FROM rels r
  UNION
  SELECT d0.root, dep.refobjid
  FROM deps d0
  CROSS JOIN LATERAL (
    SELECT d.refobjid FROM pg_rewrite rw
    JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = rw.oid
                    AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> d0.oid
    WHERE rw.ev_class = d0.oid
    UNION ALL
    SELECT d.refobjid FROM pg_policy p
    JOIN pg_depend d ON d.classid = 'pg_policy'::regclass AND d.objid = p.oid
                    AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> d0.oid
    WHERE p.polrelid = d0.oid
  ) dep
),
-- A function of a schema of the database's own (not pg_catalog's or information_schema's)
-- called by a view rule or a policy of what a relation depends on: what it reads cannot
-- be known.
opaque(root) AS (
  SELECT DISTINCT d0.root
  FROM deps d0
  JOIN pg_depend d ON d.refclassid = 'pg_proc'::regclass
                  AND ((d.classid = 'pg_rewrite'::regclass
                        AND d.objid IN (SELECT rw.oid FROM pg_rewrite rw WHERE rw.ev_class = d0.oid))
                       OR (d.classid = 'pg_policy'::regclass
                           AND d.objid IN (SELECT p.oid FROM pg_policy p WHERE p.polrelid = d0.oid)))
  JOIN pg_proc f ON f.oid = d.refobjid
  JOIN pg_namespace fn ON fn.oid = f.pronamespace
  WHERE fn.nspname NOT IN ('pg_catalog', 'information_schema')
)
SELECT json_build_object(
  'relations', coalesce((
    SELECT json_agg(json_build_object(
      'schema', r.nspname,
      'name', r.relname,
      'kind', r.relkind,
      'comment', obj_description(r.oid, 'pg_class'),
      'columns', coalesce((
        SELECT json_agg(json_build_object(
          'name', a.attname,
          'type', tj.j,
          'notNull', a.attnotnull,
          'comment', col_description(r.oid, a.attnum),
          -- For mutations: whether an INSERT may leave it out, and whether some client role
          -- may write it (not generated, not GENERATED ALWAYS AS IDENTITY, a view column
          -- PostgreSQL can write through).
          -- Whether equal values are equal bytes: false under a nondeterministic
          -- collation (case- or accent-insensitive), where the server must not compare text
          -- itself.
          'deterministic', coalesce((SELECT co.collisdeterministic FROM pg_collation co
                                     WHERE co.oid = a.attcollation), true),
          'hasDefault', a.atthasdef OR a.attidentity <> '',
          'insertable', a.attgenerated = '' AND a.attidentity <> 'a'
            AND pg_column_is_updatable(r.oid, a.attnum, true)
            AND EXISTS (SELECT 1 FROM may_become m
                        WHERE has_column_privilege(m.oid, r.oid, a.attnum, 'INSERT')),
          'updatable', a.attgenerated = '' AND a.attidentity <> 'a'
            AND pg_column_is_updatable(r.oid, a.attnum, true)
            AND EXISTS (SELECT 1 FROM may_become m
                        WHERE has_column_privilege(m.oid, r.oid, a.attnum, 'UPDATE'))
        ) ORDER BY a.attnum)
        FROM pg_attribute a
        JOIN type_json tj ON tj.oid = a.atttypid
        WHERE a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
          AND EXISTS (SELECT 1 FROM may_become m
                      WHERE has_column_privilege(m.oid, r.oid, a.attnum, 'SELECT'))
      ), '[]'),
      -- What some client role may do to its rows, where PostgreSQL can (tables, and views
      -- it writes through by their rules or INSTEAD OF triggers): bits of
      -- pg_relation_is_updatable, 8 INSERT, 4 UPDATE, 16 DELETE.
      'writes', json_build_object(
        'insert', (pg_relation_is_updatable(r.oid, true) & 8) = 8 AND EXISTS (
          SELECT 1 FROM may_become m WHERE has_any_column_privilege(m.oid, r.oid, 'INSERT')),
        'update', (pg_relation_is_updatable(r.oid, true) & 4) = 4 AND EXISTS (
          SELECT 1 FROM may_become m WHERE has_any_column_privilege(m.oid, r.oid, 'UPDATE')),
        'delete', (pg_relation_is_updatable(r.oid, true) & 16) = 16 AND EXISTS (
          SELECT 1 FROM may_become m WHERE has_table_privilege(m.oid, r.oid, 'DELETE'))),
      -- Primary key and unique constraints, for an insert's onConflict.
      'uniqueKeys', coalesce((
        SELECT json_agg(json_build_object(
          'name', con.conname,
          'columns', (
            SELECT json_agg(a.attname ORDER BY k.ord)
            FROM unnest(con.conkey) WITH ORDINALITY k(attnum, ord)
            JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum)
        ) ORDER BY con.conname)
        FROM pg_constraint con
        -- A deferrable one cannot arbitrate ON CONFLICT.
        WHERE con.conrelid = r.oid AND con.contype IN ('p', 'u') AND NOT con.condeferrable
      ), '[]'),
      'primaryKey', coalesce((
        SELECT json_agg(a.attname ORDER BY k.ord)
        FROM pg_constraint con
        CROSS JOIN LATERAL unnest(con.conkey) WITH ORDINALITY k(attnum, ord)
        JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum
        WHERE con.conrelid = r.oid AND con.contype = 'p'
      ), '[]'),
      'foreignKeys', coalesce((
        SELECT json_agg(json_build_object(
          'name', con.conname,
          'columns', (
            SELECT json_agg(a.attname ORDER BY k.ord)
            FROM unnest(con.conkey) WITH ORDINALITY k(attnum, ord)
            JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum),
          'refSchema', fn.nspname,
          'refTable', fc.relname,
          'refColumns', (
            SELECT json_agg(a.attname ORDER BY k.ord)
            FROM unnest(con.confkey) WITH ORDINALITY k(attnum, ord)
            JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum)
        ) ORDER BY con.conname)
        FROM pg_constraint con
        JOIN pg_class fc ON fc.oid = con.confrelid
        JOIN pg_namespace fn ON fn.oid = fc.relnamespace
        WHERE con.conrelid = r.oid AND con.contype = 'f'
      ), '[]'),
      'reads', coalesce((
        SELECT json_agg(DISTINCT jsonb_build_object('schema', bn.nspname, 'name', bc.relname))
        FROM view_reads vr
        JOIN pg_class bc ON bc.oid = vr.oid AND bc.relkind IN ('r', 'p', 'm', 'f')
        JOIN pg_namespace bn ON bn.oid = bc.relnamespace
        WHERE vr.view_oid = r.oid
      ), '[]'),
      -- Tables beyond its own rows and a view's: those its policies (and theirs) read.
      'dependsOn', coalesce((
        SELECT json_agg(DISTINCT jsonb_build_object('schema', dn.nspname, 'name', dc.relname))
        FROM deps d0
        JOIN pg_class dc ON dc.oid = d0.oid AND dc.relkind IN ('r', 'p', 'm', 'f')
        JOIN pg_namespace dn ON dn.oid = dc.relnamespace
        WHERE d0.root = r.oid AND d0.oid <> r.oid
          AND NOT EXISTS (SELECT 1 FROM view_reads vr
                          WHERE vr.view_oid = r.oid AND vr.oid = d0.oid)
      ), '[]'),
      'opaque', EXISTS (SELECT 1 FROM opaque o WHERE o.root = r.oid),
      -- Computed fields: functions of the exposed schemas that take one row of this
      -- relation and return one value (not a set, not a pseudo-type), STABLE or IMMUTABLE
      -- so that they may run inside a query, and that some role the login may become may
      -- execute.
      'computed', coalesce((
        SELECT json_agg(json_build_object(
          'schema', pn.nspname,
          'name', p.proname,
          'type', tj.j,
          'comment', obj_description(p.oid, 'pg_proc')
        ) ORDER BY array_position($1::text[], pn.nspname::text), p.proname)
        FROM pg_proc p
        JOIN pg_namespace pn ON pn.oid = p.pronamespace
        JOIN pg_class rc ON rc.oid = r.oid
        JOIN type_json tj ON tj.oid = p.prorettype
        JOIN pg_type rt ON rt.oid = p.prorettype
        WHERE pn.nspname = ANY ($1::text[])
          AND p.prokind = 'f' AND NOT p.proretset AND p.provolatile IN ('s', 'i')
          AND p.pronargs = 1 AND p.proargtypes[0] = rc.reltype
          AND rt.typtype <> 'p'
          -- The function takes the whole row, which needs SELECT on the table itself.
          AND EXISTS (SELECT 1 FROM may_become m
                      WHERE has_function_privilege(m.oid, p.oid, 'EXECUTE')
                        AND has_schema_privilege(m.oid, pn.oid, 'USAGE')
                        AND has_table_privilege(m.oid, r.oid, 'SELECT'))
      ), '[]'),
      -- An enabled trigger of this table whose function notifies (the docs page's or the
      -- project's): without one, a change to its rows reaches no subscriber.
      'notifies', r.relkind = 'v' OR EXISTS (
        SELECT 1 FROM pg_trigger tg JOIN pg_proc p ON p.oid = tg.tgfoid
        WHERE tg.tgrelid = r.oid AND NOT tg.tgisinternal AND tg.tgenabled <> 'D'
          AND p.prosrc ~* 'notify'),
      -- A view that runs with its owner's rights (not security_invoker) over a table with
      -- row-level security: the policies never see the client's role.
      'bypassesRowSecurity', r.relkind = 'v'
        AND NOT EXISTS (
          SELECT 1 FROM pg_class vc, unnest(vc.reloptions) o
          WHERE vc.oid = r.oid AND o ~* '^security_invoker=(true|on|yes|1)$')
        AND EXISTS (
          SELECT 1 FROM view_reads vr JOIN pg_class bc ON bc.oid = vr.oid
          WHERE vr.view_oid = r.oid AND bc.relrowsecurity)
    ) ORDER BY array_position($1::text[], r.nspname::text), r.relname)
    FROM rels r
  ), '[]'),
  'composites', coalesce((
    SELECT json_agg(json_build_object(
      'schema', n.nspname,
      'name', t.typname,
      'comment', obj_description(t.oid, 'pg_type'),
      'attributes', coalesce((
        SELECT json_agg(json_build_object('name', a.attname, 'type', tj.j) ORDER BY a.attnum)
        FROM pg_attribute a
        JOIN type_json tj ON tj.oid = a.atttypid
        WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped
      ), '[]')
    ) ORDER BY array_position($1::text[], n.nspname::text), t.typname)
    FROM pg_type t
    JOIN pg_namespace n ON n.oid = t.typnamespace
    JOIN pg_class c ON c.oid = t.typrelid AND c.relkind = 'c'
    WHERE n.nspname = ANY ($1::text[]) AND t.typtype = 'c'
      AND EXISTS (SELECT 1 FROM may_become m WHERE has_schema_privilege(m.oid, n.oid, 'USAGE'))
  ), '[]'),
  'enums', coalesce((
    SELECT json_agg(json_build_object(
      'schema', n.nspname,
      'name', t.typname,
      'comment', obj_description(t.oid, 'pg_type'),
      'values', (SELECT json_agg(e.enumlabel ORDER BY e.enumsortorder)
                 FROM pg_enum e WHERE e.enumtypid = t.oid)
    ) ORDER BY array_position($1::text[], n.nspname::text), t.typname)
    FROM pg_type t
    JOIN pg_namespace n ON n.oid = t.typnamespace
    WHERE n.nspname = ANY ($1::text[]) AND t.typtype = 'e'
      AND EXISTS (SELECT 1 FROM may_become m WHERE has_schema_privilege(m.oid, n.oid, 'USAGE'))
  ), '[]'),
  -- Root functions: functions of the exposed schemas returning a set of rows of a served
  -- relation, STABLE or IMMUTABLE so that they may run inside a query, with only named
  -- input arguments, that some role the login may become may execute.
  'functions', coalesce((
    SELECT json_agg(json_build_object(
      'schema', pn.nspname,
      'name', p.proname,
      'comment', obj_description(p.oid, 'pg_proc'),
      'returns', json_build_object('schema', r.nspname, 'name', r.relname),
      -- Each argument's type as the schema sees it, and as declared (a domain, say), which
      -- its value is cast to so that the right overload runs.
      'args', coalesce((
        SELECT json_agg(json_build_object('name', a.name, 'type', tj.j,
                                          'cast', a.type::regtype::text) ORDER BY a.n)
        FROM unnest(p.proargnames, p.proargtypes::oid[]) WITH ORDINALITY AS a(name, type, n)
        JOIN type_json tj ON tj.oid = a.type
      ), '[]')
    ) ORDER BY array_position($1::text[], pn.nspname::text), p.proname,
               pg_get_function_identity_arguments(p.oid))
    FROM pg_proc p
    JOIN pg_namespace pn ON pn.oid = p.pronamespace
    JOIN pg_class rc ON rc.reltype = p.prorettype
    JOIN rels r ON r.oid = rc.oid
    WHERE pn.nspname = ANY ($1::text[])
      AND p.prokind = 'f' AND p.proretset AND p.provolatile IN ('s', 'i')
      AND p.proallargtypes IS NULL
      AND (p.pronargs = 0 OR (p.proargnames IS NOT NULL
                              AND cardinality(p.proargnames) = p.pronargs
                              AND '' <> ALL (p.proargnames)))
      -- No polymorphic argument (anyelement, anyarray, …): a value cannot be cast to one.
      AND NOT EXISTS (SELECT 1 FROM unnest(p.proargtypes::oid[]) AS at(oid)
                      JOIN pg_type t ON t.oid = at.oid WHERE t.typtype = 'p')
      AND EXISTS (SELECT 1 FROM may_become m
                  WHERE has_function_privilege(m.oid, p.oid, 'EXECUTE')
                    AND has_schema_privilege(m.oid, pn.oid, 'USAGE'))
  ), '[]')
)::text
