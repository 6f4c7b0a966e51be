package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/orch-dev/orch/server/pki"
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
				Usage: "snapshot the store: a running server's through its API (as its admin), a stopped server's from its file",
				Flags: append(settings.flags(), kubeconfigFlag(),
					&cli.StringFlag{Name: "name", Value: snapshot.DefaultName, Usage: "name of the snapshot"}),
				Action: func(c *cli.Context) error {
					if err := noArgs(c); err != nil {
						return err
					}
					dir, err := dataDir(c)
					if err != nil {
						return err
					}
					info, err := snapshot.Save(dir, c.String("name"), time.Now())
					if errors.Is(err, snapshot.ErrServerRunning) {
						kubeconfig, kerr := settings.adminKubeconfig(c)
						if kerr != nil {
							return kerr
						}
						saved, serr := saveOnline(c.Context, kubeconfig, c.String("name"))
						if serr != nil {
							return fmt.Errorf("%w; asking it for a snapshot: %w", err, serr)
						}
						_, err = fmt.Fprintf(c.App.Writer, "saved %s (%d bytes) by the running server\n", saved.Path, saved.Size)
						return err
					}
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

// saveOnline asks the running server, as the admin of kubeconfig, for a
// snapshot of its live store and returns where it was saved (on the
// server's machine: this is the same machine, since the CLI found the
// server's store locked).
func saveOnline(ctx context.Context, kubeconfig, name string) (snapshot.Info, error) {
	kc, err := pki.ReadKubeconfig(kubeconfig)
	if err != nil {
		return snapshot.Info{}, fmt.Errorf("%w (give the server's admin kubeconfig with --kubeconfig)", err)
	}
	u := strings.TrimSuffix(kc.Server, "/") + snapshot.APIPath + "?name=" + url.QueryEscape(name)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	if err != nil {
		return snapshot.Info{}, err
	}
	// A big store takes a while to copy; the server answers when done.
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: kc.TLS}, Timeout: 30 * time.Minute}
	resp, err := hc.Do(req)
	if err != nil {
		return snapshot.Info{}, fmt.Errorf("is the server at %s running? %w", kc.Server, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return snapshot.Info{}, fmt.Errorf("read the server's answer: %w", err)
	}
	if resp.StatusCode != http.StatusCreated {
		var st metav1.Status
		if json.Unmarshal(body, &st) == nil && st.Message != "" {
			return snapshot.Info{}, fmt.Errorf("the server refused (%s): %s", resp.Status, st.Message)
		}
		return snapshot.Info{}, fmt.Errorf("the server answered %s", resp.Status)
	}
	var saved snapshot.Info
	if err := json.Unmarshal(body, &saved); err != nil {
		return snapshot.Info{}, fmt.Errorf("the server's answer %q: %w", body, err)
	}
	return saved, nil
}
