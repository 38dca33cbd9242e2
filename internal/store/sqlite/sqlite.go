// Package sqlite implements rdev.Store on an SQLite file through
// modernc.org/sqlite (no cgo). Writes go through one connection, so writers
// queue in Go instead of failing with SQLITE_BUSY; reads use a pool of
// read-only connections that WAL lets run beside the writer.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"runtime"
	"time"

	"github.com/pressly/goose/v3"
	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"rdev.dev/rdev/internal/rdev"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store is an rdev.Store on SQLite.
type Store struct {
	w *sql.DB // one connection: every write
	r *sql.DB // read-only pool

	getKey, getProject *sql.Stmt
}

var _ rdev.Store = (*Store)(nil)

// Open opens (creating if needed) the database file at path and applies
// pending migrations. A failed migration is returned naming its version.
func Open(ctx context.Context, path string) (*Store, error) {
	base := "file:" + (&url.URL{Path: path}).EscapedPath()
	common := "_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)"
	w, err := sql.Open("sqlite", base+"?"+common+"&_pragma=journal_mode(WAL)&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetConnMaxIdleTime(0)
	if err := w.PingContext(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	if err := migrate(ctx, w); err != nil {
		w.Close()
		return nil, err
	}
	r, err := sql.Open("sqlite", base+"?"+common+"&_pragma=query_only(1)")
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	n := max(4, 2*runtime.GOMAXPROCS(0))
	r.SetMaxOpenConns(n)
	r.SetMaxIdleConns(n)
	s := &Store{w: w, r: r}
	if s.getKey, err = r.PrepareContext(ctx, `SELECT `+keyCols+` FROM api_keys WHERE id = ? AND deleted_at IS NULL`); err != nil {
		s.Close()
		return nil, fmt.Errorf("prepare: %w", err)
	}
	if s.getProject, err = r.PrepareContext(ctx, `SELECT `+projectCols+` FROM projects WHERE id = ?`); err != nil {
		s.Close()
		return nil, fmt.Errorf("prepare: %w", err)
	}
	return s, nil
}

func migrate(ctx context.Context, db *sql.DB) error {
	sub, _ := fs.Sub(migrations, "migrations")
	p, err := goose.NewProvider(goose.DialectSQLite3, db, sub)
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		var pe *goose.PartialError
		if errors.As(err, &pe) && pe.Failed != nil {
			return fmt.Errorf("migration %d (%s) failed: %w", pe.Failed.Source.Version, pe.Failed.Source.Path, pe.Err)
		}
		return fmt.Errorf("migrations: %w", err)
	}
	return nil
}

// Ping checks that both pools answer.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.r.PingContext(ctx); err != nil {
		return err
	}
	var one int
	return s.r.QueryRowContext(ctx, "SELECT 1").Scan(&one)
}

// Close closes both pools.
func (s *Store) Close() error {
	for _, st := range []*sql.Stmt{s.getKey, s.getProject} {
		if st != nil {
			st.Close()
		}
	}
	return errors.Join(s.r.Close(), s.w.Close())
}

func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

func nullMicros(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.UnixMicro()
}

func fromNullMicros(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := fromMicros(v.Int64)
	return &t
}

type scanner interface{ Scan(...any) error }
