-- Installed by deploy/local/stack into FerretDB's PostgreSQL database on
-- every `up` (idempotent). Not used by the SQLite backend.
--
-- FerretDB 1.24 stores a collection as a table with one `_jsonb` column and
-- makes every MongoDB index a btree index on expressions like
-- `(_jsonb -> 'field')`. Its queries filter with containment instead,
-- `_jsonb -> 'field' @> '<value>'`, which a btree cannot serve: without
-- help even a lookup by `_id` reads the whole table (docs/storage.md).
-- So for every such btree index this trigger adds a GIN index (which serves
-- `@>`) on each of its expressions; the stack's `plan_cache_mode =
-- force_custom_plan` lets the planner see the field name, a bind parameter,
-- as the constant the index names. It fires for the indexes FerretDB creates
-- at run time, in databases (schemas) it creates at run time.

SET client_min_messages = warning;

CREATE OR REPLACE FUNCTION kami_gin_beside_ferretdb_indexes() RETURNS event_trigger
LANGUAGE plpgsql AS $$
DECLARE
  created record;
  expression text;
  path text[];
BEGIN
  FOR created IN
    SELECT i.indexrelid, i.indrelid, n.nspname AS schema_name, t.relname AS table_name
      FROM pg_event_trigger_ddl_commands() AS c
      JOIN pg_index AS i ON i.indexrelid = c.objid
      JOIN pg_class AS ix ON ix.oid = i.indexrelid
      JOIN pg_am AS am ON am.oid = ix.relam
      JOIN pg_class AS t ON t.oid = i.indrelid
      JOIN pg_namespace AS n ON n.oid = t.relnamespace
     WHERE c.command_tag = 'CREATE INDEX'
       -- Only btree: the GIN indexes created below fire this trigger again
       -- and stop here, so it never recurses.
       AND am.amname = 'btree'
       AND i.indexprs IS NOT NULL
       AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'public')
       -- FerretDB's own tables: a `_jsonb` column.
       AND EXISTS (SELECT 1 FROM pg_attribute AS a
                    WHERE a.attrelid = t.oid AND a.attname = '_jsonb' AND NOT a.attisdropped)
  LOOP
    -- One GIN index per distinct expression of the table (a compound index
    -- (a, b) gets one on a and one on b; the planner ANDs them).
    FOR expression IN
      SELECT pg_get_indexdef(created.indexrelid, k, true)
        FROM generate_series(1, (SELECT indnkeyatts FROM pg_index
                                   WHERE indexrelid = created.indexrelid)) AS k
    LOOP
      CONTINUE WHEN expression !~ '^\(*_jsonb -> ';
      -- A dotted field (a.b) is indexed as `_jsonb -> 'a' -> 'b'` but
      -- queried as `_jsonb #> '{a,b}'`: index what the query says.
      SELECT array_agg(replace(m[1], '''''', '''') ORDER BY n) INTO path
        FROM regexp_matches(expression, '''((?:[^'']|'''')*)''::text', 'g')
             WITH ORDINALITY AS t(m, n);
      IF array_length(path, 1) > 1 THEN
        expression := format('_jsonb #> %L::text[]', path);
      END IF;
      EXECUTE format(
        'CREATE INDEX IF NOT EXISTS %I ON %I.%I USING gin ((%s) jsonb_path_ops)',
        'kami_gin_' || left(md5(created.table_name || ' ' || expression), 24),
        created.schema_name, created.table_name, expression);
    END LOOP;
  END LOOP;
END
$$;

DROP EVENT TRIGGER IF EXISTS kami_gin_beside_ferretdb_indexes;
CREATE EVENT TRIGGER kami_gin_beside_ferretdb_indexes ON ddl_command_end
  WHEN TAG IN ('CREATE INDEX')
  EXECUTE FUNCTION kami_gin_beside_ferretdb_indexes();
