package main

import (
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/orch-dev/orch/server/snapshot"
)

// snapshotCommand saves, lists and restores copies of the server's store.
// The data directory comes from the same flag, environment variable and
// config file as `orch server`, so the verbs find the server's store.
func snapshotCommand() *cli.Command {
	settings := serverSettingsNamed("data-dir")
	dataDir := func(c *cli.Context) (string, error) {
		cfg, err := settings.load(c)
		return cfg.DataDir, err
	}
	return &cli.Command{
		Name:  "snapshot",
		Usage: "save, list and restore snapshots of the server's store",
		Subcommands: []*cli.Command{
			{
				Name:  "save",
				Usage: "snapshot the store of a stopped server (a running server takes scheduled snapshots)",
				Flags: append(settings.flags(), &cli.StringFlag{Name: "name", Value: snapshot.DefaultName, Usage: "name of the snapshot"}),
				Action: func(c *cli.Context) error {
					if err := noArgs(c); err != nil {
						return err
					}
					dir, err := dataDir(c)
					if err != nil {
						return err
					}
					info, err := snapshot.Save(dir, c.String("name"), time.Now())
					if err != nil {
						return err
					}
					_, err = fmt.Fprintf(c.App.Writer, "saved %s (%d bytes)\n", info.Path, info.Size)
					return err
				},
			},
			{
				Name:  "ls",
				Usage: "list snapshots with their size, time and checksum state",
				Flags: settings.flags(),
				Action: func(c *cli.Context) error {
					if err := noArgs(c); err != nil {
						return err
					}
					dir, err := dataDir(c)
					if err != nil {
						return err
					}
					snaps, err := snapshot.List(snapshot.Dir(dir))
					if err != nil {
						return err
					}
					return snapshot.PrintList(c.App.Writer, snaps)
				},
			},
			{
				Name:      "restore",
				Usage:     "replace the store of a stopped server with a checked snapshot (the old store is kept)",
				ArgsUsage: "FILE",
				Flags:     settings.flags(),
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return fmt.Errorf("snapshot restore needs exactly one snapshot file, got %d arguments", c.NArg())
					}
					dir, err := dataDir(c)
					if err != nil {
						return err
					}
					res, err := snapshot.Restore(dir, c.Args().First(), time.Now())
					if err != nil {
						return err
					}
					return snapshot.PrintRestored(c.App.Writer, res)
				},
			},
		},
	}
}
