-- Table variants the benchmark matrix loads into, same ten columns as ingest.records:
-- UNLOGGED skips WAL (lost on crash, fast); a primary key adds index maintenance.
CREATE UNLOGGED TABLE ingest.records_unlogged (LIKE ingest.records);
CREATE TABLE ingest.records_pk (LIKE ingest.records, PRIMARY KEY (id));
