package cli

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newPreview(g *globals) *cobra.Command {
	var ttl string
	cmd := &cobra.Command{
		Use:   "preview [PROJECT/]SESSION [--ttl 1h]",
		Short: "Print a signed link to a session's preview",
		Long: `Print a signed link to a session's preview. Opening it trades its token for a
cookie scoped to that preview; the link dies with the session.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			project, sid, err := sessionRef(g, args[0])
			if err != nil {
				return err
			}
			link, err := c.CreatePreviewLink(cmd.Context(), project, sid, ttl)
			if err != nil {
				return err
			}
			if g.output == "json" {
				return g.show(cmd.OutOrStdout(), link, nil, nil)
			}
			fmt.Fprintln(cmd.OutOrStdout(), link.URL)
			return nil
		},
	}
	cmd.Flags().StringVar(&ttl, "ttl", "", "how long the link works (default 1h, at most 168h)")
	return cmd
}
