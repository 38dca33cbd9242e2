package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"rdev.dev/rdev/client"
)

func newKeys(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "keys", Short: "Manage API keys (admin)"}

	var req client.KeyRequest
	var scopes []string
	create := &cobra.Command{
		Use:   "create --name NAME --scope SCOPE [--scope SCOPE…] [--project ID…] [--expires-in 30d]",
		Short: "Create an API key and print its token (shown once)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			for _, s := range scopes {
				for _, part := range strings.Split(s, ",") {
					if part = strings.TrimSpace(part); part != "" {
						req.Scopes = append(req.Scopes, client.Scope(part))
					}
				}
			}
			k, err := c.CreateKey(cmd.Context(), req)
			if err != nil {
				return err
			}
			if g.output == "json" {
				return g.show(cmd.OutOrStdout(), k, nil, nil)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Created key %s (%s) with scopes %s.\nToken (shown once, keep it safe):\n%s\n",
				k.ID, k.Name, joinScopes(k.Scopes), k.Token)
			return nil
		},
	}
	create.Flags().StringVar(&req.Name, "name", "", "a name for the key")
	create.Flags().StringSliceVar(&scopes, "scope", nil, "a scope (repeat, or comma-separate): projects:read, projects:write, projects:execute, sessions:read, sessions:execute, workers:read, workers:execute, admin")
	create.Flags().StringSliceVar(&req.Projects, "project", nil, "restrict the key to these project ids (repeatable)")
	create.Flags().StringVar(&req.ExpiresIn, "expires-in", "", "lifetime, e.g. 12h or 30d (default: no expiry)")

	list := &cobra.Command{
		Use:   "list",
		Short: "List API keys",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			var all []client.APIKey
			cursor := ""
			for {
				ks, next, err := c.ListKeys(cmd.Context(), client.ListOptions{Limit: 500, Cursor: cursor})
				if err != nil {
					return err
				}
				all = append(all, ks...)
				if cursor = next; cursor == "" {
					break
				}
			}
			rows := make([][]string, len(all))
			for i, k := range all {
				rows[i] = []string{k.ID, k.Name, joinScopes(k.Scopes), orDash(strings.Join(k.Projects, ",")),
					fmtTime(&k.CreatedAt), fmtTime(k.ExpiresAt), fmtTime(k.LastUsedAt)}
			}
			if all == nil {
				all = []client.APIKey{}
			}
			return g.show(cmd.OutOrStdout(), all, []string{"ID", "NAME", "SCOPES", "PROJECTS", "CREATED", "EXPIRES", "LAST USED"}, rows)
		},
	}

	del := &cobra.Command{
		Use:   "delete ID",
		Short: "Delete an API key; it stops working at once",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if err := c.DeleteKey(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Deleted key %s\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(create, list, del)
	return cmd
}

func joinScopes(s []client.Scope) string {
	out := make([]string, len(s))
	for i, x := range s {
		out[i] = string(x)
	}
	return strings.Join(out, ",")
}
