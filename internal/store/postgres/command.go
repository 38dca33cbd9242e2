package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"rdev.dev/rdev/internal/rdev"
	"rdev.dev/rdev/internal/store/outbuf"
)

const commandCols = `id, session_id, project_id, spec, status, exit_code, signal, pid, started_at, ended_at, bytes, dropped_bytes, last_event_id`

func scanCommand(row pgx.Row) (*rdev.Command, error) {
	var c rdev.Command
	if err := row.Scan(&c.ID, &c.SessionID, &c.ProjectID, &c.Spec, &c.Status, &c.ExitCode, &c.Signal, &c.PID, &c.StartedAt, &c.EndedAt,
		&c.Bytes, &c.DroppedBytes, &c.LastEventID); err != nil {
		return nil, err
	}
	c.StartedAt, c.EndedAt = utc(c.StartedAt), utcPtr(c.EndedAt)
	return &c, nil
}

type eventMeta struct {
	ExitCode *int   `json:"exit_code,omitempty"`
	Signal   string `json:"signal,omitempty"`
	Reason   string `json:"reason,omitempty"`
	PID      int    `json:"pid,omitempty"`
}

// CreateCommand inserts c.
func (s *Store) CreateCommand(ctx context.Context, c *rdev.Command) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO commands (`+commandCols+`) VALUES ($1, $2, $3, $4, $5, NULL, '', $6, $7, NULL, 0, 0, 0)`,
		c.ID, c.SessionID, c.ProjectID, c.Spec, c.Status, c.PID, c.StartedAt)
	return err
}

// GetCommand returns a command of the session, or rdev.ErrCommandNotFound.
func (s *Store) GetCommand(ctx context.Context, sessionID, id string) (*rdev.Command, error) {
	c, err := scanCommand(s.pool.QueryRow(ctx, `SELECT `+commandCols+` FROM commands WHERE id = $1 AND session_id = $2`, id, sessionID))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, rdev.ErrCommandNotFound
	}
	return c, err
}

// ListCommands returns a page of the session's commands, newest first.
func (s *Store) ListCommands(ctx context.Context, sessionID string, page rdev.Page) ([]*rdev.Command, string, error) {
	q := `SELECT ` + commandCols + ` FROM commands WHERE session_id = $1`
	args := []any{sessionID, page.Limit + 1}
	if page.Cursor != "" {
		t, id, err := rdev.DecodeCursor(page.Cursor)
		if err != nil {
			return nil, "", err
		}
		q += ` AND (started_at, id) < ($3, $4)`
		args = append(args, t, id)
	}
	rows, err := s.pool.Query(ctx, q+` ORDER BY started_at DESC, id DESC LIMIT $2`, args...)
	if err != nil {
		return nil, "", err
	}
	out, err := collect(rows, scanCommand)
	if err != nil {
		return nil, "", err
	}
	out, next := rdev.TrimPage(out, page.Limit, func(last *rdev.Command) string { return rdev.EncodeCursor(last.StartedAt, last.ID) })
	return out, next, nil
}

// AppendEvents stores events and keeps the stored output within maxBytes.
func (s *Store) AppendEvents(ctx context.Context, commandID string, events []rdev.Event, outputBytes, maxBytes int64) (int64, error) {
	if len(events) == 0 {
		return 0, nil
	}
	var dropped int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		batch := &pgx.Batch{}
		for _, e := range events {
			meta, _ := json.Marshal(eventMeta{ExitCode: e.ExitCode, Signal: e.Signal, Reason: e.Reason, PID: e.PID})
			data, enc := outbuf.Pack(e.Data)
			batch.Queue(`INSERT INTO command_events (command_id, id, type, data, enc, size, meta, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
				commandID, e.ID, e.Type, data, enc, len(e.Data), string(meta), e.At)
		}
		if err := tx.SendBatch(ctx, batch).Close(); err != nil {
			return err
		}
		var stored int64
		if err := tx.QueryRow(ctx, `UPDATE commands SET bytes = bytes + $1, stored_bytes = stored_bytes + $1, last_event_id = $2
			WHERE id = $3 RETURNING stored_bytes`, outputBytes, events[len(events)-1].ID, commandID).Scan(&stored); err != nil {
			return err
		}
		if maxBytes <= 0 || stored <= maxBytes {
			return nil
		}
		rows, err := tx.Query(ctx, `SELECT id, size FROM command_events WHERE command_id = $1 AND type IN ('stdout', 'stderr') ORDER BY id`, commandID)
		if err != nil {
			return err
		}
		var upTo int64
		for stored-dropped > maxBytes && rows.Next() {
			var id, n int64
			if err := rows.Scan(&id, &n); err != nil {
				rows.Close()
				return err
			}
			dropped, upTo = dropped+n, id
		}
		rows.Close()
		if _, err := tx.Exec(ctx, `DELETE FROM command_events WHERE command_id = $1 AND type IN ('stdout', 'stderr') AND id <= $2`, commandID, upTo); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE commands SET stored_bytes = stored_bytes - $1, dropped_bytes = dropped_bytes + $1 WHERE id = $2`, dropped, commandID)
		return err
	})
	return dropped, err
}

// FinishCommand records the end of a running command.
func (s *Store) FinishCommand(ctx context.Context, c *rdev.Command) error {
	tag, err := s.pool.Exec(ctx, `UPDATE commands SET status = $1, exit_code = $2, signal = $3, ended_at = $4 WHERE id = $5 AND status = 'running'`,
		c.Status, c.ExitCode, c.Signal, c.EndedAt, c.ID)
	return oneRow(tag, err, rdev.ErrCommandNotRunning)
}

// ListEvents returns at most limit events after the id after.
func (s *Store) ListEvents(ctx context.Context, commandID string, after int64, limit int) ([]rdev.Event, error) {
	return s.listEvents(ctx, "command_events", "command_id", commandID, after, limit)
}

// listEvents reads the events of one command or task (table and owner
// column name which) after the id after.
func (s *Store) listEvents(ctx context.Context, table, owner, id string, after int64, limit int) ([]rdev.Event, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, type, data, enc, meta, at FROM `+table+` WHERE `+owner+` = $1 AND id > $2 ORDER BY id LIMIT $3`, id, after, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []rdev.Event{}
	for rows.Next() {
		var e rdev.Event
		var m eventMeta
		var enc int
		if err := rows.Scan(&e.ID, &e.Type, &e.Data, &enc, &m, &e.At); err != nil {
			return nil, err
		}
		if e.Data, err = outbuf.Unpack(e.Data, enc); err != nil {
			return nil, fmt.Errorf("%s of %s, event %d: %w", table, id, e.ID, err)
		}
		e.ExitCode, e.Signal, e.Reason, e.PID, e.At = m.ExitCode, m.Signal, m.Reason, m.PID, utc(e.At)
		out = append(out, e)
	}
	return out, rows.Err()
}

// LoseRunningCommands marks running commands lost and appends their exit event.
func (s *Store) LoseRunningCommands(ctx context.Context, at time.Time) ([]*rdev.Command, error) {
	var lost []*rdev.Command
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `UPDATE commands SET status = 'lost', ended_at = $1, last_event_id = last_event_id + 1
			WHERE status = 'running' RETURNING `+commandCols, at)
		if err != nil {
			return err
		}
		if lost, err = collect(rows, scanCommand); err != nil {
			return err
		}
		meta, _ := json.Marshal(eventMeta{Reason: rdev.CommandLost})
		for _, c := range lost {
			if _, err := tx.Exec(ctx, `INSERT INTO command_events (command_id, id, type, data, meta, at) VALUES ($1, $2, 'exit', NULL, $3, $4)`,
				c.ID, c.LastEventID, string(meta), at); err != nil {
				return err
			}
		}
		return nil
	})
	return lost, err
}

// RunningCommands returns the session's running commands.
func (s *Store) RunningCommands(ctx context.Context, sessionID string) ([]*rdev.Command, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+commandCols+` FROM commands WHERE session_id = $1 AND status = 'running'`, sessionID)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanCommand)
}
