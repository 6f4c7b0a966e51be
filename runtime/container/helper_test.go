package container

import (
	"bytes"
	"compress/gzip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func gzipped(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

func TestInstallHelper(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "helper")
	script := []byte("#!/bin/sh\necho helper-ok\n")
	gz := gzipped(t, script)

	if p, err := installHelper(dir, nil); p != "" || err != nil {
		t.Fatalf("no embedded helper: got %q, %v; want \"\", nil", p, err)
	}
	if _, err := installHelper(dir, []byte("not gzip")); err == nil {
		t.Fatal("truncated embedded helper: want an error")
	}

	p, err := installHelper(dir, gz)
	if err != nil && strings.Contains(err.Error(), "not executable") {
		t.Skipf("temporary directory is noexec: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(p) != dir || !strings.HasPrefix(filepath.Base(p), helperPrefix) {
		t.Fatalf("installed at %s, want %s/%s*", p, dir, helperPrefix)
	}
	out, err := exec.Command(p).Output()
	if err != nil || string(out) != "helper-ok\n" {
		t.Fatalf("run installed helper: %q, %v", out, err)
	}

	// Installed already: kept as it is; other versions and leftovers go.
	for _, n := range []string{helperPrefix + "0123456789abcdef", ".tmp-" + helperPrefix + "x-1"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("old"), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	ino := inode(t, p)
	p2, err := installHelper(dir, gz)
	if err != nil || p2 != p {
		t.Fatalf("second install: %q, %v; want %q", p2, err, p)
	}
	if inode(t, p) != ino {
		t.Error("second install rewrote an intact helper")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("old versions left in %s: %v", dir, ents)
	}

	// A damaged file under the right name is replaced.
	if err := os.WriteFile(p, script[:5], 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := installHelper(dir, gz); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); !bytes.Equal(b, script) {
		t.Fatalf("damaged helper not replaced: %q", b)
	}
}

// Open runs shims from the embedded helper when there is one, and from
// Exe otherwise; an explicit ShimExe wins.
func TestOpenPicksShimBinary(t *testing.T) {
	defer func(saved []byte) { helperGz = saved }(helperGz)
	for _, tc := range []struct {
		name    string
		gz      []byte
		shimExe string
		want    string // "helper": the installed helper
	}{
		{name: "no helper", want: "/bin/true"},
		{name: "embedded helper", gz: gzipped(t, []byte("#!/bin/sh\n")), want: "helper"},
		{name: "explicit", gz: gzipped(t, []byte("#!/bin/sh\n")), shimExe: "/bin/false", want: "/bin/false"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			helperGz = tc.gz
			state := t.TempDir()
			r, err := Open(Config{StateDir: state, Exe: "/bin/true", ShimExe: tc.shimExe})
			if err != nil {
				t.Fatal(err)
			}
			want := tc.want
			if want == "helper" {
				hs, _ := filepath.Glob(filepath.Join(state, "helper", helperPrefix+"*"))
				if len(hs) != 1 {
					t.Fatalf("installed helpers: %v, want one", hs)
				}
				want = hs[0]
			}
			if r.cfg.ShimExe != want {
				t.Errorf("ShimExe = %q, want %q", r.cfg.ShimExe, want)
			}
		})
	}
}
