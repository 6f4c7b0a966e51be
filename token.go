package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/urfave/cli/v2"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/duration"

	"github.com/orch-dev/orch/agent/apiclient"
	"github.com/orch-dev/orch/internal/jointoken"
	"github.com/orch-dev/orch/internal/version"
	"github.com/orch-dev/orch/server/auth/bootstraptoken"
	"github.com/orch-dev/orch/server/pki"
)

const (
	// tokenRequestTimeout bounds each call to the server.
	tokenRequestTimeout = 30 * time.Second
	// maxDescriptionLen keeps `orch token list` readable.
	maxDescriptionLen = 1024
)

// tokenCommand manages extra, expiring join tokens, as `k3s token` and
// `kubeadm token` do: Kubernetes bootstrap tokens, stored as Secrets
// kube-system/bootstrap-token-<id> by the running server, which it talks
// to with its admin kubeconfig (never by opening its store).
func tokenCommand() *cli.Command {
	// Only --config: the server's write-kubeconfig still comes from its
	// config file or ORCH_WRITE_KUBECONFIG, but the flag to give here is
	// --kubeconfig.
	settings := serverSettingsNamed()
	flags := append(settings.flags(), kubeconfigFlag())
	connect := func(c *cli.Context) (*tokenClient, error) {
		path, err := settings.adminKubeconfig(c)
		if err != nil {
			return nil, err
		}
		return newTokenClient(path)
	}
	return &cli.Command{
		Name:  "token",
		Usage: "create, list and delete extra join tokens that can expire (bootstrap tokens)",
		Subcommands: []*cli.Command{
			{
				Name: "create",
				Usage: "create a join token and print it (K10<CA hash>::<id>.<secret>) for " +
					"`orch agent --token`; it expires after --ttl",
				Flags: append(slices.Clip(flags),
					&cli.StringFlag{Name: "ttl", Value: "24h", Usage: "how long the token is valid, e.g. 1h30m; 0 means it never expires"},
					&cli.StringFlag{Name: "description", Usage: "a note on what the token is for, shown by orch token list"},
					&cli.StringSliceFlag{Name: "groups", Value: cli.NewStringSlice(bootstraptoken.DefaultExtraGroup),
						Usage: "extra groups the token authenticates as; each must start with system:bootstrappers:"},
				),
				Action: func(c *cli.Context) error {
					if err := noArgs(c); err != nil {
						return err
					}
					req, err := parseTokenCreate(c.String("ttl"), c.String("description"), c.StringSlice("groups"))
					if err != nil {
						return fmt.Errorf("token create: %w", err)
					}
					tc, err := connect(c)
					if err != nil {
						return fmt.Errorf("token create: %w", err)
					}
					tok, err := tc.create(c.Context, req, time.Now())
					if err != nil {
						return fmt.Errorf("token create: %w", err)
					}
					_, err = fmt.Fprintln(c.App.Writer, tok.String())
					return err
				},
			},
			{
				Name:  "list",
				Usage: "list join tokens with their expiry, usages and description (not their secrets)",
				Flags: flags,
				Action: func(c *cli.Context) error {
					if err := noArgs(c); err != nil {
						return err
					}
					tc, err := connect(c)
					if err != nil {
						return fmt.Errorf("token list: %w", err)
					}
					tokens, err := tc.list(c.Context)
					if err != nil {
						return fmt.Errorf("token list: %w", err)
					}
					return printTokens(c.App.Writer, tokens, time.Now())
				},
			},
			{
				Name:      "delete",
				Usage:     "delete join tokens by id (or whole token); agents that already joined keep working",
				ArgsUsage: "ID...",
				Flags:     flags,
				Action: func(c *cli.Context) error {
					if c.NArg() == 0 {
						return errors.New("token delete needs the id of at least one token (see `orch token list`)")
					}
					ids := make([]string, 0, c.NArg())
					for _, arg := range c.Args().Slice() {
						id, err := tokenID(arg)
						if err != nil {
							return fmt.Errorf("token delete: %w", err)
						}
						ids = append(ids, id)
					}
					tc, err := connect(c)
					if err != nil {
						return fmt.Errorf("token delete: %w", err)
					}
					for _, id := range ids {
						if err := tc.delete(c.Context, id); err != nil {
							return fmt.Errorf("token delete: %w", err)
						}
						if _, err := fmt.Fprintf(c.App.Writer, "bootstrap token %q deleted\n", id); err != nil {
							return err
						}
					}
					return nil
				},
			},
		},
	}
}

// tokenCreateRequest is a checked `token create`.
type tokenCreateRequest struct {
	ttl         time.Duration // 0: never expires
	description string
	groups      []string
}

func parseTokenCreate(ttl, description string, groups []string) (tokenCreateRequest, error) {
	d, err := time.ParseDuration(strings.TrimSpace(ttl))
	if err != nil {
		return tokenCreateRequest{}, fmt.Errorf("--ttl %q is not a duration (e.g. 24h, 90m, 0 for never): %w", ttl, err)
	}
	if d < 0 {
		return tokenCreateRequest{}, fmt.Errorf("--ttl %s is negative: give a positive duration, or 0 for a token that never expires", ttl)
	}
	if d > 0 && d < time.Second {
		return tokenCreateRequest{}, fmt.Errorf("--ttl %s is shorter than a second, the precision of a token's expiration", ttl)
	}
	for _, g := range groups {
		if err := bootstraptoken.ValidateExtraGroup(g); err != nil {
			return tokenCreateRequest{}, fmt.Errorf("--groups: %w", err)
		}
	}
	if len(description) > maxDescriptionLen {
		return tokenCreateRequest{}, fmt.Errorf("--description is longer than %d characters", maxDescriptionLen)
	}
	if strings.ContainsFunc(description, unicode.IsControl) {
		return tokenCreateRequest{}, errors.New("--description must be one line of printable text")
	}
	return tokenCreateRequest{ttl: d, description: description, groups: groups}, nil
}

// tokenID is the id of a token given as an id, "<id>.<secret>" or a full
// K10 token, as kubeadm token delete accepts.
func tokenID(arg string) (string, error) {
	if jointoken.ValidBootstrapID(arg) {
		return arg, nil
	}
	if tok, err := jointoken.Parse(arg); err == nil {
		if id, ok := tok.BootstrapID(); ok {
			return id, nil
		}
	}
	return "", fmt.Errorf("%q is not a token id: want %d characters of a-z, 0-9 (see `orch token list`)", arg, jointoken.BootstrapIDLen)
}

// tokenClient manages bootstrap token Secrets on the server.
type tokenClient struct {
	api        *apiclient.Client
	kubeconfig string
	server     string
	caPEM      []byte
}

func newTokenClient(kubeconfig string) (*tokenClient, error) {
	kc, err := pki.ReadKubeconfig(kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("%w (give the server's admin kubeconfig with --kubeconfig)", err)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: kc.TLS}, Timeout: tokenRequestTimeout}
	api, err := apiclient.New(kc.Server, hc, "orch-token/"+version.Get().Version)
	if err != nil {
		return nil, err
	}
	return &tokenClient{api: api, kubeconfig: kubeconfig, server: kc.Server, caPEM: kc.CAPEM}, nil
}

// explain adds where the CLI was talking to when a call fails.
func (tc *tokenClient) explain(err error) error {
	var se apierrors.APIStatus
	if errors.As(err, &se) {
		return err
	}
	return fmt.Errorf("%w (is the server at %s running? kubeconfig %s)", err, tc.server, tc.kubeconfig)
}

// create stores a new token expiring req.ttl after now. An id that is
// already taken (one in 36^6) is drawn again.
func (tc *tokenClient) create(ctx context.Context, req tokenCreateRequest, now time.Time) (jointoken.Token, error) {
	for attempt := 0; ; attempt++ {
		tok, err := jointoken.NewBootstrap(tc.caPEM)
		if err != nil {
			return jointoken.Token{}, err
		}
		id, secret, _ := jointoken.ParseBootstrap(tok.Secret)
		info := bootstraptoken.Info{ID: id, Secret: secret, Description: req.description, ExtraGroups: req.groups,
			Usages: []string{bootstraptoken.UsageAuthentication, bootstraptoken.UsageSigning}}
		if req.ttl > 0 {
			info.Expiration = tokenExpiration(now, req.ttl)
		}
		s, err := bootstraptoken.NewSecret(info)
		if err != nil {
			return jointoken.Token{}, err
		}
		err = tc.api.Create(ctx, apiclient.Secrets, bootstraptoken.Namespace, s, nil)
		switch {
		case err == nil:
			return tok, nil
		case apierrors.IsAlreadyExists(err) && attempt < 3:
			continue
		}
		return jointoken.Token{}, tc.explain(err)
	}
}

// tokenExpiration is now+ttl rounded up to the second, the precision of
// the RFC 3339 expiration: a token is valid for at least its ttl.
func tokenExpiration(now time.Time, ttl time.Duration) time.Time {
	exp := now.Add(ttl)
	if t := exp.Truncate(time.Second); !t.Equal(exp) {
		return t.Add(time.Second)
	}
	return exp
}

// listedToken is a token as `token list` shows it.
type listedToken struct {
	bootstraptoken.Info
	// badExpiration is set when the Secret's expiration cannot be read:
	// the server treats the token as expired.
	badExpiration bool
}

// list returns the bootstrap tokens on the server, by id.
func (tc *tokenClient) list(ctx context.Context) ([]listedToken, error) {
	var secrets corev1.SecretList
	if err := tc.api.List(ctx, apiclient.Secrets, bootstraptoken.Namespace, apiclient.ListOptions{}, &secrets); err != nil {
		return nil, tc.explain(err)
	}
	var out []listedToken
	for i := range secrets.Items {
		info, err := bootstraptoken.FromSecret(&secrets.Items[i])
		switch {
		case errors.Is(err, bootstraptoken.ErrNotBootstrapToken):
			continue
		case err != nil && info.ID == "":
			continue // a damaged Secret: not a token anyone can use
		}
		out = append(out, listedToken{Info: info, badExpiration: err != nil})
	}
	return out, nil
}

func (tc *tokenClient) delete(ctx context.Context, id string) error {
	err := tc.api.Delete(ctx, apiclient.Secrets, bootstraptoken.Namespace, bootstraptoken.SecretName(id), nil)
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("bootstrap token %q not found", id)
	}
	if err != nil {
		return tc.explain(err)
	}
	return nil
}

// printTokens writes the table of `kubeadm token list`, with token ids in
// place of whole tokens: the secrets stay on the server.
func printTokens(w io.Writer, tokens []listedToken, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	fmt.Fprintln(tw, "TOKEN ID\tTTL\tEXPIRES\tUSAGES\tDESCRIPTION\tEXTRA GROUPS")
	for _, t := range tokens {
		ttl, expires := "<forever>", "<never>"
		switch {
		case t.badExpiration:
			ttl, expires = "<invalid>", "<invalid>"
		case !t.Expiration.IsZero():
			ttl = duration.ShortHumanDuration(t.Expiration.Sub(now))
			expires = t.Expiration.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, ttl, expires,
			orNone(strings.Join(t.Usages, ",")), orNone(t.Description), orNone(strings.Join(t.ExtraGroups, ",")))
	}
	return tw.Flush()
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}
