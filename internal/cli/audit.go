package cli

import (
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"rdev.dev/rdev/client"
)

func newAudit(g *globals) *cobra.Command {
	var f client.AuditFilter
	var since string
	cmd := &cobra.Command{
		Use:   "audit [--key ID] [--target T] [--since 1h|RFC3339] [--limit N]",
		Short: "Show the audit log (admin)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if since != "" {
				if d, err := time.ParseDuration(since); err == nil {
					f.Since = time.Now().Add(-d)
				} else if t, err := time.Parse(time.RFC3339, since); err == nil {
					f.Since = t
				} else {
					return fmt.Errorf("--since must be a duration (1h) or an RFC 3339 time")
				}
			}
			es, _, err := c.ListAudit(cmd.Context(), f)
			if err != nil {
				return err
			}
			rows := make([][]string, len(es))
			for i, e := range es {
				rows[i] = []string{fmtTime(&e.At), e.KeyID, e.Method, e.Route, e.Target, strconv.Itoa(e.Status), e.RequestID}
			}
			if es == nil {
				es = []client.AuditEntry{}
			}
			return g.show(cmd.OutOrStdout(), es, []string{"AT", "KEY", "METHOD", "ROUTE", "TARGET", "STATUS", "REQUEST ID"}, rows)
		},
	}
	cmd.Flags().StringVar(&f.KeyID, "key", "", "only this key id")
	cmd.Flags().StringVar(&f.Target, "target", "", "only this target, e.g. project/web")
	cmd.Flags().StringVar(&since, "since", "", "only entries since this long ago (1h) or this time")
	cmd.Flags().IntVar(&f.Limit, "limit", 50, "at most this many entries")
	return cmd
}
