-- +goose Up
-- Output chunks may be stored compressed (internal/store/outbuf): enc says
-- how, size is the chunk's length as the command wrote it.
ALTER TABLE command_events ADD COLUMN enc INTEGER NOT NULL DEFAULT 0 CHECK (enc IN (0, 1));
ALTER TABLE command_events ADD COLUMN size INTEGER NOT NULL DEFAULT 0 CHECK (size >= 0);
UPDATE command_events SET size = coalesce(length(data), 0);

-- +goose Down
ALTER TABLE command_events DROP COLUMN size;
ALTER TABLE command_events DROP COLUMN enc;
