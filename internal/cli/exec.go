package cli

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"rdev.dev/rdev/client"
)

// ExitError carries the exit code of a remote command to main.
type ExitError struct{ Code int }

func (e *ExitError) Error() string { return fmt.Sprintf("exit status %d", e.Code) }

func newExec(g *globals) *cobra.Command {
	var req client.CommandRequest
	var env []string
	cmd := &cobra.Command{
		Use:   "exec [PROJECT/]SESSION [--cwd DIR] [--env K=V] [--timeout D] -- COMMAND [ARG...]",
		Short: "Run a command in a session, streaming its output, and exit with its exit code",
		Long: `Run a command in a session's workspace. stdout and stderr stream to this
process's stdout and stderr as they come; a dropped connection is resumed
from the last event seen, without loss or duplicates. rdev exits with the
command's exit code (128+N when a signal ended it, 124 on timeout, 255 if
the server lost it). A single argument containing spaces runs through
/bin/sh -c.`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			project, sid, err := sessionRef(g, args[0])
			if err != nil {
				return err
			}
			argv := args[1:]
			if len(argv) > 0 && argv[0] == "--" {
				argv = argv[1:]
			}
			if len(argv) == 0 {
				return errors.New("no command given: rdev exec SESSION -- COMMAND")
			}
			if len(argv) == 1 && strings.ContainsAny(argv[0], " ;|&$><") {
				req.Command = argv[0]
			} else {
				req.Argv = argv
			}
			for _, kv := range env {
				k, v, ok := strings.Cut(kv, "=")
				if !ok {
					return fmt.Errorf("--env wants KEY=VALUE, not %q", kv)
				}
				if req.Env == nil {
					req.Env = map[string]string{}
				}
				req.Env[k] = v
			}
			run, err := c.RunCommand(cmd.Context(), project, sid, req)
			if err != nil {
				return err
			}
			stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
			exit, err := c.Follow(cmd.Context(), project, sid, run.ID, 0, func(e client.Event) error {
				switch e.Type {
				case "stdout":
					_, err := stdout.Write(e.Data)
					return err
				case "stderr":
					_, err := stderr.Write(e.Data)
					return err
				case "truncated":
					fmt.Fprintf(stderr, "rdev: %s\n", e.Message)
				}
				return nil
			})
			if err != nil {
				return err
			}
			code := 0
			switch {
			case exit.Reason == "timeout":
				code = 124
			case exit.Reason == "lost":
				code = 255
			case exit.ExitCode != nil:
				code = *exit.ExitCode
			case exit.Signal != "":
				code = 128 + signalNumber(exit.Signal)
			}
			if code != 0 {
				return &ExitError{Code: code}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&req.Cwd, "cwd", "", "directory inside the workspace")
	cmd.Flags().StringArrayVar(&env, "env", nil, "environment variable KEY=VALUE (repeatable)")
	cmd.Flags().StringVar(&req.Timeout, "timeout", "", "kill the command after this long, e.g. 10m")
	return cmd
}

func signalNumber(name string) int {
	for i, n := range []string{"", "SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS", "SIGFPE", "SIGKILL",
		"SIGUSR1", "SIGSEGV", "SIGUSR2", "SIGPIPE", "SIGALRM", "SIGTERM"} {
		if n == name {
			return i
		}
	}
	return 1
}

// ExitCode returns the process exit code for err (0 for nil).
func ExitCode(err error) int {
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	if err != nil {
		return 1
	}
	return 0
}
