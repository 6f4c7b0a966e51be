package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/orch-dev/orch/server/registry"
)

// testLogger writes to the test log, so output shows only on failure.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func testConfig(t *testing.T, dataDir string) Config {
	return Config{
		DataDir:         dataDir,
		BindAddress:     "127.0.0.1",
		HTTPSPort:       freePort(t),
		NodeName:        "test-node",
		ClusterCIDR:     netip.MustParsePrefix("10.42.0.0/16"),
		ServiceCIDR:     netip.MustParsePrefix("10.43.0.0/16"),
		WriteKubeconfig: filepath.Join(t.TempDir(), "etc", "orch.yaml"),
		DisableAgent:    true,
		Logger:          testLogger(t),
	}
}

// runningServer is a Run in a goroutine; stop cancels it and returns Run's
// result.
type runningServer struct {
	cfg    Config
	cancel context.CancelFunc
	done   chan error
}

func startRun(t *testing.T, cfg Config) *runningServer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	rs := &runningServer{cfg: cfg, cancel: cancel, done: make(chan error, 1)}
	go func() { rs.done <- Run(ctx, cfg) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-rs.done:
		case <-time.After(30 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	deadline := time.After(30 * time.Second)
	for {
		if _, err := os.Stat(cfg.WriteKubeconfig); err == nil {
			return rs
		}
		select {
		case err := <-rs.done:
			rs.done <- err
			t.Fatalf("Run returned before ready: %v", err)
		case <-deadline:
			t.Fatal("kubeconfig not written within 30s")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (rs *runningServer) stop(t *testing.T) error {
	t.Helper()
	rs.cancel()
	select {
	case err := <-rs.done:
		rs.done <- err // for the cleanup
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return within 20s of cancel")
		return nil
	}
}

type kubeconfigFile struct {
	Clusters []struct {
		Cluster struct {
			Server string `yaml:"server"`
			CA     string `yaml:"certificate-authority-data"`
		} `yaml:"cluster"`
	} `yaml:"clusters"`
	Users []struct {
		User struct {
			Cert string `yaml:"client-certificate-data"`
			Key  string `yaml:"client-key-data"`
		} `yaml:"user"`
	} `yaml:"users"`
}

// clients returns the server URL, an HTTP client with the admin
// certificate and one that trusts the server but has no certificate.
func clients(t *testing.T, path string) (url string, admin, anonymous *http.Client, caPEM []byte) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var kc kubeconfigFile
	if err := yaml.Unmarshal(raw, &kc); err != nil || len(kc.Clusters) != 1 || len(kc.Users) != 1 {
		t.Fatalf("kubeconfig: %v\n%s", err, raw)
	}
	dec := func(s string) []byte {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	caPEM = dec(kc.Clusters[0].Cluster.CA)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("no CA in kubeconfig")
	}
	pair, err := tls.X509KeyPair(dec(kc.Users[0].User.Cert), dec(kc.Users[0].User.Key))
	if err != nil {
		t.Fatal(err)
	}
	mk := func(certs []tls.Certificate) *http.Client {
		tr := &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: pool, Certificates: certs},
			ForceAttemptHTTP2: true,
		}
		t.Cleanup(tr.CloseIdleConnections)
		return &http.Client{Transport: tr, Timeout: 10 * time.Second}
	}
	return kc.Clusters[0].Cluster.Server, mk([]tls.Certificate{pair}), mk(nil), caPEM
}

func get(t *testing.T, c *http.Client, url, bearer string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

func TestRunServesAndStops(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "orch")
	cfg := testConfig(t, dataDir)
	rs := startRun(t, cfg)

	st, err := os.Stat(cfg.WriteKubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("kubeconfig mode %v, want 0600", st.Mode().Perm())
	}
	for _, p := range []string{dataDir, filepath.Join(dataDir, "server", "tls")} {
		if st, err := os.Stat(p); err != nil || st.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v, mode %v; want 0700", p, err, st.Mode().Perm())
		}
	}
	url, admin, anonymous, _ := clients(t, cfg.WriteKubeconfig)
	if want := fmt.Sprintf("https://127.0.0.1:%d", cfg.HTTPSPort); url != want {
		t.Errorf("kubeconfig server %q, want %q", url, want)
	}
	tokenRaw, err := os.ReadFile(filepath.Join(dataDir, "server", "token"))
	if err != nil {
		t.Fatal(err)
	}
	_, secret, _ := strings.Cut(strings.TrimSpace(string(tokenRaw)), "::server:")

	// The resource table is filled in kind by kind; until core/v1 is in it
	// an authenticated resource request gets 404, which still proves that
	// authentication passed.
	authOK := http.StatusOK
	if !servesCoreV1(t) {
		t.Log("core/v1 not in the resource table yet: expecting 404 for authenticated resource requests")
		authOK = http.StatusNotFound
	}
	tests := []struct {
		name   string
		client *http.Client
		path   string
		bearer string
		want   int
	}{
		{name: "readyz with admin cert", client: admin, path: "/readyz", want: http.StatusOK},
		{name: "readyz anonymous", client: anonymous, path: "/readyz", want: http.StatusOK},
		{name: "namespaces with admin cert", client: admin, path: "/api/v1/namespaces", want: authOK},
		{name: "namespaces anonymous", client: anonymous, path: "/api/v1/namespaces", want: http.StatusUnauthorized},
		{name: "namespaces with wrong token", client: anonymous, path: "/api/v1/namespaces", bearer: "nope", want: http.StatusUnauthorized},
		// The join secret authenticates, but only for what a bootstrapping
		// node may do: discovery, not namespaces.
		{name: "discovery with join secret", client: anonymous, path: "/api", bearer: secret, want: http.StatusOK},
		{name: "namespaces with join secret", client: anonymous, path: "/api/v1/namespaces", bearer: secret, want: http.StatusForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := get(t, tt.client, url+tt.path, tt.bearer)
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.want, body)
			}
			if resp.ProtoMajor != 2 {
				t.Errorf("protocol %s, want HTTP/2", resp.Proto)
			}
		})
	}
	if authOK == http.StatusOK {
		resp, body := get(t, admin, url+"/api/v1/namespaces/default/services/kubernetes", "")
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"clusterIP":"10.43.0.1"`) {
			t.Errorf("kubernetes service: %d %s", resp.StatusCode, body)
		}
	}

	if err := rs.stop(t); err != nil {
		t.Fatalf("Run returned %v after cancel, want nil", err)
	}
	if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", cfg.HTTPSPort), time.Second); err == nil {
		c.Close()
		t.Fatal("port still open after Run returned")
	}
}

func TestRunRestartKeepsIdentity(t *testing.T) {
	dataDir := t.TempDir()
	cfg := testConfig(t, dataDir)
	first := startRun(t, cfg)
	_, _, _, ca1 := clients(t, cfg.WriteKubeconfig)
	token1, err := os.ReadFile(filepath.Join(dataDir, "server", "token"))
	if err != nil {
		t.Fatal(err)
	}
	if err := first.stop(t); err != nil {
		t.Fatal(err)
	}

	if err := os.Remove(cfg.WriteKubeconfig); err != nil {
		t.Fatal(err)
	}
	cfg.HTTPSPort = freePort(t)
	second := startRun(t, cfg)
	url, admin, _, ca2 := clients(t, cfg.WriteKubeconfig)
	if string(ca1) != string(ca2) {
		t.Error("CA changed across restart")
	}
	token2, _ := os.ReadFile(filepath.Join(dataDir, "server", "token"))
	if string(token1) != string(token2) {
		t.Error("join token changed across restart")
	}
	if resp, body := get(t, admin, url+"/version", ""); resp.StatusCode != http.StatusOK {
		t.Errorf("after restart: %d %s", resp.StatusCode, body)
	}
	if servesCoreV1(t) {
		if resp, body := get(t, admin, url+"/api/v1/namespaces/kube-system", ""); resp.StatusCode != http.StatusOK {
			t.Errorf("after restart: %d %s", resp.StatusCode, body)
		}
	}
	if err := second.stop(t); err != nil {
		t.Fatal(err)
	}
}

func servesCoreV1(t *testing.T) bool {
	table, err := registry.NewTable()
	if err != nil {
		t.Fatal(err)
	}
	return table.Lookup(schema.GroupVersion{Version: "v1"}, "namespaces") != nil &&
		table.Lookup(schema.GroupVersion{Version: "v1"}, "services") != nil
}

func TestRunStartErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()

	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr string
	}{
		{name: "port in use", mutate: func(c *Config) { c.HTTPSPort = busy.Addr().(*net.TCPAddr).Port }, wantErr: "listen on"},
		{name: "no data dir", mutate: func(c *Config) { c.DataDir = "" }, wantErr: "data directory"},
		{name: "no service CIDR", mutate: func(c *Config) { c.ServiceCIDR = netip.Prefix{} }, wantErr: "service CIDR"},
		{name: "bad bind address", mutate: func(c *Config) { c.BindAddress = "example.com" }, wantErr: "bind address"},
		{name: "token for another CA", mutate: func(c *Config) {
			c.Token = "K10" + strings.Repeat("ab", 32) + "::server:secret"
		}, wantErr: "does not match this server's CA"},
		{name: "corrupt store", mutate: func(c *Config) {
			p := filepath.Join(c.DataDir, "server", "db", "state.db")
			if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(strings.Repeat("garbage", 1000)), 0o600); err != nil {
				t.Fatal(err)
			}
		}, wantErr: "open store"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t, t.TempDir())
			tt.mutate(&cfg)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			err := Run(ctx, cfg)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Run = %v, want an error containing %q", err, tt.wantErr)
			}
			if errors.Is(err, context.DeadlineExceeded) {
				t.Fatal("Run ran until the deadline instead of failing")
			}
		})
	}
}

type fakeCompactable struct {
	rev, compacted int64
	calls          []int64
}

func (f *fakeCompactable) Revision() int64        { return f.rev }
func (f *fakeCompactable) CompactRevision() int64 { return f.compacted }
func (f *fakeCompactable) Compact(_ context.Context, rev int64) error {
	f.calls = append(f.calls, rev)
	f.compacted = rev
	return nil
}

func TestCompactorKeepsWindow(t *testing.T) {
	st := &fakeCompactable{}
	c := &compactor{st: st, log: slog.New(slog.DiscardHandler), keep: 5 * time.Minute, keepRevs: 1000}
	start := time.Unix(1_000_000, 0)
	steps := []struct {
		minute  int
		rev     int64
		wantRev int64 // compact revision after the tick
	}{
		{minute: 1, rev: 100, wantRev: 0},      // nothing 5 minutes old yet
		{minute: 2, rev: 200, wantRev: 0},      //
		{minute: 6, rev: 300, wantRev: 0},      // 5 minutes old, but within the last keepRevs
		{minute: 7, rev: 3000, wantRev: 200},   // minute 2 is the window start
		{minute: 8, rev: 5000, wantRev: 200},   // burst: the whole 5 minutes are kept
		{minute: 12, rev: 5000, wantRev: 3000}, // window start (minute 7)
		{minute: 20, rev: 5000, wantRev: 4000}, // idle: the last keepRevs are kept
	}
	for _, s := range steps {
		st.rev = s.rev
		c.tick(context.Background(), start.Add(time.Duration(s.minute)*time.Minute))
		if st.compacted != s.wantRev {
			t.Fatalf("minute %d: compacted to %d, want %d (calls %v)", s.minute, st.compacted, s.wantRev, st.calls)
		}
	}
	if len(c.samples) > 3 {
		t.Errorf("compactor keeps %d samples; old ones should be dropped", len(c.samples))
	}
}

func TestFirstServiceIP(t *testing.T) {
	tests := []struct {
		cidr, want string
	}{
		{"10.43.0.0/16", "10.43.0.1"},
		{"10.43.7.9/16", "10.43.0.1"},
		{"fd00:43::/112", "fd00:43::1"},
		{"10.0.0.0/32", ""},
	}
	for _, tt := range tests {
		got, err := firstServiceIP(netip.MustParsePrefix(tt.cidr))
		if tt.want == "" {
			if err == nil {
				t.Errorf("%s: got %v, want error", tt.cidr, got)
			}
			continue
		}
		if err != nil || got.String() != tt.want {
			t.Errorf("%s: got %v, %v; want %s", tt.cidr, got, err, tt.want)
		}
	}
}

func TestMetricsForAuthenticatedCallers(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	startRun(t, cfg)
	url, admin, anonymous, _ := clients(t, cfg.WriteKubeconfig)
	get(t, admin, url+"/api/v1/namespaces", "")
	resp, body := get(t, admin, url+"/metrics", "")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `apiserver_request_total{`) || !strings.Contains(body, `resource="namespaces"`) {
		t.Fatalf("metrics: %d\n%s", resp.StatusCode, body)
	}
	if resp, _ := get(t, anonymous, url+"/metrics", ""); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("anonymous metrics: %d", resp.StatusCode)
	}
}
