-- The ingest schema holds every table an upload may target (the service's allow-list);
-- the lab schema holds the lab's own bookkeeping.
CREATE SCHEMA IF NOT EXISTS ingest;
CREATE SCHEMA IF NOT EXISTS lab;

-- The reference table: exactly these ten columns, in this order.
CREATE TABLE ingest.records (
    id          bigint,
    uuid        uuid,
    name        text,
    email       text,
    amount      numeric(12,2),
    quantity    integer,
    created_at  timestamptz,
    is_active   boolean,
    score       double precision,
    category    text
);

-- One row per upload attempt; the service fills it, the load audit reads it.
CREATE TABLE lab.uploads (
    upload_id        uuid PRIMARY KEY,
    target_table     text NOT NULL,
    strategy         text NOT NULL,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'loading', 'succeeded', 'failed')),
    rows             bigint,
    bytes            bigint,
    content_sha256   text,
    idempotency_key  text,
    parse_ms         double precision,
    in_db_ms         double precision,
    commit_ms        double precision,
    total_ms         double precision,
    error            jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz
);

CREATE UNIQUE INDEX uploads_idempotency_key ON lab.uploads (idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX uploads_status ON lab.uploads (status, created_at);
