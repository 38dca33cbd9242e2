package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"rdev.dev/rdev/internal/rdev"
	"rdev.dev/rdev/internal/store/outbuf"
)

const commandCols = `id, session_id, project_id, spec, status, exit_code, signal, pid, started_at, ended_at, bytes, dropped_bytes, last_event_id`

func scanCommand(row scanner) (*rdev.Command, error) {
	var c rdev.Command
	var spec string
	var exit, ended sql.NullInt64
	var started int64
	if err := row.Scan(&c.ID, &c.SessionID, &c.ProjectID, &spec, &c.Status, &exit, &c.Signal, &c.PID, &started, &ended,
		&c.Bytes, &c.DroppedBytes, &c.LastEventID); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(spec), &c.Spec); err != nil {
		return nil, fmt.Errorf("command %s: spec: %w", c.ID, err)
	}
	if exit.Valid {
		code := int(exit.Int64)
		c.ExitCode = &code
	}
	c.StartedAt, c.EndedAt = fromMicros(started), fromNullMicros(ended)
	return &c, nil
}

// eventMeta is an event's non-output fields, stored as JSON.
type eventMeta struct {
	ExitCode *int   `json:"exit_code,omitempty"`
	Signal   string `json:"signal,omitempty"`
	Reason   string `json:"reason,omitempty"`
	PID      int    `json:"pid,omitempty"`
}

// CreateCommand inserts c.
func (s *Store) CreateCommand(ctx context.Context, c *rdev.Command) error {
	spec, err := json.Marshal(c.Spec)
	if err != nil {
		return err
	}
	_, err = s.w.ExecContext(ctx, `INSERT INTO commands (`+commandCols+`) VALUES (?, ?, ?, ?, ?, NULL, '', ?, ?, NULL, 0, 0, 0)`,
		c.ID, c.SessionID, c.ProjectID, string(spec), c.Status, c.PID, micros(c.StartedAt))
	return err
}

// GetCommand returns a command of the session, or rdev.ErrCommandNotFound.
func (s *Store) GetCommand(ctx context.Context, sessionID, id string) (*rdev.Command, error) {
	c, err := scanCommand(s.r.QueryRowContext(ctx, `SELECT `+commandCols+` FROM commands WHERE id = ? AND session_id = ?`, id, sessionID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, rdev.ErrCommandNotFound
	}
	return c, err
}

// ListCommands returns a page of the session's commands, newest first.
func (s *Store) ListCommands(ctx context.Context, sessionID string, page rdev.Page) ([]*rdev.Command, string, error) {
	q := `SELECT ` + commandCols + ` FROM commands WHERE session_id = ?`
	args := []any{sessionID}
	if page.Cursor != "" {
		t, id, err := rdev.DecodeCursor(page.Cursor)
		if err != nil {
			return nil, "", err
		}
		q += ` AND (started_at, id) < (?, ?)`
		args = append(args, micros(t), id)
	}
	q += ` ORDER BY started_at DESC, id DESC LIMIT ?`
	args = append(args, page.Limit+1)
	out, err := queryAll(ctx, s.r, q, args, scanCommand)
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
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO command_events (command_id, id, type, data, enc, size, meta, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return 0, err
	}
	defer stmt.Close()
	for _, e := range events {
		meta, _ := json.Marshal(eventMeta{ExitCode: e.ExitCode, Signal: e.Signal, Reason: e.Reason, PID: e.PID})
		data, enc := outbuf.Pack(e.Data)
		if _, err := stmt.ExecContext(ctx, commandID, e.ID, e.Type, data, enc, len(e.Data), string(meta), micros(e.At)); err != nil {
			return 0, err
		}
	}
	var stored int64
	if err := tx.QueryRowContext(ctx, `UPDATE commands SET bytes = bytes + ?, stored_bytes = stored_bytes + ?, last_event_id = ?
		WHERE id = ? RETURNING stored_bytes`, outputBytes, outputBytes, events[len(events)-1].ID, commandID).Scan(&stored); err != nil {
		return 0, err
	}
	var dropped int64
	if maxBytes > 0 && stored > maxBytes {
		rows, err := tx.QueryContext(ctx, `SELECT id, size FROM command_events WHERE command_id = ? AND type IN ('stdout', 'stderr') ORDER BY id`, commandID)
		if err != nil {
			return 0, err
		}
		var upTo int64
		for stored-dropped > maxBytes && rows.Next() {
			var id, n int64
			if err := rows.Scan(&id, &n); err != nil {
				rows.Close()
				return 0, err
			}
			dropped, upTo = dropped+n, id
		}
		rows.Close()
		if _, err := tx.ExecContext(ctx, `DELETE FROM command_events WHERE command_id = ? AND type IN ('stdout', 'stderr') AND id <= ?`, commandID, upTo); err != nil {
			return 0, err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE commands SET stored_bytes = stored_bytes - ?, dropped_bytes = dropped_bytes + ? WHERE id = ?`, dropped, dropped, commandID); err != nil {
			return 0, err
		}
	}
	return dropped, tx.Commit()
}

// FinishCommand records the end of a running command.
func (s *Store) FinishCommand(ctx context.Context, c *rdev.Command) error {
	res, err := s.w.ExecContext(ctx, `UPDATE commands SET status = ?, exit_code = ?, signal = ?, ended_at = ? WHERE id = ? AND status = 'running'`,
		c.Status, c.ExitCode, c.Signal, nullMicros(c.EndedAt), c.ID)
	return oneRow(res, err, rdev.ErrCommandNotRunning)
}

// ListEvents returns at most limit events after the id after.
func (s *Store) ListEvents(ctx context.Context, commandID string, after int64, limit int) ([]rdev.Event, error) {
	return s.listEvents(ctx, "command_events", "command_id", commandID, after, limit)
}

// listEvents reads the events of one command or task (table and owner
// column name which) after the id after.
func (s *Store) listEvents(ctx context.Context, table, owner, id string, after int64, limit int) ([]rdev.Event, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT id, type, data, enc, meta, at FROM `+table+` WHERE `+owner+` = ? AND id > ? ORDER BY id LIMIT ?`, id, after, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []rdev.Event{}
	for rows.Next() {
		var e rdev.Event
		var meta string
		var at int64
		var enc int
		if err := rows.Scan(&e.ID, &e.Type, &e.Data, &enc, &meta, &at); err != nil {
			return nil, err
		}
		if e.Data, err = outbuf.Unpack(e.Data, enc); err != nil {
			return nil, fmt.Errorf("%s of %s, event %d: %w", table, id, e.ID, err)
		}
		var m eventMeta
		json.Unmarshal([]byte(meta), &m)
		e.ExitCode, e.Signal, e.Reason, e.PID, e.At = m.ExitCode, m.Signal, m.Reason, m.PID, fromMicros(at)
		out = append(out, e)
	}
	return out, rows.Err()
}

// LoseRunningCommands marks running commands lost and appends their exit event.
func (s *Store) LoseRunningCommands(ctx context.Context, at time.Time) ([]*rdev.Command, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	lost, err := queryAll(ctx, tx, `UPDATE commands SET status = 'lost', ended_at = ?, last_event_id = last_event_id + 1
		WHERE status = 'running' RETURNING `+commandCols, []any{micros(at)}, scanCommand)
	if err != nil {
		return nil, err
	}
	meta, _ := json.Marshal(eventMeta{Reason: rdev.CommandLost})
	for _, c := range lost {
		if _, err := tx.ExecContext(ctx, `INSERT INTO command_events (command_id, id, type, data, meta, at) VALUES (?, ?, 'exit', NULL, ?, ?)`,
			c.ID, c.LastEventID, string(meta), micros(at)); err != nil {
			return nil, err
		}
	}
	return lost, tx.Commit()
}

// RunningCommands returns the session's running commands.
func (s *Store) RunningCommands(ctx context.Context, sessionID string) ([]*rdev.Command, error) {
	return queryAll(ctx, s.r, `SELECT `+commandCols+` FROM commands WHERE session_id = ? AND status = 'running'`, []any{sessionID}, scanCommand)
}
