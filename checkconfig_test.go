package main

import (
	"errors"
	"os"
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

// TestCheckConfigAgentFile: on an agent, the config file has agent keys;
// check-config takes the data directory from it.
func TestCheckConfigAgentFile(t *testing.T) {
	data := filepath.Join(t.TempDir(), "agent-data")
	file := filepath.Join(t.TempDir(), "config.yaml")
	content := "join: https://198.18.0.1:6443\ntoken: secret\ndata-dir: " + data + "\n"
	if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _, _ := runApp(t, "check-config", "--config", file)
	if !strings.Contains(out, "data directory "+data+" writable") {
		t.Errorf("report does not check the agent's data dir %s:\n%s", data, out)
	}
	if _, _, err := runApp(t, "check-config", "--config", file, "--data-dir", "relative"); err == nil ||
		!strings.Contains(err.Error(), `data-dir: "relative" is not an absolute path`) {
		t.Errorf("bad flag with an agent file: %v", err)
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
