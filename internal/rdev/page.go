package rdev

import (
	"encoding/base64"
	"strconv"
	"strings"
	"time"
)

// Page bounds a list: at most Limit items after the position Cursor names.
type Page struct {
	Limit  int
	Cursor string
}

// Default and maximum page sizes.
const (
	DefaultPageLimit = 50
	MaxPageLimit     = 500
)

// ParsePage validates a limit and cursor from a query string. An empty limit
// means DefaultPageLimit.
func ParsePage(limit, cursor string) (Page, error) {
	p := Page{Limit: DefaultPageLimit, Cursor: cursor}
	if limit != "" {
		n, err := strconv.Atoi(limit)
		if err != nil || n < 1 || n > MaxPageLimit {
			return p, Invalid("limit", "must be an integer between 1 and %d", MaxPageLimit)
		}
		p.Limit = n
	}
	if cursor != "" {
		if _, _, err := DecodeCursor(cursor); err != nil {
			return p, err
		}
	}
	return p, nil
}

// EncodeCursor makes an opaque cursor for the position (t, id) in a list
// ordered by time, then id, descending.
func EncodeCursor(t time.Time, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(t.UnixMicro(), 10) + ":" + id))
}

// DecodeCursor reverses EncodeCursor. It returns an *InvalidError for a
// cursor it did not make.
func DecodeCursor(c string) (time.Time, string, error) {
	bad := Invalid("cursor", "invalid cursor")
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return time.Time{}, "", bad
	}
	ts, id, ok := strings.Cut(string(b), ":")
	if !ok || id == "" {
		return time.Time{}, "", bad
	}
	us, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return time.Time{}, "", bad
	}
	return time.UnixMicro(us).UTC(), id, nil
}

// Timestamp truncates t to the microsecond in UTC, the precision every store
// keeps, so values read back compare equal to what was written.
func Timestamp(t time.Time) time.Time {
	return t.UTC().Truncate(time.Microsecond)
}

// TrimPage takes the rows of a query that asked for limit+1, keeps limit of
// them, and returns the cursor of the next page ("" when there is none).
func TrimPage[T any](rows []T, limit int, cursor func(T) string) ([]T, string) {
	if len(rows) <= limit {
		return rows, ""
	}
	rows = rows[:limit]
	return rows, cursor(rows[limit-1])
}
