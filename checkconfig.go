package main

import (
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/orch-dev/orch/internal/checkconfig"
	"github.com/orch-dev/orch/internal/config"
)

// checkConfigCommand reports whether this machine has what a node needs,
// like k3s check-config. The installer runs it before starting the
// service. The data directory comes from the server's flag, environment
// variable and config file, so the check looks where the server will
// write.
func checkConfigCommand() *cli.Command {
	var opts []config.Option
	for _, o := range config.ServerOptions() {
		if o.Name == "data-dir" || o.Name == "config" {
			opts = append(opts, o)
		}
	}
	return &cli.Command{
		Name:      "check-config",
		Usage:     "check that this machine's kernel and system can run orch; exits non-zero when something required is missing",
		Flags:     flagsFor(opts),
		ArgsUsage: " ",
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return fmt.Errorf("check-config takes no arguments, got %q", c.Args().Slice())
			}
			cfg, err := config.Server(sources(c, opts))
			if err != nil {
				return configError(err)
			}
			results := checkconfig.Check(checkconfig.LocalHost(cfg.DataDir))
			if err := checkconfig.Write(c.App.Writer, results); err != nil {
				return err
			}
			if checkconfig.Failed(results) {
				return errors.New("check-config: required features are missing (see the MISSING lines above)")
			}
			return nil
		},
	}
}
