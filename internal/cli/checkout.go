package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"rdev.dev/rdev/client"
)

func newCheckout(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "checkout", Aliases: []string{"checkouts"}, Short: "Check out branches and check them in"}

	var req client.CheckoutRequest
	create := &cobra.Command{
		Use:   "create PROJECT (--branch B | --new-branch B [--from REF]) [--slug S] [--expires-in 24h]",
		Short: "Check out a branch; prints its git token once and saves it for `rdev git-credential`",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			co, err := c.CreateCheckout(cmd.Context(), args[0], req)
			if err != nil {
				return err
			}
			if err := saveCheckoutToken(g, co.CloneURL, co.ID, co.Token); err != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: the token was not saved for git-credential: %v\n", err)
			}
			if g.output == "json" {
				return g.show(cmd.OutOrStdout(), co, nil, nil)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Checked out %s of %s as %s until %s.\nToken (shown once; saved for rdev git-credential):\n%s\n\n%s\n",
				co.Branch, co.ProjectID, co.ID, fmtTime(&co.ExpiresAt), co.Token, co.Instructions)
			return nil
		},
	}
	create.Flags().StringVar(&req.Branch, "branch", "", "an existing branch")
	create.Flags().StringVar(&req.NewBranch, "new-branch", "", "a branch to create on the server")
	create.Flags().StringVar(&req.FromRef, "from", "", "branch, tag or commit to start --new-branch from (default: the default branch)")
	create.Flags().StringVar(&req.FeatureSlug, "slug", "", "a feature slug (a DNS label)")
	create.Flags().StringVar(&req.ExpiresIn, "expires-in", "", "lifetime, e.g. 4h or 7d (default 24h, at most 30d)")

	list := &cobra.Command{
		Use:   "list PROJECT",
		Short: "List a project's checkouts",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			all := []client.Checkout{}
			cursor := ""
			for {
				cs, next, err := c.ListCheckouts(cmd.Context(), args[0], client.ListOptions{Limit: 500, Cursor: cursor})
				if err != nil {
					return err
				}
				all = append(all, cs...)
				if cursor = next; cursor == "" {
					break
				}
			}
			return g.showCheckouts(cmd, all, all)
		},
	}

	get := &cobra.Command{
		Use:   "get PROJECT ID",
		Short: "Show a checkout",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			co, err := c.GetCheckout(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			return g.showCheckouts(cmd, co, []client.Checkout{*co})
		},
	}

	var in client.CheckinRequest
	checkin := &cobra.Command{
		Use:   "checkin PROJECT ID [--skip-review] [--auto-merge]",
		Short: "Check a checkout in: its token stops working, and a review is queued",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			res, err := c.CheckinCheckout(cmd.Context(), args[0], args[1], in)
			if err != nil {
				return err
			}
			forgetCheckoutToken(g, args[1])
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

	cmd.AddCommand(create, list, get, checkin)
	return cmd
}

func (g *globals) showCheckouts(cmd *cobra.Command, v any, cs []client.Checkout) error {
	rows := make([][]string, len(cs))
	for i, c := range cs {
		rows[i] = []string{c.ID, c.Branch, string(c.Status), fmtTime(&c.CreatedAt), fmtTime(&c.ExpiresAt), orDash(c.ReviewTaskID)}
	}
	return g.show(cmd.OutOrStdout(), v, []string{"ID", "BRANCH", "STATUS", "CREATED", "EXPIRES", "REVIEW TASK"}, rows)
}

// savedToken is a checkout token kept for `rdev git-credential`.
type savedToken struct {
	CloneURL string `json:"clone_url"`
	ID       string `json:"id"`
	Token    string `json:"token"`
}

func tokensPath(g *globals) (string, error) {
	p, err := configPath(g.env.Getenv)
	if err != nil {
		return "", err
	}
	return filepath.Join(filepath.Dir(p), "checkouts.json"), nil
}

func readTokens(g *globals) ([]savedToken, error) {
	p, err := tokensPath(g)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ts []savedToken
	return ts, json.Unmarshal(b, &ts)
}

func writeTokens(g *globals, ts []savedToken) error {
	p, err := tokensPath(g)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(ts, "", "  ")
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

func saveCheckoutToken(g *globals, cloneURL, id, token string) error {
	ts, err := readTokens(g)
	if err != nil {
		return err
	}
	// One token per checkout: clone URLs name their checkout.
	kept := []savedToken{{CloneURL: cloneURL, ID: id, Token: token}}
	for _, t := range ts {
		if t.ID != id {
			kept = append(kept, t)
		}
	}
	return writeTokens(g, kept)
}

func forgetCheckoutToken(g *globals, id string) {
	ts, err := readTokens(g)
	if err != nil {
		return
	}
	kept := ts[:0]
	for _, t := range ts {
		if t.ID != id {
			kept = append(kept, t)
		}
	}
	writeTokens(g, kept)
}
