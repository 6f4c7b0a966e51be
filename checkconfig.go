package main

import (
	"errors"
	"strings"

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
	settings := serverSettingsNamed("data-dir")
	return &cli.Command{
		Name:      "check-config",
		Usage:     "check that this machine's kernel and system can run orch; exits non-zero when something required is missing",
		Flags:     settings.flags(),
		ArgsUsage: " ",
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			dataDir, err := checkDataDir(settings.sources(c))
			if err != nil {
				return err
			}
			results := checkconfig.Check(checkconfig.LocalHost(dataDir))
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

// checkDataDir is the data directory of this machine's server or, when
// the config file is an agent's, of its agent.
func checkDataDir(src config.Sources) (string, error) {
	srv, err := config.Server(src)
	if err == nil {
		return srv.DataDir, nil
	}
	agent, aerr := config.Agent(src)
	switch {
	case aerr == nil:
		return agent.DataDir, nil
	case strings.Contains(err.Error(), "it is a setting of `orch "+config.AgentCommand+"`"):
		// An agent's file: its own problems are the ones to show.
		return "", configError(aerr)
	}
	return "", configError(err)
}
