package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/orch-dev/orch/server"
)

// secretsEncryptCommand manages the keys of secrets encryption at rest
// (`orch server --secrets-encryption`), like k3s' secrets-encrypt.
func secretsEncryptCommand() *cli.Command {
	settings := serverSettingsNamed("data-dir")
	return &cli.Command{
		Name:  "secrets-encrypt",
		Usage: "manage the keys that encrypt Secrets at rest",
		Subcommands: []*cli.Command{{
			Name:  "status",
			Usage: "say whether Secrets are encrypted and with which keys",
			Flags: settings.flags(),
			Action: func(c *cli.Context) error {
				if err := noArgs(c); err != nil {
					return err
				}
				cfg, err := settings.load(c)
				if err != nil {
					return err
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
			Flags: settings.flags(),
			Action: func(c *cli.Context) error {
				if err := noArgs(c); err != nil {
					return err
				}
				cfg, err := settings.load(c)
				if err != nil {
					return err
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
