package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"rdev.dev/rdev/client"
)

func newProjects(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "projects", Aliases: []string{"project"}, Short: "Manage projects"}

	var req client.ProjectRequest
	var file string
	create := &cobra.Command{
		Use:   "create ID --name NAME [--default-branch B] [--protected PATTERN…] [--review-command CMD] [--file spec.json]",
		Short: "Register a project",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			r := client.ProjectRequest{}
			if file != "" {
				b, err := os.ReadFile(file)
				if err != nil {
					return err
				}
				dec := json.NewDecoder(bytes.NewReader(b))
				dec.DisallowUnknownFields()
				if err := dec.Decode(&r); err != nil {
					return fmt.Errorf("%s: %w", file, err)
				}
			}
			if len(args) == 1 {
				r.ID = args[0]
			}
			if req.Name != "" {
				r.Name = req.Name
			}
			if r.Name == "" {
				r.Name = r.ID
			}
			if req.DefaultBranch != "" {
				r.DefaultBranch = req.DefaultBranch
			}
			if req.ProtectedBranches != nil {
				r.ProtectedBranches = req.ProtectedBranches
			}
			if req.ReviewCommand != "" {
				r.ReviewCommand = req.ReviewCommand
			}
			if req.ImportFrom != "" {
				r.ImportFrom = req.ImportFrom
			}
			if r.ID == "" {
				return fmt.Errorf("a project id is required: rdev projects create ID")
			}
			p, err := c.CreateProject(cmd.Context(), r)
			if err != nil {
				return err
			}
			return g.showProjects(cmd, p, []client.Project{*p})
		},
	}
	create.Flags().StringVar(&req.Name, "name", "", "display name (default: the id)")
	create.Flags().StringVar(&req.DefaultBranch, "default-branch", "", "default branch (default main)")
	create.Flags().StringSliceVar(&req.ProtectedBranches, "protected", nil, "protected branch pattern, e.g. release/* (repeatable)")
	create.Flags().StringVar(&req.ReviewCommand, "review-command", "", "shell command that reviews a checked-in branch")
	create.Flags().StringVar(&req.ImportFrom, "import-from", "", "git URL or server path to import every branch and tag from")
	create.Flags().StringVarP(&file, "file", "f", "", "JSON file with the full project (id, name, components, …); flags override it")

	list := &cobra.Command{
		Use:   "list",
		Short: "List projects",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			all := []client.Project{}
			cursor := ""
			for {
				ps, next, err := c.ListProjects(cmd.Context(), client.ListOptions{Limit: 500, Cursor: cursor})
				if err != nil {
					return err
				}
				all = append(all, ps...)
				if cursor = next; cursor == "" {
					break
				}
			}
			return g.showProjects(cmd, all, all)
		},
	}

	get := &cobra.Command{
		Use:   "get ID",
		Short: "Show a project",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			p, err := c.GetProject(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return g.showProjects(cmd, p, []client.Project{*p})
		},
	}

	del := &cobra.Command{
		Use:   "delete ID",
		Short: "Delete a project",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if err := c.DeleteProject(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Deleted project %s\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(create, list, get, del)
	return cmd
}

func (g *globals) showProjects(cmd *cobra.Command, v any, ps []client.Project) error {
	rows := make([][]string, len(ps))
	for i, p := range ps {
		comps := make([]string, len(p.Components))
		for j, c := range p.Components {
			comps[j] = c.Name
		}
		rows[i] = []string{p.ID, p.Name, p.DefaultBranch, orDash(strings.Join(p.ProtectedBranches, ",")),
			orDash(strings.Join(comps, ",")), fmtTime(&p.CreatedAt)}
	}
	return g.show(cmd.OutOrStdout(), v, []string{"ID", "NAME", "DEFAULT BRANCH", "PROTECTED", "COMPONENTS", "CREATED"}, rows)
}
