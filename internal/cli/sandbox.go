package cli

import (
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"rdev.dev/rdev/internal/sandbox"
)

// The commands rdev runs itself at the edge of a sandbox; hidden from help.

// newSandboxAgent is the supervisor inside a project pod's sandbox
// (sandbox.Agent).
func newSandboxAgent(env Env) *cobra.Command {
	var socket string
	var relays []string
	cmd := &cobra.Command{
		Use:    "sandbox-agent --socket PATH [--relay LISTEN=SOCKET]...",
		Short:  "Run the supervisor of a project pod's sandbox (started by rdev serve)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a := &sandbox.Agent{Socket: socket, Log: slog.New(slog.NewTextHandler(env.Stderr, nil))}
			for _, r := range relays {
				rl, err := sandbox.ParseRelay(r)
				if err != nil {
					return err
				}
				a.Relays = append(a.Relays, rl)
			}
			return a.Run(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&socket, "socket", "", "unix socket rdev reaches the agent on")
	cmd.Flags().StringArrayVar(&relays, "relay", nil, "a loopback address of the pod relayed to one of rdev's unix sockets, LISTEN=SOCKET")
	cmd.MarkFlagRequired("socket")
	return cmd
}

// newSandboxEnter moves itself into a sandbox's resource group, then
// becomes bubblewrap (sandbox.Enter).
func newSandboxEnter() *cobra.Command {
	return &cobra.Command{
		Use:                "sandbox-enter GROUP... -- COMMAND [ARG...]",
		Short:              "Enter a sandbox's resource group and run its command (started by rdev serve)",
		Hidden:             true,
		DisableFlagParsing: true,
		Run: func(cmd *cobra.Command, args []string) {
			os.Exit(sandbox.Enter(args))
		},
	}
}

// newSandboxReap runs a command so that nothing it starts outlives it
// (sandbox.Reap), for --sandbox none. The signals rdev sends the command
// arrive on file descriptor 3.
func newSandboxReap() *cobra.Command {
	return &cobra.Command{
		Use:                "sandbox-reap -- COMMAND [ARG...]",
		Short:              "Run a command and kill everything it started when it ends (started by rdev serve)",
		Hidden:             true,
		DisableFlagParsing: true,
		Run: func(cmd *cobra.Command, args []string) {
			if len(args) > 0 && args[0] == "--" {
				args = args[1:]
			}
			os.Exit(sandbox.Reap(args, os.NewFile(3, "control")))
		},
	}
}
