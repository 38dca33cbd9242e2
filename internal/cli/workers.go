package cli

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"rdev.dev/rdev/client"
)

func newWorkers(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "workers", Short: "The worker pool and its tasks"}
	pool := &cobra.Command{
		Use:   "pool",
		Short: "Show the pool's capacity and the queue",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			p, err := c.Pool(cmd.Context())
			if err != nil {
				return err
			}
			var kinds []string
			for k, n := range p.QueueDepthByKind {
				kinds = append(kinds, k+"="+strconv.Itoa(n))
			}
			sort.Strings(kinds)
			return g.show(cmd.OutOrStdout(), p, []string{"ONLINE", "CAPACITY", "BUSY", "IDLE", "QUEUED", "BY KIND", "OLDEST QUEUED"},
				[][]string{{strconv.Itoa(p.WorkersOnline), strconv.Itoa(p.Capacity), strconv.Itoa(p.Busy), strconv.Itoa(p.Idle),
					strconv.Itoa(p.QueueDepth), orDash(strings.Join(kinds, ",")), fmt.Sprintf("%.1fs", p.OldestQueuedAgeSeconds)}})
		},
	}
	var f client.TaskFilter
	tasks := &cobra.Command{
		Use:   "tasks",
		Short: "List tasks, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			ts, next, err := c.ListTasks(cmd.Context(), f)
			if err != nil {
				return err
			}
			rows := make([][]string, len(ts))
			for i, t := range ts {
				rows[i] = []string{t.ID, t.Kind, t.ProjectID, t.Status, fmt.Sprintf("%d/%d", t.Attempts, t.MaxAttempts), fmtTime(&t.CreatedAt), orDash(verdict(t))}
			}
			if next != "" && g.output != "json" {
				defer fmt.Fprintf(cmd.ErrOrStderr(), "more: --cursor %s\n", next)
			}
			return g.show(cmd.OutOrStdout(), map[string]any{"tasks": ts, "next_cursor": next}, []string{"ID", "KIND", "PROJECT", "STATUS", "ATTEMPTS", "CREATED", "VERDICT"}, rows)
		},
	}
	tasks.Flags().StringVar(&f.Kind, "kind", "", "only tasks of this kind")
	tasks.Flags().StringVar(&f.Status, "status", "", "only tasks in this status")
	tasks.Flags().StringVar(&f.Project, "project", "", "only tasks of this project")
	tasks.Flags().IntVar(&f.Limit, "limit", 0, "page size")
	tasks.Flags().StringVar(&f.Cursor, "cursor", "", "page to read")
	logs := &cobra.Command{
		Use:   "logs TASK",
		Short: "Print a task's log, following it until the task finishes",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			exit, err := c.FollowTask(cmd.Context(), args[0], 0, func(e client.Event) error {
				switch e.Type {
				case "stdout":
					os.Stdout.Write(e.Data)
				case "stderr":
					os.Stderr.Write(e.Data)
				}
				return nil
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "task %s: %s\n", args[0], exit.Reason)
			return nil
		},
	}
	cmd.AddCommand(pool, tasks, logs)
	return cmd
}

// verdict is a review task's verdict, if it has one.
func verdict(t client.Task) string {
	if len(t.Result) == 0 {
		return ""
	}
	s := t.Summary()
	if s.Merged {
		return s.Verdict + ", merged"
	}
	return s.Verdict
}
