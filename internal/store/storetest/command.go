package storetest

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"rdev.dev/rdev/internal/rdev"
)

func testCommands(t *testing.T, open Opener) {
	setup := func(t *testing.T) (rdev.Store, *rdev.Session) {
		st := open(t)
		must(t, st.CreateProject(ctx(t), project("web", t0)))
		s, co := session("web", "a", t0)
		must(t, st.CreateSession(ctx(t), s, co))
		return st, s
	}
	newCmd := func(s *rdev.Session, at time.Time) *rdev.Command {
		return &rdev.Command{ID: rdev.NewID("x"), SessionID: s.ID, ProjectID: s.ProjectID, Status: rdev.CommandRunning, PID: 42,
			Spec: rdev.CommandSpec{Argv: []string{"echo", "hi"}, Env: map[string]string{"A": "1"}, Cwd: "sub", Timeout: "5s", Stdin: true}, StartedAt: at}
	}
	out := func(id int64, typ, data string) rdev.Event {
		return rdev.Event{ID: id, Type: typ, Data: []byte(data), At: t0}
	}
	t.Run("LifecycleAndReplay", func(t *testing.T) {
		st, s := setup(t)
		c := ctx(t)
		cmd := newCmd(s, t0)
		must(t, st.CreateCommand(c, cmd))
		got, err := st.GetCommand(c, s.ID, cmd.ID)
		must(t, err)
		if got.Status != "running" || got.Spec.Cwd != "sub" || got.Spec.Env["A"] != "1" || !got.Spec.Stdin || got.PID != 42 {
			t.Fatalf("got %+v", got)
		}
		_, err = st.GetCommand(c, "sother", cmd.ID)
		wantErr(t, err, rdev.ErrCommandNotFound)
		_, err = st.AppendEvents(c, cmd.ID, []rdev.Event{{ID: 1, Type: "start", PID: 42, At: t0}, out(2, "stdout", "out\n"), out(3, "stderr", "\xff\x00bin")}, 9, 0)
		must(t, err)
		code := 3
		_, err = st.AppendEvents(c, cmd.ID, []rdev.Event{{ID: 4, Type: "exit", ExitCode: &code, Reason: "exited", At: t0}}, 0, 0)
		must(t, err)
		end := t0.Add(time.Second)
		cmd.Status, cmd.ExitCode, cmd.EndedAt = rdev.CommandExited, &code, &end
		must(t, st.FinishCommand(c, cmd))
		wantErr(t, st.FinishCommand(c, cmd), rdev.ErrCommandNotRunning)
		evs, err := st.ListEvents(c, cmd.ID, 1, 10)
		must(t, err)
		if len(evs) != 3 || evs[0].ID != 2 || string(evs[0].Data) != "out\n" || !bytes.Equal(evs[1].Data, []byte("\xff\x00bin")) ||
			evs[2].Type != "exit" || *evs[2].ExitCode != 3 || evs[2].Reason != "exited" {
			t.Fatalf("events after 1: %+v", evs)
		}
		all, _ := st.ListEvents(c, cmd.ID, 0, 2)
		if len(all) != 2 || all[0].PID != 42 {
			t.Fatalf("limited: %+v", all)
		}
		got, _ = st.GetCommand(c, s.ID, cmd.ID)
		if got.Bytes != 9 || got.LastEventID != 4 || got.Status != "exited" || *got.ExitCode != 3 || got.EndedAt == nil {
			t.Fatalf("after finish: %+v", got)
		}
	})
	t.Run("OutputBoundDropsOldest", func(t *testing.T) {
		st, s := setup(t)
		c := ctx(t)
		cmd := newCmd(s, t0)
		must(t, st.CreateCommand(c, cmd))
		var total int64
		for i := int64(1); i <= 10; i++ {
			d, err := st.AppendEvents(c, cmd.ID, []rdev.Event{out(i, "stdout", fmt.Sprintf("%09d\n", i))}, 10, 35)
			must(t, err)
			total += d
		}
		got, _ := st.GetCommand(c, s.ID, cmd.ID)
		if got.Bytes != 100 || got.DroppedBytes != total || total != 70 {
			t.Fatalf("bytes %d dropped %d (returned %d)", got.Bytes, got.DroppedBytes, total)
		}
		evs, _ := st.ListEvents(c, cmd.ID, 0, 100)
		if len(evs) != 3 || evs[0].ID != 8 || string(evs[2].Data) != "000000010\n" {
			t.Fatalf("kept %+v", evs)
		}
	})
	t.Run("CompressibleOutputKeptExactlyAndBoundedByItsLength", func(t *testing.T) {
		// Chunks are stored compressed when that pays; replay gives the
		// bytes back and the bound counts them as the command wrote them.
		st, s := setup(t)
		c := ctx(t)
		cmd := newCmd(s, t0)
		must(t, st.CreateCommand(c, cmd))
		chunk := func(i int64) string { return strings.Repeat(fmt.Sprintf("line of chunk %d\n", i), 400) }
		size := int64(len(chunk(1)))
		var total int64
		for i := int64(1); i <= 5; i++ {
			d, err := st.AppendEvents(c, cmd.ID, []rdev.Event{out(i, "stdout", chunk(i))}, size, 3*size)
			must(t, err)
			total += d
		}
		got, _ := st.GetCommand(c, s.ID, cmd.ID)
		if got.Bytes != 5*size || got.DroppedBytes != 2*size || total != 2*size {
			t.Fatalf("bytes %d dropped %d (returned %d), chunk %d", got.Bytes, got.DroppedBytes, total, size)
		}
		evs, _ := st.ListEvents(c, cmd.ID, 0, 100)
		if len(evs) != 3 {
			t.Fatalf("kept %d events", len(evs))
		}
		for i, e := range evs {
			if e.ID != int64(i+3) || string(e.Data) != chunk(e.ID) {
				t.Fatalf("event %d: id %d, %d bytes differ from what was written", i, e.ID, len(e.Data))
			}
		}
	})
	t.Run("LoseRunning", func(t *testing.T) {
		st, s := setup(t)
		c := ctx(t)
		running, done := newCmd(s, t0), newCmd(s, t0.Add(time.Second))
		must(t, st.CreateCommand(c, running))
		must(t, st.CreateCommand(c, done))
		_, err := st.AppendEvents(c, running.ID, []rdev.Event{{ID: 1, Type: "start", At: t0}, out(2, "stdout", "partial")}, 7, 0)
		must(t, err)
		end := t0
		done.Status, done.EndedAt = rdev.CommandKilled, &end
		must(t, st.FinishCommand(c, done))
		rs, err := st.RunningCommands(c, s.ID)
		must(t, err)
		if len(rs) != 1 || rs[0].ID != running.ID {
			t.Fatalf("running: %+v", rs)
		}
		lost, err := st.LoseRunningCommands(c, t0.Add(time.Minute))
		must(t, err)
		if len(lost) != 1 || lost[0].ID != running.ID || lost[0].Status != "lost" {
			t.Fatalf("lost: %+v", lost)
		}
		evs, _ := st.ListEvents(c, running.ID, 0, 10)
		if len(evs) != 3 || string(evs[1].Data) != "partial" || evs[2].Type != "exit" || evs[2].Reason != "lost" || evs[2].ID != 3 {
			t.Fatalf("events of the lost command: %+v", evs)
		}
		cs, _, err := st.ListCommands(c, s.ID, rdev.Page{Limit: 10})
		must(t, err)
		if len(cs) != 2 || cs[0].ID != done.ID {
			t.Fatalf("list: %d", len(cs))
		}
	})
}
