package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/orch-dev/orch/runtime/image"
)

// imagesCommand manages the node's image store: air-gapped boxes get their
// images from tars (docker save or OCI layout) instead of a registry.
func imagesCommand() *cli.Command {
	dataDir := &cli.StringFlag{Name: "data-dir", Value: "/var/lib/orch", EnvVars: []string{"ORCH_DATA_DIR"},
		Usage: "data directory of the node whose image store is used"}
	open := func(c *cli.Context) (*image.Store, error) {
		dir := c.String("data-dir")
		if !filepath.IsAbs(dir) {
			return nil, fmt.Errorf("--data-dir %q is not an absolute path", dir)
		}
		return image.Open(image.Options{Root: filepath.Join(dir, "agent", "images")})
	}
	return &cli.Command{
		Name:  "images",
		Usage: "import, list and remove the node's container images",
		Subcommands: []*cli.Command{
			{
				Name: "import", Usage: "import images from docker-save or OCI layout tar files",
				ArgsUsage: "FILE.tar [FILE.tar...]", Flags: []cli.Flag{dataDir},
				Action: func(c *cli.Context) error {
					if c.NArg() == 0 {
						return fmt.Errorf("images import needs at least one tar file")
					}
					st, err := open(c)
					if err != nil {
						return err
					}
					for _, f := range c.Args().Slice() {
						imgs, err := st.ImportFile(c.Context, f)
						if err != nil {
							return fmt.Errorf("import %s: %w", f, err)
						}
						for _, img := range imgs {
							fmt.Fprintf(c.App.Writer, "imported %s %s\n", strings.Join(img.Names, ","), shortID(img.ID))
						}
					}
					return nil
				},
			},
			{
				Name: "ls", Usage: "list the images", Flags: []cli.Flag{dataDir},
				Action: func(c *cli.Context) error {
					st, err := open(c)
					if err != nil {
						return err
					}
					imgs, err := st.List()
					if err != nil {
						return err
					}
					w := tabwriter.NewWriter(c.App.Writer, 0, 4, 3, ' ', 0)
					fmt.Fprintln(w, "IMAGE\tID\tPLATFORM\tSIZE")
					for _, img := range imgs {
						names := img.Names
						if len(names) == 0 {
							names = []string{"<none>"}
						}
						for _, n := range names {
							fmt.Fprintf(w, "%s\t%s\t%s/%s\t%.1f MB\n", n, shortID(img.ID), img.Platform.OS, img.Platform.Architecture, float64(img.Size)/1e6)
						}
					}
					return w.Flush()
				},
			},
			{
				Name: "rm", Usage: "remove images (untag; layers go when no image uses them)",
				ArgsUsage: "IMAGE [IMAGE...]", Flags: []cli.Flag{dataDir},
				Action: func(c *cli.Context) error {
					if c.NArg() == 0 {
						return fmt.Errorf("images rm needs at least one image")
					}
					st, err := open(c)
					if err != nil {
						return err
					}
					for _, ref := range c.Args().Slice() {
						if err := st.Remove(ref); err != nil {
							return fmt.Errorf("remove %s: %w", ref, err)
						}
						fmt.Fprintf(c.App.Writer, "removed %s\n", ref)
					}
					return nil
				},
			},
		},
	}
}

func shortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		id = id[:12]
	}
	return id
}
