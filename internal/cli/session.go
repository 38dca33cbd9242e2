package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"rdev.dev/rdev/client"
)

func newSession(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "session", Aliases: []string{"sessions"}, Short: "Create, list and end sessions"}

	var req client.SessionRequest
	var port int
	create := &cobra.Command{
		Use:   "create PROJECT (--branch B | --new-branch B [--from REF]) [--expires-in 24h] [--preview-port 8080]",
		Short: "Create a session bound to the project's running pod",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if port != 0 {
				req.PreviewPort = &port
			}
			s, err := c.CreateSession(cmd.Context(), args[0], req)
			if err != nil {
				return err
			}
			rememberSession(g, s.ID, s.ProjectID)
			if g.output == "json" {
				return g.show(cmd.OutOrStdout(), s, nil, nil)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Session %s on %s, branch %s, until %s.\nPreview: %s\nRun: rdev exec %s -- COMMAND\n",
				s.ID, s.PodName, s.Branch, fmtTime(&s.ExpiresAt), s.PreviewURL, s.ID)
			return nil
		},
	}
	create.Flags().StringVar(&req.Branch, "branch", "", "an existing branch")
	create.Flags().StringVar(&req.NewBranch, "new-branch", "", "a branch to create on the server")
	create.Flags().StringVar(&req.FromRef, "from", "", "branch, tag or commit to start --new-branch from")
	create.Flags().StringVar(&req.FeatureSlug, "slug", "", "a feature slug")
	create.Flags().StringVar(&req.ExpiresIn, "expires-in", "", "lifetime, e.g. 4h or 7d (default 24h, at most 30d)")
	create.Flags().IntVar(&port, "preview-port", 0, "the port the session's app listens on (default 8080; commands get it as $PORT)")

	list := &cobra.Command{
		Use:   "list PROJECT",
		Short: "List a project's sessions",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			ss, _, err := c.ListSessions(cmd.Context(), args[0], client.ListOptions{Limit: 500})
			if err != nil {
				return err
			}
			if ss == nil {
				ss = []client.Session{}
			}
			return g.showSessions(cmd, ss, ss)
		},
	}
	get := &cobra.Command{
		Use:   "get [PROJECT/]SESSION",
		Short: "Show a session",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			project, sid, err := sessionRef(g, args[0])
			if err != nil {
				return err
			}
			s, err := c.GetSession(cmd.Context(), project, sid)
			if err != nil {
				return err
			}
			return g.showSessions(cmd, s, []client.Session{*s})
		},
	}
	var in client.CheckinRequest
	checkin := &cobra.Command{
		Use:   "checkin [PROJECT/]SESSION [--skip-review] [--auto-merge]",
		Short: "End a session: token revoked, preview removed, review queued",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			project, sid, err := sessionRef(g, args[0])
			if err != nil {
				return err
			}
			res, err := c.CheckinSession(cmd.Context(), project, sid, in)
			if err != nil {
				return err
			}
			if g.output == "json" {
				return g.show(cmd.OutOrStdout(), res, nil, nil)
			}
			fmt.Fprintln(cmd.OutOrStdout(), res.Message)
			if res.ReviewTaskID != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "Review task: %s\n", res.ReviewTaskID)
			}
			return nil
		},
	}
	checkin.Flags().BoolVar(&in.SkipReview, "skip-review", false, "queue no review")
	checkin.Flags().BoolVar(&in.AutoMerge, "auto-merge", false, "merge into the default branch when the review passes")
	terminate := &cobra.Command{
		Use:   "terminate [PROJECT/]SESSION",
		Short: "Force-terminate a session (admin)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			project, sid, err := sessionRef(g, args[0])
			if err != nil {
				return err
			}
			res, err := c.TerminateSession(cmd.Context(), project, sid)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), res.Message)
			return nil
		},
	}
	cmd.AddCommand(create, list, get, checkin, terminate)
	return cmd
}

func (g *globals) showSessions(cmd *cobra.Command, v any, ss []client.Session) error {
	rows := make([][]string, len(ss))
	for i, s := range ss {
		rows[i] = []string{s.ID, string(s.Status), s.PodName, s.PreviewURL, fmtTime(&s.CreatedAt), fmtTime(&s.ExpiresAt)}
	}
	return g.show(cmd.OutOrStdout(), v, []string{"ID", "STATUS", "POD", "PREVIEW", "CREATED", "EXPIRES"}, rows)
}

func sessionsPath(g *globals) (string, error) {
	p, err := configPath(g.env.Getenv)
	if err != nil {
		return "", err
	}
	return filepath.Join(filepath.Dir(p), "sessions.json"), nil
}

// rememberSession notes which project a session belongs to, so that later
// commands can name the session alone.
func rememberSession(g *globals, sid, project string) {
	p, err := sessionsPath(g)
	if err != nil {
		return
	}
	m := map[string]string{}
	if b, err := os.ReadFile(p); err == nil {
		json.Unmarshal(b, &m)
	}
	m[sid] = project
	os.MkdirAll(filepath.Dir(p), 0o700)
	b, _ := json.MarshalIndent(m, "", "  ")
	os.WriteFile(p, b, 0o600)
}

// sessionRef resolves "PROJECT/SESSION", or a session this CLI created, or
// one of $RDEV_PROJECT.
func sessionRef(g *globals, ref string) (project, sid string, err error) {
	if p, s, ok := strings.Cut(ref, "/"); ok {
		return p, s, nil
	}
	if p, err := sessionsPath(g); err == nil {
		m := map[string]string{}
		if b, err := os.ReadFile(p); err == nil && json.Unmarshal(b, &m) == nil && m[ref] != "" {
			return m[ref], ref, nil
		}
	}
	if p := g.env.Getenv("RDEV_PROJECT"); p != "" {
		return p, ref, nil
	}
	return "", "", errors.New("which project is session " + ref + " of? name it PROJECT/" + ref + " or set RDEV_PROJECT")
}
