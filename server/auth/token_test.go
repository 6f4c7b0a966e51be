package auth

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/orch-dev/orch/internal/jointoken"
)

var (
	caA = []byte("-----BEGIN CERTIFICATE-----\nA\n-----END CERTIFICATE-----\n")
	caB = []byte("-----BEGIN CERTIFICATE-----\nB\n-----END CERTIFICATE-----\n")
)

func tokenFile(t *testing.T, path string) string {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("token file mode %v, want 0600", st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestEnsureTokenGeneratesOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "server", "token")
	first, err := EnsureToken(path, "", caA)
	if err != nil {
		t.Fatal(err)
	}
	if first.CAHash != jointoken.CAHash(caA) || first.User != "server" || len(first.Secret) != 64 {
		t.Errorf("generated token %+v", first)
	}
	if got := tokenFile(t, path); got != first.String() {
		t.Errorf("file has %q, want %q", got, first.String())
	}
	second, err := EnsureToken(path, "", caA)
	if err != nil {
		t.Fatal(err)
	}
	if second != first {
		t.Errorf("second start gave %+v, want %+v", second, first)
	}
	// A re-created CA keeps the secret and re-pins.
	third, err := EnsureToken(path, "", caB)
	if err != nil {
		t.Fatal(err)
	}
	if third.Secret != first.Secret || third.CAHash != jointoken.CAHash(caB) || tokenFile(t, path) != third.String() {
		t.Errorf("after CA change: %+v", third)
	}
}

func TestEnsureTokenGiven(t *testing.T) {
	tests := []struct {
		name       string
		given      string
		wantSecret string
		wantErr    string
	}{
		{name: "bare secret", given: "mysecret", wantSecret: "mysecret"},
		{name: "full token for this CA", given: jointoken.New(caA, "abc").String(), wantSecret: "abc"},
		{name: "full token for another CA", given: jointoken.New(caB, "abc").String(), wantErr: "does not match this server's CA"},
		{name: "malformed", given: "K10zz::server:abc", wantErr: "--token"},
		{name: "hostile", given: "abc\nmore", wantErr: "--token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "token")
			if err := os.WriteFile(path, []byte(jointoken.New(caA, "old").String()), 0o644); err != nil {
				t.Fatal(err)
			}
			tok, err := EnsureToken(path, tt.given, caA)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tok.Secret != tt.wantSecret || tok.CAHash != jointoken.CAHash(caA) {
				t.Errorf("token %+v", tok)
			}
			if tokenFile(t, path) != tok.String() {
				t.Error("file not updated")
			}
			// Later starts without --token keep it.
			again, err := EnsureToken(path, "", caA)
			if err != nil || again != tok {
				t.Errorf("restart: %+v, %v", again, err)
			}
		})
	}
}

func TestEnsureTokenCorruptFileKept(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token")
	junk := []byte("K10nothex::server:abc\n")
	if err := os.WriteFile(path, junk, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := EnsureToken(path, "", caA)
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("err = %v, want one naming %s", err, path)
	}
	if b, _ := os.ReadFile(path); string(b) != string(junk) {
		t.Error("corrupt token file rewritten")
	}
}
