package apiserver_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/orch-dev/orch/server/apiserver"
	"github.com/orch-dev/orch/server/ipalloc"
	"github.com/orch-dev/orch/server/registry"
	"github.com/orch-dev/orch/store"
	"github.com/orch-dev/orch/store/bolt"
)

// testServer is an API server on a real bbolt store, served over plain
// HTTP on 127.0.0.1 (TLS and authentication are the server package's).
type testServer struct {
	URL        string
	Kubeconfig string
	api        *apiserver.Server
	store      store.Store
	dir        string
}

type serverOption func(*apiserver.Config)

func withVersion(v string) serverOption { return func(c *apiserver.Config) { c.GitVersion = v } }

func startServer(t *testing.T, opts ...serverOption) *testServer {
	t.Helper()
	dir := t.TempDir()
	st, err := bolt.Open(filepath.Join(dir, "state.db"), bolt.Options{})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	table, err := registry.NewTable()
	if err != nil {
		t.Fatalf("table: %v", err)
	}
	ports, _ := ipalloc.ParsePortRange(ipalloc.DefaultNodePortRange)
	services, err := ipalloc.NewServices(netip.MustParsePrefix("10.43.0.0/16"), ports)
	if err != nil {
		t.Fatal(err)
	}
	services.Attach(table.Lookup(corev1.SchemeGroupVersion, "services"))
	cfg := apiserver.Config{
		Store: st, Table: table,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	for _, o := range opts {
		o(&cfg)
	}
	api, err := apiserver.New(cfg)
	if err != nil {
		t.Fatalf("new apiserver: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- api.Run(ctx) }()
	select {
	case <-api.Ready():
	case err := <-done:
		t.Fatalf("apiserver stopped: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("apiserver not ready")
	}
	hs := httptest.NewServer(api.Handler())
	t.Cleanup(func() {
		hs.CloseClientConnections()
		cancel()
		<-done
		hs.Close()
		if err := st.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	ts := &testServer{URL: hs.URL, api: api, store: st, dir: dir, Kubeconfig: filepath.Join(dir, "kubeconfig")}
	kubeconfig := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: %s
users:
- name: test
  user: {}
contexts:
- name: test
  context: {cluster: test, user: test, namespace: default}
current-context: test
`, hs.URL)
	if err := os.WriteFile(ts.Kubeconfig, []byte(kubeconfig), 0o600); err != nil {
		t.Fatal(err)
	}
	return ts
}

// kubectl runs a kubectl binary against the server with a fresh cache.
type kubectlRunner struct {
	t      *testing.T
	bin    string
	env    []string
	stdin  string
	server *testServer
}

func (ts *testServer) kubectl(t *testing.T, bin string) *kubectlRunner {
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("kubectl not available: %v", err)
	}
	cache := t.TempDir()
	return &kubectlRunner{t: t, bin: bin, server: ts,
		env: append(os.Environ(), "KUBECONFIG="+ts.Kubeconfig, "KUBECACHEDIR="+cache, "HOME="+cache)}
}

// run runs kubectl with args and returns stdout; it fails the test when
// kubectl fails.
func (k *kubectlRunner) run(args ...string) string {
	k.t.Helper()
	out, errOut, err := k.exec(args...)
	if err != nil {
		k.t.Fatalf("kubectl %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// fail runs kubectl expecting failure and returns stderr.
func (k *kubectlRunner) fail(args ...string) string {
	k.t.Helper()
	out, errOut, err := k.exec(args...)
	if err == nil {
		k.t.Fatalf("kubectl %s succeeded, want failure\nstdout:\n%s", strings.Join(args, " "), out)
	}
	return errOut
}

func (k *kubectlRunner) exec(args ...string) (string, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, k.bin, args...)
	cmd.Env = k.env
	if k.stdin != "" {
		cmd.Stdin = strings.NewReader(k.stdin)
		k.stdin = ""
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

func (k *kubectlRunner) withStdin(s string) *kubectlRunner { k.stdin = s; return k }

func mustContain(t *testing.T, got string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("output does not contain %q:\n%s", w, got)
		}
	}
}

// compactTo compacts the store's history up to its current revision.
func compactTo(ts *testServer) error {
	return ts.store.Compact(context.Background(), ts.store.Revision())
}
