package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/orch-dev/orch/internal/config"
	"github.com/orch-dev/orch/server"
)

// secretsEncryptCommand manages the keys of secrets encryption at rest
// (`orch server --secrets-encryption`), like k3s' secrets-encrypt.
func secretsEncryptCommand() *cli.Command {
	var opts []config.Option
	for _, o := range config.ServerOptions() {
		if o.Name == "data-dir" || o.Name == "config" {
			opts = append(opts, o)
		}
	}
	return &cli.Command{
		Name:  "secrets-encrypt",
		Usage: "manage the keys that encrypt Secrets at rest",
		Subcommands: []*cli.Command{{
			Name:  "status",
			Usage: "say whether Secrets are encrypted and with which keys",
			Flags: flagsFor(opts),
			Action: func(c *cli.Context) error {
				if c.NArg() > 0 {
					return fmt.Errorf("secrets-encrypt status takes no arguments, got %q", c.Args().Slice())
				}
				cfg, err := config.Server(sources(c, opts))
				if err != nil {
					return configError(err)
				}
				enabled, keys, err := server.EncryptionStatus(cfg.DataDir)
				if err != nil {
					return fmt.Errorf("secrets-encrypt status: %w", err)
				}
				state := "Disabled"
				if enabled {
					state = "Enabled"
				}
				_, err = fmt.Fprintf(c.App.Writer, "Encryption Status: %s\nCurrent Type: aesgcm\nKeys: %s\n", state, strings.Join(keys, ", "))
				return err
			},
		}, {
			Name: "rotate-keys",
			Usage: "add a new encryption key and re-encrypt every Secret with it (run while the server is stopped; " +
				"old keys stay in the key file so older snapshots remain readable)",
			Flags: flagsFor(opts),
			Action: func(c *cli.Context) error {
				if c.NArg() > 0 {
					return fmt.Errorf("secrets-encrypt rotate-keys takes no arguments, got %q", c.Args().Slice())
				}
				cfg, err := config.Server(sources(c, opts))
				if err != nil {
					return configError(err)
				}
				key, n, err := server.RotateEncryptionKeys(c.Context, cfg.DataDir)
				if err != nil {
					return fmt.Errorf("secrets-encrypt rotate-keys: %w", err)
				}
				_, err = fmt.Fprintf(c.App.Writer, "encryption key %s is active; %d secrets re-encrypted (%s)\n",
					key, n, server.EncryptionConfigPath(cfg.DataDir))
				return err
			},
		}},
	}
}
