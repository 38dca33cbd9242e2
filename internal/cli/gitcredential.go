package cli

import (
	"bufio"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"rdev.dev/rdev/internal/rdev"
)

// newGitCredential implements git's credential-helper protocol
// (gitcredentials(7)): on "get" it reads attributes from stdin and answers
// with a username and password for an rdev server, so that the token never
// appears in argv or .git/config. See credentialFor for where the answer
// comes from.
func newGitCredential(g *globals) *cobra.Command {
	var tokenFile string
	cmd := &cobra.Command{
		Use:   "git-credential get|store|erase",
		Short: "A git credential helper for rdev repositories",
		Long: `A git credential helper for rdev repositories. Use it as
  git -c credential.helper= -c 'credential.helper=!rdev git-credential' -c credential.useHttpPath=true clone URL
or once per repository:
  git config credential.helper '!rdev git-credential' && git config credential.useHttpPath true
A clone URL that names a checkout (http://<checkout-id>@host/git/<project>.git,
as 'rdev checkout create' prints it) gets that checkout's saved token, else
$RDEV_GIT_TOKEN, and never another credential. Other URLs get $RDEV_GIT_TOKEN
when set, else the one checkout token saved for that repository, else the API
key saved by 'rdev login'.`,
		Args:   cobra.ExactArgs(1),
		Hidden: false,
		RunE: func(cmd *cobra.Command, args []string) error {
			attrs := readCredentialAttrs(cmd.InOrStdin())
			if args[0] != "get" {
				return nil // store and erase: rdev keeps its own tokens
			}
			user, token, why := "rdev", "", ""
			if tokenFile != "" {
				b, err := os.ReadFile(tokenFile)
				if err != nil {
					return err
				}
				token = strings.TrimSpace(string(b))
				if name := attrs["username"]; name != "" {
					user = name
				}
			} else {
				user, token, why = credentialFor(g, attrs)
			}
			if why != "" {
				fmt.Fprintln(cmd.ErrOrStderr(), "rdev git-credential: "+why)
			}
			if token == "" {
				return nil // git tries its next helper, or asks
			}
			fmt.Fprintf(cmd.OutOrStdout(), "username=%s\npassword=%s\n", user, token)
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

// credentialFor picks the user name and password of a git request, or
// says why it has none. A URL that names a checkout (its user name, as
// the clone URLs rdev hands out do) gets that checkout's token and never
// another credential. Other URLs: $RDEV_GIT_TOKEN; the one checkout token
// saved for that repository (several: none, since guessing would push as
// the wrong checkout); the `rdev login` key for that server.
func credentialFor(g *globals, attrs map[string]string) (user, token, why string) {
	env := g.env.Getenv("RDEV_GIT_TOKEN")
	ts, _ := readTokens(g)
	if name := attrs["username"]; rdev.IsCheckoutID(name) {
		for _, t := range ts {
			if t.ID == name {
				return name, t.Token, ""
			}
		}
		if env != "" {
			return name, env, ""
		}
		return "", "", "no token is saved here for checkout " + name + ": it was checked in, or checked out on another machine " +
			"(check out again with rdev checkout create, or set RDEV_GIT_TOKEN to its token)"
	}
	if env != "" {
		return "rdev", env, ""
	}
	host, path := attrs["host"], strings.Trim(attrs["path"], "/")
	var sameHost, samePath []savedToken
	for _, t := range ts {
		u, err := url.Parse(t.CloneURL)
		if err != nil || u.Host != host {
			continue
		}
		sameHost = append(sameHost, t)
		if path != "" && strings.Trim(u.Path, "/") == path {
			samePath = append(samePath, t)
		}
	}
	// Without credential.useHttpPath git sends no path: then only one saved
	// checkout on that host is unambiguous.
	if path == "" {
		samePath = sameHost
	}
	switch {
	case len(samePath) == 1:
		return "rdev", samePath[0].Token, ""
	case len(samePath) > 1:
		var ids []string
		for _, t := range samePath {
			ids = append(ids, t.ID)
		}
		return "", "", "several checkouts of this repository are saved here (" + strings.Join(ids, ", ") + "): " +
			"use the clone URL that names one (rdev checkout create prints it), e.g. git remote set-url origin http://<checkout-id>@" + host + "/" + path
	}
	if p, err := configPath(g.env.Getenv); err == nil {
		if cfg, err := readConfig(p); err == nil {
			if u, err := url.Parse(cfg.Server); err == nil && u.Host == host {
				return "rdev", cfg.Token, ""
			}
		}
	}
	return "", "", ""
}
