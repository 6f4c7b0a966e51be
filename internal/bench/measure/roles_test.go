package measure

import (
	"flag"
	"path/filepath"
	"slices"
	"testing"
)

func TestRoleArgsAndAbsPathFlags(t *testing.T) {
	// The test binary's own flags are in flag.CommandLine too: add ours.
	role := flag.String("role", "", "")
	dir := flag.String("dir", "data", "")
	out := flag.String("out", "", "")
	flag.Int("pods", 30, "")
	if err := flag.CommandLine.Parse([]string{"-dir", "rel/data", "-pods", "7"}); err != nil {
		t.Fatal(err)
	}
	if err := AbsPathFlags("dir", "out"); err != nil {
		t.Fatal(err)
	}
	want, _ := filepath.Abs("rel/data")
	if *dir != want || *out != "" {
		t.Errorf("after AbsPathFlags: dir %q, out %q; want %q and unset", *dir, *out, want)
	}
	if err := AbsPathFlags("no-such-flag"); err == nil {
		t.Error("AbsPathFlags of an unknown flag succeeded")
	}

	args := RoleArgs("driver")
	if args[0] != "-role=driver" {
		t.Errorf("RoleArgs starts %q, want -role=driver", args[0])
	}
	for _, a := range []string{"-dir=" + want, "-pods=7", "-out="} {
		if !slices.Contains(args, a) {
			t.Errorf("RoleArgs %q lacks %q", args, a)
		}
	}
	// The driver parses them back to the same values.
	fs := flag.NewFlagSet("driver", flag.ContinueOnError)
	r2 := fs.String("role", "", "")
	d2 := fs.String("dir", "", "")
	p2 := fs.Int("pods", 0, "")
	fs.String("out", "x", "")
	flag.VisitAll(func(f *flag.Flag) {
		if fs.Lookup(f.Name) == nil {
			fs.String(f.Name, "", "") // the test binary's flags
		}
	})
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	if *r2 != "driver" || *d2 != want || *p2 != 7 || *role != "" {
		t.Errorf("parsed back: role %q, dir %q, pods %d", *r2, *d2, *p2)
	}
}
