package auth

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestEnsureServiceAccountKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tls", "service.key")
	k1, err := EnsureServiceAccountKey(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode = %v, want 0600", fi.Mode().Perm())
	}
	k2, err := EnsureServiceAccountKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if !k1.Equal(k2) {
		t.Error("second load returned another key: tokens issued before a restart would stop working")
	}
	if err := os.WriteFile(path, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := EnsureServiceAccountKey(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("corrupt key: err = %v, want an error naming the file", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "garbage" {
		t.Error("a corrupt key file was overwritten")
	}
}
