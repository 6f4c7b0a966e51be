package registry

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"

	"github.com/orch-dev/orch/internal/testregistry"
	"github.com/orch-dev/orch/runtime/image"
)

var hostPlatform = testregistry.Platform{OS: "linux", Architecture: goruntime.GOARCH}

func newStore(t *testing.T) *image.Store {
	t.Helper()
	s, err := image.Open(image.Options{Root: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newPuller(t *testing.T, cfg *Config) *Puller {
	t.Helper()
	p, err := New(Options{Config: cfg, Platform: image.Platform{OS: "linux", Architecture: goruntime.GOARCH}})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func mustParseConfig(t *testing.T, yaml string) *Config {
	t.Helper()
	c, err := ParseConfig([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// platformOf reads the marker file testregistry puts into each image.
func platformOf(t *testing.T, s *image.Store, ref string) string {
	t.Helper()
	dirs, err := s.LowerDirs(ref)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		if b, err := os.ReadFile(filepath.Join(d, "etc/platform")); err == nil {
			return strings.TrimSpace(string(b))
		}
	}
	t.Fatalf("%s has no /etc/platform", ref)
	return ""
}

func TestPull(t *testing.T) {
	anon := testregistry.New(t, testregistry.Options{})
	anon.PushImage("test/busybox", "1", hostPlatform)
	basic := testregistry.New(t, testregistry.Options{Auth: testregistry.AuthBasic, Username: "alice", Password: "s3cret"})
	basic.PushImage("test/busybox", "1", hostPlatform)
	bearer := testregistry.New(t, testregistry.Options{Auth: testregistry.AuthBearer, Username: "bob", Password: "hunter2"})
	bearer.PushImage("test/busybox", "1", hostPlatform)
	oauth := testregistry.New(t, testregistry.Options{Auth: testregistry.AuthBearer, Username: "nobody", Password: "-", RefreshToken: "refresh-me"})
	oauth.PushImage("test/busybox", "1", hostPlatform)
	bearerAnon := testregistry.New(t, testregistry.Options{Auth: testregistry.AuthBearer})
	bearerAnon.PushImage("library/busybox", "1", hostPlatform)
	tlsReg := testregistry.New(t, testregistry.Options{TLS: true})
	tlsReg.PushImage("test/busybox", "1", hostPlatform)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, tlsReg.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		ref     string
		config  string
		secrets []v1.Secret
		err     string
	}{
		{name: "anonymous over plain HTTP on loopback", ref: anon.Host + "/test/busybox:1"},
		{name: "unknown tag", ref: anon.Host + "/test/busybox:nope", err: "pull " + anon.Host + "/test/busybox:nope: manifest unknown"},
		{name: "unknown repository", ref: anon.Host + "/test/nothing:1", err: "manifest unknown"},
		{name: "basic without credentials", ref: basic.Host + "/test/busybox:1", err: "pull " + basic.Host + "/test/busybox:1: unauthorized: authentication required"},
		{name: "basic from registries.yaml", ref: basic.Host + "/test/busybox:1",
			config: fmt.Sprintf("configs:\n  %q:\n    auth: {username: alice, password: s3cret}\n", basic.Host)},
		{name: "basic from a pull secret", ref: basic.Host + "/test/busybox:1",
			secrets: []v1.Secret{dockerConfigSecret("creds", map[string]dockerConfigEntry{basic.Host: {Username: "alice", Password: "s3cret"}})}},
		{name: "wrong then right pull secret", ref: basic.Host + "/test/busybox:1",
			secrets: []v1.Secret{
				dockerConfigSecret("stale", map[string]dockerConfigEntry{basic.Host + "/test": {Username: "alice", Password: "old"}}),
				dockerConfigSecret("good", map[string]dockerConfigEntry{basic.Host: {Username: "alice", Password: "s3cret"}}),
			}},
		{name: "basic with a wrong password", ref: basic.Host + "/test/busybox:1",
			secrets: []v1.Secret{dockerConfigSecret("creds", map[string]dockerConfigEntry{basic.Host: {Username: "alice", Password: "nope"}})},
			err:     "unauthorized: authentication required (with the credentials of secret default/creds)"},
		{name: "secret for another registry", ref: basic.Host + "/test/busybox:1",
			secrets: []v1.Secret{dockerConfigSecret("creds", map[string]dockerConfigEntry{"other.example.com": {Username: "alice", Password: "s3cret"}})},
			err:     "unauthorized"},
		{name: "bearer with credentials", ref: bearer.Host + "/test/busybox:1",
			secrets: []v1.Secret{dockerConfigSecret("creds", map[string]dockerConfigEntry{"http://" + bearer.Host: {Username: "bob", Password: "hunter2"}})}},
		{name: "bearer with an identity token", ref: oauth.Host + "/test/busybox:1",
			secrets: []v1.Secret{dockerConfigSecret("creds", map[string]dockerConfigEntry{oauth.Host: {Username: "00000000-0000-0000-0000-000000000000", IdentityToken: "refresh-me"}})}},
		{name: "bearer with a stale identity token", ref: oauth.Host + "/test/busybox:1",
			secrets: []v1.Secret{dockerConfigSecret("creds", map[string]dockerConfigEntry{oauth.Host: {IdentityToken: "old"}})},
			err:     "unauthorized: invalid_grant: bad refresh token"},
		{name: "bearer token refused", ref: bearer.Host + "/test/busybox:1", err: "unauthorized: authentication required"},
		{name: "anonymous bearer token", ref: bearerAnon.Host + "/library/busybox:1"},
		{name: "TLS with an unknown CA", ref: tlsReg.Host + "/test/busybox:1", err: "certificate"},
		{name: "TLS with ca_file", ref: tlsReg.Host + "/test/busybox:1",
			config: fmt.Sprintf("configs:\n  %q:\n    tls: {ca_file: %s}\n", tlsReg.Host, caFile)},
		{name: "TLS with insecure_skip_verify", ref: tlsReg.Host + "/test/busybox:1",
			config: fmt.Sprintf("configs:\n  %q:\n    tls: {insecure_skip_verify: true}\n", tlsReg.Host)},
		{name: "bad reference", ref: "Busybox", err: "pull Busybox: invalid reference format: repository name (library/Busybox) must be lowercase"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cfg *Config
			if tt.config != "" {
				cfg = mustParseConfig(t, tt.config)
			}
			s := newStore(t)
			img, err := newPuller(t, cfg).Pull(context.Background(), s, tt.ref, tt.secrets)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("Pull(%s) error = %v, want %q", tt.ref, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Pull(%s): %v", tt.ref, err)
			}
			got, err := s.Get(tt.ref)
			if err != nil || got.ID != img.ID {
				t.Fatalf("store.Get(%s) = %v, %v; want the pulled image %s", tt.ref, got.ID, err, img.ID)
			}
			if len(img.Layers) != 2 || img.Config.Cmd[0] != "sh" {
				t.Errorf("pulled image = %+v", img)
			}
			if _, err := os.Stat(filepath.Join(mustLowerDirs(t, s, tt.ref)[1], "bin/busybox")); err != nil {
				t.Errorf("busybox layer not unpacked: %v", err)
			}
		})
	}
}

func mustLowerDirs(t *testing.T, s *image.Store, ref string) []string {
	t.Helper()
	dirs, err := s.LowerDirs(ref)
	if err != nil {
		t.Fatal(err)
	}
	return dirs
}

func TestPullBearerTokenCachedPerScope(t *testing.T) {
	reg := testregistry.New(t, testregistry.Options{Auth: testregistry.AuthBearer})
	reg.PushImage("test/a", "1", hostPlatform)
	reg.PushImage("test/a", "2", testregistry.Platform{OS: "linux", Architecture: goruntime.GOARCH, Variant: "x"})
	reg.PushImage("test/b", "1", hostPlatform)
	p := newPuller(t, nil)
	ctx := context.Background()
	for _, ref := range []string{"/test/a:1", "/test/a:2"} {
		if _, err := p.Pull(ctx, newStore(t), reg.Host+ref, nil); err != nil {
			t.Fatalf("pull %s: %v", ref, err)
		}
	}
	if n := reg.TokenRequests(); n != 1 {
		t.Errorf("token requests after two pulls from one repository = %d, want 1 (cached per scope)", n)
	}
	if _, err := p.Pull(ctx, newStore(t), reg.Host+"/test/b:1", nil); err != nil {
		t.Fatal(err)
	}
	if n := reg.TokenRequests(); n != 2 {
		t.Errorf("token requests after a pull from another repository = %d, want 2 (a token is for one scope)", n)
	}
}

func TestPullMultiPlatform(t *testing.T) {
	reg := testregistry.New(t, testregistry.Options{})
	idx := reg.PushIndex("test/multi", "1",
		testregistry.Platform{OS: "linux", Architecture: "amd64"},
		testregistry.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"},
		testregistry.Platform{OS: "linux", Architecture: "arm", Variant: "v7"},
	)
	tests := []struct {
		node image.Platform
		want string
		err  string
	}{
		{node: image.Platform{OS: "linux", Architecture: "amd64"}, want: "linux/amd64"},
		{node: image.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}, want: "linux/arm64/v8"},
		{node: image.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}, want: "linux/arm/v7"},
		{node: image.Platform{OS: "linux", Architecture: "arm", Variant: "v6"}, err: "no matching manifest for linux/arm/v6 in the manifest list entries (has linux/amd64, linux/arm64/v8, linux/arm/v7)"},
		// This machine (or qemu-user running the arm64 test binary).
		{node: NodePlatform(), want: platformName(NodePlatform())},
	}
	for _, tt := range tests {
		t.Run(platformName(tt.node), func(t *testing.T) {
			p, err := New(Options{Platform: tt.node})
			if err != nil {
				t.Fatal(err)
			}
			s := newStore(t)
			ref := reg.Host + "/test/multi:1"
			img, err := p.Pull(context.Background(), s, ref, nil)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("Pull = %v, want error %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := platformOf(t, s, ref); got != tt.want || platformName(img.Platform) != tt.want {
				t.Errorf("pulled %s (config says %s), want %s", got, platformName(img.Platform), tt.want)
			}
			// The repo digest is the index's, as containerd reports it.
			if want := reg.Host + "/test/multi@" + idx.Digest; len(img.RepoDigests) != 1 || img.RepoDigests[0] != want || img.ImageRef(ref) != want {
				t.Errorf("repo digests %v, want [%s]", img.RepoDigests, want)
			}
		})
	}
}

func TestPullByDigest(t *testing.T) {
	reg := testregistry.New(t, testregistry.Options{})
	idx := reg.PushIndex("test/multi", "", hostPlatform)
	s := newStore(t)
	ref := reg.Host + "/test/multi@" + idx.Digest
	img, err := newPuller(t, nil).Pull(context.Background(), s, ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ref); err != nil {
		t.Fatal(err)
	}
	if len(img.RepoDigests) != 1 || img.RepoDigests[0] != ref {
		t.Errorf("repo digests of an image pulled by digest = %v, want [%s]", img.RepoDigests, ref)
	}
	wrong := reg.Host + "/test/multi@sha256:" + strings.Repeat("0", 64)
	if _, err := newPuller(t, nil).Pull(context.Background(), s, wrong, nil); err == nil || !strings.Contains(err.Error(), "manifest unknown") {
		t.Fatalf("pull of an unknown digest: %v", err)
	}
}

func TestPullDigestMismatch(t *testing.T) {
	reg := testregistry.New(t, testregistry.Options{})
	m := reg.PushImage("test/busybox", "1", hostPlatform)
	layers := reg.Layers(m.Digest)
	s := newStore(t)
	ref := reg.Host + "/test/busybox:1"
	reg.Recompress(layers[0])
	_, err := newPuller(t, nil).Pull(context.Background(), s, ref, nil)
	if err == nil || !strings.Contains(err.Error(), "blob "+layers[0]+" has digest sha256:") {
		t.Fatalf("pull of a layer in other bytes: %v; want a digest mismatch of %s", err, layers[0])
	}
	reg.Corrupt(layers[1])
	if _, err = newPuller(t, nil).Pull(context.Background(), s, ref, nil); err == nil {
		t.Fatal("pull of a corrupted layer succeeded")
	}
	if imgs, _ := s.List(); len(imgs) != 0 {
		t.Errorf("store has %v after failed pulls", imgs)
	}

	reg.Corrupt(m.Digest)
	_, err = newPuller(t, nil).Pull(context.Background(), s, reg.Host+"/test/busybox:1", nil)
	if err == nil || !strings.Contains(err.Error(), "manifest digest mismatch: expected "+m.Digest) {
		t.Fatalf("pull of a corrupted manifest: %v", err)
	}
}

func TestPullMirror(t *testing.T) {
	mirror := testregistry.New(t, testregistry.Options{Auth: testregistry.AuthBasic, Username: "m", Password: "p"})
	mirror.PushImage("mirrored/library/busybox", "1.36", hostPlatform)
	empty := testregistry.New(t, testregistry.Options{})
	// docker.io is not reachable from tests: the mirror must answer, and
	// the empty mirror listed first must be skipped.
	cfg := mustParseConfig(t, fmt.Sprintf(`
mirrors:
  docker.io:
    endpoint: ["http://%s", "http://%s"]
    rewrite:
      "^library/(.*)": "mirrored/library/$1"
configs:
  %q:
    auth: {username: m, password: p}
`, empty.Host, mirror.Host, mirror.Host))
	s := newStore(t)
	if _, err := newPuller(t, cfg).Pull(context.Background(), s, "busybox:1.36", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get("docker.io/library/busybox:1.36"); err != nil {
		t.Fatal(err)
	}
	if empty.Requests("GET /v2/mirrored/library/busybox/manifests/1.36") != 1 {
		t.Errorf("the first mirror was not tried")
	}

	// A wildcard mirror serves any registry.
	cfg = mustParseConfig(t, fmt.Sprintf("mirrors:\n  \"*\":\n    endpoint: [\"http://%s\"]\nconfigs:\n  %q:\n    auth: {username: m, password: p}\n", mirror.Host, mirror.Host))
	if _, err := newPuller(t, cfg).Pull(context.Background(), newStore(t), "registry.invalid/mirrored/library/busybox:1.36", nil); err != nil {
		t.Fatal(err)
	}
}

// waitWaiters waits until n callers wait for the pull of ref.
func waitWaiters(t *testing.T, p *Puller, ref string, n int) {
	t.Helper()
	r, err := ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		p.mu.Lock()
		got := 0
		for k, f := range p.flights {
			if k.ref == r.String() {
				got = f.waiters
			}
		}
		p.mu.Unlock()
		if got == n {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%d callers did not line up for %s", n, ref)
}

func TestPullConcurrentDeduplicated(t *testing.T) {
	reg := testregistry.New(t, testregistry.Options{})
	m := reg.PushImage("library/busybox", "latest", hostPlatform)
	p, s := newPuller(t, nil), newStore(t)
	release := reg.Hold()
	defer release()
	// The same image, spelt in different ways.
	refs := []string{reg.Host + "/library/busybox", reg.Host + "/library/busybox:latest"}
	const callers = 8
	errs := make(chan error, callers)
	for i := range callers {
		go func() {
			_, err := p.Pull(context.Background(), s, refs[i%2], nil)
			errs <- err
		}()
	}
	waitWaiters(t, p, refs[0], callers)
	release()
	for range callers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := reg.Requests("GET /v2/library/busybox/manifests/latest"); n != 1 {
		t.Errorf("manifest fetched %d times by %d concurrent pulls, want 1", n, callers)
	}
	for _, l := range reg.Layers(m.Digest) {
		if n := reg.Requests("GET /v2/library/busybox/blobs/" + l); n != 1 {
			t.Errorf("layer %s fetched %d times by %d concurrent pulls, want 1", l, n, callers)
		}
	}
}

func TestPullSharedCancellation(t *testing.T) {
	reg := testregistry.New(t, testregistry.Options{})
	reg.PushImage("test/busybox", "1", hostPlatform)
	p, s := newPuller(t, nil), newStore(t)
	ref := reg.Host + "/test/busybox:1"
	release := reg.Hold()
	defer release()

	// One of two callers gives up: the other still gets the image.
	ctxA, cancelA := context.WithCancel(context.Background())
	errA, errB := make(chan error, 1), make(chan error, 1)
	go func() { _, err := p.Pull(ctxA, s, ref, nil); errA <- err }()
	go func() { _, err := p.Pull(context.Background(), s, ref, nil); errB <- err }()
	waitWaiters(t, p, ref, 2)
	cancelA()
	if err := <-errA; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled caller got %v", err)
	}
	release()
	if err := <-errB; err != nil {
		t.Fatalf("remaining caller got %v", err)
	}

	// The only caller gives up: the pull is dropped, and the next caller
	// starts afresh.
	release = reg.Hold()
	defer release()
	ctxC, cancelC := context.WithCancel(context.Background())
	errC := make(chan error, 1)
	s2 := newStore(t)
	go func() { _, err := p.Pull(ctxC, s2, ref, nil); errC <- err }()
	waitWaiters(t, p, ref, 1)
	cancelC()
	if err := <-errC; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled caller got %v", err)
	}
	p.mu.Lock()
	n := len(p.flights)
	p.mu.Unlock()
	if n != 0 {
		t.Errorf("%d pulls still registered after their only caller left", n)
	}
	release()
	if _, err := p.Pull(context.Background(), s2, ref, nil); err != nil {
		t.Fatalf("pull after a cancelled one: %v", err)
	}
}

func TestPullStalledRegistry(t *testing.T) {
	reg := testregistry.New(t, testregistry.Options{})
	reg.PushImage("test/busybox", "1", hostPlatform)
	release := reg.Hold() // blobs never come
	defer release()
	p, err := New(Options{Platform: image.Platform{OS: "linux", Architecture: goruntime.GOARCH}, ProgressTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Pull(context.Background(), newStore(t), reg.Host+"/test/busybox:1", nil)
	if err == nil || !strings.Contains(err.Error(), "the registry sent nothing for 200ms") {
		t.Fatalf("pull from a stalled registry = %v", err)
	}
}

func TestPullCancelled(t *testing.T) {
	reg := testregistry.New(t, testregistry.Options{})
	reg.PushImage("test/busybox", "1", hostPlatform)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := newPuller(t, nil).Pull(ctx, newStore(t), reg.Host+"/test/busybox:1", nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Pull with a cancelled context = %v, want context.Canceled", err)
	}
}

func TestPullUnreachable(t *testing.T) {
	// A port nothing listens on: 127.0.0.1 port 1 is refused at once.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := newPuller(t, nil).Pull(ctx, newStore(t), "127.0.0.1:1/test/busybox:1", nil)
	if err == nil || !strings.Contains(err.Error(), "pull 127.0.0.1:1/test/busybox:1: ") || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("Pull from a closed port = %v", err)
	}
}
