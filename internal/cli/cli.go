// Package cli is the rdev command line: `rdev serve` runs the server, every
// other command is a client of its API.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"rdev.dev/rdev/client"
)

// Env is what a command reads from its surroundings; tests supply their own.
type Env struct {
	Getenv func(string) string
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
}

// Run executes the command line args (without the program name).
func Run(ctx context.Context, args []string, env Env) error {
	root := newRoot(env)
	root.SetArgs(args)
	root.SetIn(env.Stdin)
	root.SetOut(env.Stdout)
	root.SetErr(env.Stderr)
	_, err := root.ExecuteContextC(ctx)
	var exit *ExitError
	if err != nil && !errors.Is(err, errSilent) && !errors.As(err, &exit) {
		var ce *client.Error
		if errors.As(err, &ce) {
			fmt.Fprintf(env.Stderr, "Error: %s\n", ce.Message)
			if ce.Field != "" {
				fmt.Fprintf(env.Stderr, "  field: %s\n", ce.Field)
			}
			fmt.Fprintf(env.Stderr, "  status %d %s, request id %s\n", ce.Status, ce.Code, ce.RequestID)
		} else {
			fmt.Fprintf(env.Stderr, "Error: %v\n", err)
		}
	}
	return err
}

// errSilent marks an error already reported to the user.
var errSilent = errors.New("")

type globals struct {
	env    Env
	server string
	token  string
	output string
}

func newRoot(env Env) *cobra.Command {
	g := &globals{env: env}
	root := &cobra.Command{
		Use:           "rdev",
		Short:         "rdev: a self-hosted control plane for remote development",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.server, "server", "", "server URL (default: $RDEV_SERVER, else the one saved by rdev login)")
	root.PersistentFlags().StringVar(&g.token, "token", "", "API key (default: $RDEV_TOKEN, else the one saved by rdev login)")
	root.PersistentFlags().StringVarP(&g.output, "output", "o", "table", "output format: table or json")
	root.AddCommand(newServe(env), newLogin(g), newKeys(g), newProjects(g), newAudit(g), newCheckout(g), newGitCredential(g), newSession(g), newExec(g), newPreview(g), newWorker(g), newWorkers(g),
		newSandboxAgent(env), newSandboxEnter(), newSandboxReap())
	return root
}

// configPath is where `rdev login` keeps the server and token.
func configPath(getenv func(string) string) (string, error) {
	if d := getenv("XDG_CONFIG_HOME"); d != "" {
		return filepath.Join(d, "rdev", "config.json"), nil
	}
	if h := getenv("HOME"); h != "" {
		return filepath.Join(h, ".config", "rdev", "config.json"), nil
	}
	return "", errors.New("cannot find a config directory: set XDG_CONFIG_HOME or HOME")
}

// client builds an API client from flags, environment and the config file,
// in that order of precedence.
func (g *globals) client() (*client.Client, error) {
	if g.output != "table" && g.output != "json" {
		return nil, fmt.Errorf("--output must be table or json, not %q", g.output)
	}
	server, token := g.server, g.token
	if server == "" {
		server = g.env.Getenv("RDEV_SERVER")
	}
	if token == "" {
		token = g.env.Getenv("RDEV_TOKEN")
	}
	if server == "" || token == "" {
		if path, err := configPath(g.env.Getenv); err == nil {
			if cfg, err := readConfig(path); err == nil {
				if server == "" {
					server = cfg.Server
				}
				if token == "" {
					token = cfg.Token
				}
			} else if !errors.Is(err, os.ErrNotExist) {
				return nil, err
			}
		}
	}
	if server == "" {
		server = "http://" + defaultAddr
	}
	if token == "" {
		hint := "KEY"
		if d, err := defaultDataDir(g.env.Getenv); err == nil {
			hint = "$(cat " + filepath.Join(d, "admin.key") + ")"
		}
		return nil, fmt.Errorf("no API key: run `rdev login --server %s --token %s`, or set RDEV_TOKEN", server, hint)
	}
	return client.New(server, token), nil
}
