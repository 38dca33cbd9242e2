package cli

import (
	"bufio"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

// newGitCredential implements git's credential-helper protocol
// (gitcredentials(7)): on "get" it reads attributes from stdin and answers
// with a username and password for an rdev server, so that the token never
// appears in argv or .git/config. Sources, in order: $RDEV_GIT_TOKEN; the
// checkout token `rdev checkout create` saved for that repository; the API
// key of `rdev login` when the host is that server's.
func newGitCredential(g *globals) *cobra.Command {
	var tokenFile string
	cmd := &cobra.Command{
		Use:   "git-credential get|store|erase",
		Short: "A git credential helper for rdev repositories",
		Long: `A git credential helper for rdev repositories. Use it as
  git -c credential.helper= -c 'credential.helper=!rdev git-credential' -c credential.useHttpPath=true clone URL
or once per repository:
  git config credential.helper '!rdev git-credential' && git config credential.useHttpPath true
It answers with $RDEV_GIT_TOKEN when set, else the checkout token saved by
'rdev checkout create' for that repository, else the API key saved by 'rdev login'.`,
		Args:   cobra.ExactArgs(1),
		Hidden: false,
		RunE: func(cmd *cobra.Command, args []string) error {
			attrs := readCredentialAttrs(cmd.InOrStdin())
			if args[0] != "get" {
				return nil // store and erase: rdev keeps its own tokens
			}
			token := ""
			if tokenFile != "" {
				b, err := os.ReadFile(tokenFile)
				if err != nil {
					return err
				}
				token = strings.TrimSpace(string(b))
			} else {
				token = credentialFor(g, attrs)
			}
			if token == "" {
				return nil // git tries its next helper, or asks
			}
			fmt.Fprintf(cmd.OutOrStdout(), "username=rdev\npassword=%s\n", token)
			return nil
		},
	}
	cmd.Flags().StringVar(&tokenFile, "token-file", "", "answer with the token in this file (session workspaces use it)")
	return cmd
}

func readCredentialAttrs(r io.Reader) map[string]string {
	attrs := map[string]string{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			break
		}
		if k, v, ok := strings.Cut(line, "="); ok {
			attrs[k] = v
		}
	}
	return attrs
}

func credentialFor(g *globals, attrs map[string]string) string {
	if t := g.env.Getenv("RDEV_GIT_TOKEN"); t != "" {
		return t
	}
	host, path := attrs["host"], strings.Trim(attrs["path"], "/")
	if ts, err := readTokens(g); err == nil {
		var sameHost []savedToken
		for _, t := range ts {
			u, err := url.Parse(t.CloneURL)
			if err != nil || u.Host != host {
				continue
			}
			if path != "" && strings.Trim(u.Path, "/") == path {
				return t.Token
			}
			sameHost = append(sameHost, t)
		}
		// Without credential.useHttpPath git sends no path: one saved
		// checkout on that host is unambiguous.
		if path == "" && len(sameHost) == 1 {
			return sameHost[0].Token
		}
	}
	if p, err := configPath(g.env.Getenv); err == nil {
		if cfg, err := readConfig(p); err == nil {
			if u, err := url.Parse(cfg.Server); err == nil && u.Host == host {
				return cfg.Token
			}
		}
	}
	return ""
}
