package snapshot

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// PrintList writes snapshots as the table `orch snapshot ls` shows.
func PrintList(w io.Writer, snaps []Info) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tTAKEN\tSIZE\tCHECKSUM\tFILE")
	for _, s := range snaps {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Name, s.Time.UTC().Format(time.RFC3339), humanBytes(s.Size), s.Checksum, s.Path)
	}
	return tw.Flush()
}

// PrintRestored tells the user what a restore did and what comes next.
func PrintRestored(w io.Writer, r Restored) error {
	if r.Backup != "" {
		if _, err := fmt.Fprintf(w, "previous store kept as %s\n", r.Backup); err != nil {
			return err
		}
	}
	if r.Warning != "" {
		if _, err := fmt.Fprintf(w, "warning: %s\n", r.Warning); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintf(w, "restored %d keys into %s (revision %d); start the server to use it\n", r.Keys, r.DB, r.Revision)
	return err
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
