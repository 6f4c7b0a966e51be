package main

import (
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckConfig runs `orch check-config` for real on this machine: the
// report has every section, and the exit status is non-zero exactly when
// a line says MISSING.
func TestCheckConfig(t *testing.T) {
	data := filepath.Join(t.TempDir(), "orch")
	out, err := orchCommand(t, "check-config", "--data-dir", data).CombinedOutput()
	t.Logf("orch check-config:\n%s", out)
	for _, want := range []string{"System:\n", "Cgroups:\n", "Kernel:\n", "  overlayfs (", "data directory " + data + " writable"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("report lacks %q", want)
		}
	}
	missing := strings.Contains(string(out), "MISSING ")
	var exit *exec.ExitError
	switch {
	case missing && !errors.As(err, &exit):
		t.Errorf("MISSING lines but exit status %v", err)
	case missing && !strings.Contains(string(out), "orch: check-config: required features are missing"):
		t.Error("no closing error line")
	case !missing && err != nil:
		t.Errorf("nothing missing but %v", err)
	}
}

func TestCheckConfigBadInput(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{args: []string{"check-config", "now"}, want: `check-config takes no arguments, got ["now"]`},
		{args: []string{"check-config", "--data-dir", "relative"}, want: `data-dir: "relative" is not an absolute path`},
		{args: []string{"check-config", "--debug"}, want: "flag provided but not defined: -debug"},
	}
	for _, tt := range tests {
		_, _, err := runApp(t, tt.args...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("orch %s: %v, want %q", strings.Join(tt.args, " "), err, tt.want)
		}
	}
}
