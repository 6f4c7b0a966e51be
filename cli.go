package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/orch-dev/orch/internal/config"
	"github.com/orch-dev/orch/server"
)

// serverSettings are some of `orch server`'s settings, for an operational
// verb (snapshot, secrets-encrypt, check-config, token) that must find what
// the server on this machine uses: the same flags, ORCH_* variables and
// config file, so `orch snapshot ls` looks in the data directory the
// server was configured with.
type serverSettings []config.Option

// serverSettingsNamed picks the server's options by name; --config is
// always among them.
func serverSettingsNamed(names ...string) serverSettings {
	var s serverSettings
	for _, o := range config.ServerOptions() {
		if o.Name == "config" || slices.Contains(names, o.Name) {
			s = append(s, o)
		}
	}
	return s
}

// flags are the settings as CLI flags.
func (s serverSettings) flags() []cli.Flag { return flagsFor(s) }

// sources are the settings the user gave on c's command line.
func (s serverSettings) sources(c *cli.Context) config.Sources { return sources(c, s) }

// load resolves the server's configuration as `orch server` would.
func (s serverSettings) load(c *cli.Context) (server.Config, error) {
	cfg, err := config.Server(s.sources(c))
	if err != nil {
		return server.Config{}, configError(err)
	}
	return cfg, nil
}

// kubeconfigFlag is --kubeconfig of the verbs that talk to the running
// server as its admin.
func kubeconfigFlag() cli.Flag {
	return &cli.StringFlag{
		Name:  "kubeconfig",
		Usage: "admin kubeconfig of the server to talk to (default: the server's write-kubeconfig, /etc/orch/orch.yaml)",
	}
}

// adminKubeconfig is --kubeconfig or, without it, the admin kubeconfig the
// server writes (its write-kubeconfig setting, from the config file or
// ORCH_WRITE_KUBECONFIG).
func (s serverSettings) adminKubeconfig(c *cli.Context) (string, error) {
	if path := c.String("kubeconfig"); path != "" {
		return path, nil
	}
	cfg, err := s.load(c)
	if err != nil {
		return "", err
	}
	return cfg.WriteKubeconfig, nil
}

// noArgs refuses arguments to a verb that takes none.
func noArgs(c *cli.Context) error {
	if c.NArg() > 0 {
		return fmt.Errorf("%s takes no arguments, got %q", commandPath(c), c.Args().Slice())
	}
	return nil
}

// commandPath names the running command as the user typed it, e.g.
// "snapshot save" (urfave/cli v2 keeps only the last name).
func commandPath(c *cli.Context) string {
	var names []string
	for _, ctx := range c.Lineage() {
		if ctx.Command != nil && ctx.Command.Name != "" && ctx.Command.Name != c.App.Name {
			names = append(names, ctx.Command.Name)
		}
	}
	slices.Reverse(names)
	return strings.Join(names, " ")
}
