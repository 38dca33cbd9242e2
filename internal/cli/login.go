package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"rdev.dev/rdev/client"
)

type config struct {
	Server string `json:"server"`
	Token  string `json:"token"`
}

func readConfig(path string) (*config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var c config
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &c, nil
}

func writeConfig(path string, c config) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(c, "", "  ")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func newLogin(g *globals) *cobra.Command {
	var server, token string
	cmd := &cobra.Command{
		Use:   "login --server URL --token KEY",
		Short: "Check a server and key, and remember them for later commands",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if server == "" {
				server = g.server
			}
			if token == "" {
				token = g.token
			}
			if server == "" || token == "" {
				return errors.New("login needs --server URL and --token KEY")
			}
			u, err := url.Parse(server)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return fmt.Errorf("--server must be an http(s) URL, not %q", server)
			}
			server = strings.TrimRight(server, "/")
			c := client.New(server, token)
			// Any authenticated call tells a bad key (401) from a good one;
			// a key without projects:read still logs in (403).
			if _, _, err := c.ListProjects(cmd.Context(), client.ListOptions{Limit: 1}); err != nil {
				var ce *client.Error
				if !errors.As(err, &ce) || ce.Status != 403 {
					return err
				}
			}
			path, err := configPath(g.env.Getenv)
			if err != nil {
				return err
			}
			if err := writeConfig(path, config{Server: server, Token: token}); err != nil {
				return fmt.Errorf("save login: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Logged in to %s (saved in %s)\n", server, path)
			return nil
		},
	}
	cmd.Flags().StringVar(&server, "server", "", "server URL, e.g. http://127.0.0.1:7420")
	cmd.Flags().StringVar(&token, "token", "", "API key")
	return cmd
}
