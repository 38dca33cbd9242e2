-- +goose Up
-- Output chunks may be stored compressed (internal/store/outbuf): enc says
-- how, size is the chunk's length as the command wrote it. PostgreSQL's own
-- compression would only spend time on them.
ALTER TABLE command_events ADD COLUMN enc SMALLINT NOT NULL DEFAULT 0 CHECK (enc IN (0, 1));
ALTER TABLE command_events ADD COLUMN size BIGINT NOT NULL DEFAULT 0 CHECK (size >= 0);
UPDATE command_events SET size = coalesce(length(data), 0);
ALTER TABLE command_events ALTER COLUMN data SET STORAGE EXTERNAL;

-- +goose Down
ALTER TABLE command_events ALTER COLUMN data SET STORAGE EXTENDED;
ALTER TABLE command_events DROP COLUMN size;
ALTER TABLE command_events DROP COLUMN enc;
