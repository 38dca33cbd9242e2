package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"rdev.dev/rdev/internal/rdev"
	"rdev.dev/rdev/internal/store/sqlite"
	"rdev.dev/rdev/internal/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) rdev.Store {
		s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "rdev.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}
