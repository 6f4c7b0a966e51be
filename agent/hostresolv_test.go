package agent

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/orch-dev/orch/netproxy/dns"
)

// TestChooseHostResolvConf checks the agent's use of k3s' choice: an
// explicit --resolv-conf wins (a missing one stops the start), a usable
// host file is used in place, and with only loopback stubs a fallback
// file under the data dir names 8.8.8.8. Only files are involved.
func TestChooseHostResolvConf(t *testing.T) {
	dir := t.TempDir()
	given := filepath.Join(dir, "given.conf")
	if err := os.WriteFile(given, []byte("nameserver 127.0.0.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stub := dns.ResolvConfCandidate{Path: "/etc/resolv.conf", Content: []byte("nameserver 127.0.0.53\n")}
	real := dns.ResolvConfCandidate{Path: "/run/systemd/resolve/resolv.conf", Content: []byte("nameserver 192.0.2.53\n")}
	fallback := filepath.Join(dir, "agent", "etc", "resolv.conf")
	tests := []struct {
		name       string
		flag       string
		candidates []dns.ResolvConfCandidate
		want       string
		wantErr    string
	}{
		{name: "flag, used as given", flag: given, candidates: []dns.ResolvConfCandidate{real}, want: given},
		{name: "missing flag file", flag: filepath.Join(dir, "nope"), wantErr: "--resolv-conf: open"},
		{name: "usable host file", candidates: []dns.ResolvConfCandidate{stub, real}, want: real.Path},
		{name: "only a stub: fallback", candidates: []dns.ResolvConfCandidate{stub}, want: fallback},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := &Agent{cfg: Config{ResolvConf: tc.flag}, dir: filepath.Join(dir, "agent"), log: slog.New(slog.DiscardHandler)}
			got, err := a.chooseHostResolvConf(tc.candidates)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %q, %v; want error %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	b, err := os.ReadFile(fallback)
	if err != nil || string(b) != dns.FallbackResolvConf {
		t.Errorf("fallback file: %q, %v; want %q", b, err, dns.FallbackResolvConf)
	}
}
