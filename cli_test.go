package main

import (
	"strings"
	"testing"
)

// The operational verbs share their scaffolding: the same argument check
// names the verb as typed, and the same --data-dir and --config flags.
func TestOperationalVerbsScaffolding(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"snapshot", "save", "x"}, `snapshot save takes no arguments, got ["x"]`},
		{[]string{"snapshot", "ls", "x", "y"}, `snapshot ls takes no arguments, got ["x" "y"]`},
		{[]string{"secrets-encrypt", "status", "x"}, `secrets-encrypt status takes no arguments, got ["x"]`},
		{[]string{"secrets-encrypt", "rotate-keys", "x"}, `secrets-encrypt rotate-keys takes no arguments, got ["x"]`},
		{[]string{"check-config", "now"}, `check-config takes no arguments, got ["now"]`},
		{[]string{"snapshot", "ls", "--data-dir", "relative"}, "data-dir"},
		{[]string{"secrets-encrypt", "status", "--data-dir", "relative"}, "data-dir"},
	} {
		_, _, err := runApp(t, tt.args...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("orch %s: error %v, want one containing %q", strings.Join(tt.args, " "), err, tt.want)
		}
	}
}
