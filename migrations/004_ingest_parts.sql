-- Slices loaded by the parallel-freeze strategy: each is a table created and filled
-- (COPY ... FREEZE, no WAL under wal_level=minimal) in its own transaction, then attached
-- to its target table as an inheritance child. They live here, outside the ingest schema,
-- so they are never upload targets themselves; queries reach them through the target.
CREATE SCHEMA IF NOT EXISTS ingest_parts;
