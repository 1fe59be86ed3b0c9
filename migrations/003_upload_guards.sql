-- Hardening of the upload ledger (see docs/security.md).

-- An Idempotency-Key belongs to at most one attempt that is loading or succeeded; a failed
-- attempt gives its key back, so the client's retry with the same key can run.
DROP INDEX lab.uploads_idempotency_key;
CREATE UNIQUE INDEX uploads_idempotency_key_live ON lab.uploads (idempotency_key)
    WHERE idempotency_key IS NOT NULL AND status <> 'failed';

-- The statement a strategy runs inside its load transaction, just before COMMIT. It
-- refuses to mark an attempt succeeded that is no longer 'loading' (the reaper gave it up
-- as orphaned), so the transaction rolls back and rows and ledger never disagree.
CREATE FUNCTION lab.finish_upload(p_upload_id uuid, p_rows bigint, p_bytes bigint, p_sha256 text)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    UPDATE lab.uploads
       SET status = 'succeeded', rows = p_rows, bytes = p_bytes, content_sha256 = p_sha256,
           finished_at = clock_timestamp()
     WHERE upload_id = p_upload_id AND status = 'loading';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'upload % is no longer loading; its rows are rolled back', p_upload_id
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
END
$$;
