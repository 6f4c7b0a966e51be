// Package testregistry is an in-process Distribution API v2 registry on
// 127.0.0.1 for tests: it serves busybox images built by
// internal/testimage (single-platform images and multi-platform indexes),
// optionally behind basic or bearer-token authentication, over plain HTTP
// or TLS. Tests only; nothing in the orch binary imports it.
//
// It answers only pulls (GET/HEAD of /v2/, manifests and blobs, and its
// own token endpoint); pushing is done in Go with Push* methods.
package testregistry

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/orch-dev/orch/internal/testimage"
)

// Media types the registry serves.
const (
	MediaTypeOCIIndex       = "application/vnd.oci.image.index.v1+json"
	MediaTypeDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	mediaTypeDockerConfig   = "application/vnd.docker.container.image.v1+json"
	mediaTypeDockerLayer    = "application/vnd.docker.image.rootfs.diff.tar.gzip"
)

// Auth selects how the registry authenticates pulls.
type Auth int

const (
	// AuthNone lets anyone pull.
	AuthNone Auth = iota
	// AuthBasic wants HTTP basic credentials on every request.
	AuthBasic
	// AuthBearer sends Docker's bearer challenge; its token endpoint
	// (/token) wants basic credentials when Username is set and gives
	// tokens valid for one repository's pull scope.
	AuthBearer
)

// Options configure a Registry.
type Options struct {
	Auth               Auth
	Username, Password string
	// RefreshToken, when set, is also accepted by the token endpoint as
	// an OAuth2 refresh token (POST grant_type=refresh_token), the
	// "identitytoken" of docker config files.
	RefreshToken string
	// TLS serves HTTPS with a self-signed certificate (see CertPEM).
	TLS bool
}

// Platform is an entry of a multi-platform index.
type Platform struct{ OS, Architecture, Variant string }

// Descriptor names pushed content.
type Descriptor struct {
	MediaType string
	Digest    string
	Size      int64
}

// Registry is a running test registry.
type Registry struct {
	// Host is host:port, for image references: Host + "/test/busybox:1".
	Host string
	// URL is the base URL, http:// or https://.
	URL string

	opts Options
	srv  *httptest.Server
	base []byte // the busybox layer, uncompressed

	mu        sync.Mutex
	manifests map[string]map[string]string   // repo → tag or digest → digest
	blobs     map[string][]byte              // digest → content (manifests too)
	types     map[string]string              // digest → media type of a manifest
	corrupt   map[string]func([]byte) []byte // blobs served altered
	tokens    map[string]string              // token → scope it grants
	requests  map[string]int                 // "GET /v2/..." → count
	held      chan struct{}                  // non-nil: blob GETs wait until it closes
	tokenReqs int
}

// New starts a registry on 127.0.0.1; it stops when the test ends.
func New(t testing.TB, opts Options) *Registry {
	t.Helper()
	base, err := busyboxLayer(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r := &Registry{
		opts:      opts,
		base:      base,
		manifests: map[string]map[string]string{},
		blobs:     map[string][]byte{},
		types:     map[string]string{},
		corrupt:   map[string]func([]byte) []byte{},
		tokens:    map[string]string{},
		requests:  map[string]int{},
	}
	if opts.TLS {
		r.srv = httptest.NewTLSServer(r)
	} else {
		r.srv = httptest.NewServer(r)
	}
	t.Cleanup(r.srv.Close)
	r.URL = r.srv.URL
	r.Host = strings.TrimPrefix(strings.TrimPrefix(r.URL, "https://"), "http://")
	return r
}

// CertPEM is the TLS server's certificate, for a ca_file.
func (r *Registry) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: r.srv.Certificate().Raw})
}

// busyboxLayer reads the one layer of testimage's busybox image.
func busyboxLayer(dir string) ([]byte, error) {
	file := filepath.Join(dir, "busybox.tar")
	if err := testimage.WriteBusybox(file, "busybox:base"); err != nil {
		return nil, err
	}
	f, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	tr := tar.NewReader(bytes.NewReader(f))
	for {
		h, err := tr.Next()
		if err != nil {
			return nil, fmt.Errorf("testregistry: no layer.tar in the busybox image: %w", err)
		}
		if h.Name == "layer.tar" {
			var b bytes.Buffer
			if _, err := b.ReadFrom(tr); err != nil {
				return nil, err
			}
			return b.Bytes(), nil
		}
	}
}

// PushImage pushes a busybox image for p as repo:tag (tag may be empty):
// the busybox layer plus a layer with /etc/platform holding "os/arch[/variant]",
// so a test can tell which image of an index a node picked.
func (r *Registry) PushImage(repo, tag string, p Platform) Descriptor {
	platform := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		platform += "/" + p.Variant
	}
	marker := tarOf("etc/platform", platform+"\n")
	var diffIDs []string
	var layers []map[string]any
	for _, l := range [][]byte{r.base, marker} {
		diffIDs = append(diffIDs, digest(l))
		gz := gzipped(l)
		r.putBlob(gz)
		layers = append(layers, map[string]any{"mediaType": mediaTypeDockerLayer, "digest": digest(gz), "size": len(gz)})
	}
	cfg := mustJSON(map[string]any{
		"architecture": p.Architecture,
		"os":           p.OS,
		"variant":      p.Variant,
		"created":      time.Unix(0, 0).UTC(),
		"config":       map[string]any{"Cmd": []string{"sh"}, "Env": []string{"PATH=/bin"}},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": diffIDs},
	})
	r.putBlob(cfg)
	m := mustJSON(map[string]any{
		"schemaVersion": 2,
		"mediaType":     MediaTypeDockerManifest,
		"config":        map[string]any{"mediaType": mediaTypeDockerConfig, "digest": digest(cfg), "size": len(cfg)},
		"layers":        layers,
	})
	return r.putManifest(repo, tag, MediaTypeDockerManifest, m)
}

// PushIndex pushes one image per platform and an OCI index of them as
// repo:tag.
func (r *Registry) PushIndex(repo, tag string, platforms ...Platform) Descriptor {
	var entries []map[string]any
	for _, p := range platforms {
		d := r.PushImage(repo, "", p)
		plat := map[string]any{"os": p.OS, "architecture": p.Architecture}
		if p.Variant != "" {
			plat["variant"] = p.Variant
		}
		entries = append(entries, map[string]any{"mediaType": d.MediaType, "digest": d.Digest, "size": d.Size, "platform": plat})
	}
	idx := mustJSON(map[string]any{"schemaVersion": 2, "mediaType": MediaTypeOCIIndex, "manifests": entries})
	return r.putManifest(repo, tag, MediaTypeOCIIndex, idx)
}

// Corrupt makes the registry serve blob digest with one byte changed, as
// a broken mirror or a man in the middle would.
func (r *Registry) Corrupt(digest string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.corrupt[digest] = func(b []byte) []byte {
		b = append([]byte(nil), b...)
		b[len(b)/2] ^= 0xff
		return b
	}
}

// Recompress makes the registry serve the gzipped layer digest compressed
// again with a different gzip header: the same layer content (diff ID) in
// other bytes, which only the blob digest check can catch.
func (r *Registry) Recompress(digest string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.corrupt[digest] = func(b []byte) []byte {
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			panic(err) // Recompress is only called for pushed layers
		}
		var out bytes.Buffer
		zw := gzip.NewWriter(&out)
		zw.Name = "recompressed"
		_, _ = io.Copy(zw, zr)
		_ = zw.Close()
		return out.Bytes()
	}
}

// Layers returns the layer digests of the image manifest digest.
func (r *Registry) Layers(manifestDigest string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var m struct {
		Layers []struct{ Digest string } `json:"layers"`
	}
	_ = json.Unmarshal(r.blobs[manifestDigest], &m)
	var out []string
	for _, l := range m.Layers {
		out = append(out, l.Digest)
	}
	return out
}

// Hold makes blob requests wait until release is called (or the client
// gives up), so that a test can line up concurrent pulls.
func (r *Registry) Hold() (release func()) {
	ch := make(chan struct{})
	r.mu.Lock()
	r.held = ch
	r.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			r.mu.Lock()
			r.held = nil
			r.mu.Unlock()
			close(ch)
		})
	}
}

// Requests counts requests by method and path, e.g.
// "GET /v2/test/busybox/blobs/sha256:...".
func (r *Registry) Requests(methodAndPath string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.requests[methodAndPath]
}

// TokenRequests counts requests to the token endpoint.
func (r *Registry) TokenRequests() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.tokenReqs
}

func (r *Registry) putBlob(b []byte) string {
	d := digest(b)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.blobs[d] = b
	return d
}

func (r *Registry) putManifest(repo, tag, mediaType string, b []byte) Descriptor {
	d := r.putBlob(b)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.manifests[repo] == nil {
		r.manifests[repo] = map[string]string{}
	}
	r.manifests[repo][d] = d
	if tag != "" {
		r.manifests[repo][tag] = d
	}
	r.types[d] = mediaType
	return Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(b))}
}

// ServeHTTP implements the pull side of the Distribution API.
func (r *Registry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	r.requests[req.Method+" "+req.URL.Path]++
	r.mu.Unlock()
	if req.URL.Path == "/token" {
		r.serveToken(w, req)
		return
	}
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		writeError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", "the operation is unsupported")
		return
	}
	if !strings.HasPrefix(req.URL.Path, "/v2/") {
		http.NotFound(w, req)
		return
	}
	rest := strings.TrimPrefix(req.URL.Path, "/v2/")
	var repo, kind, ref string
	for _, k := range []string{"/manifests/", "/blobs/"} {
		if i := strings.LastIndex(rest, k); i > 0 {
			repo, kind, ref = rest[:i], strings.Trim(k, "/"), rest[i+len(k):]
			break
		}
	}
	if !r.authorized(w, req, repo) {
		return
	}
	if rest == "" {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte("{}"))
		return
	}
	r.mu.Lock()
	var d string
	switch kind {
	case "manifests":
		d = r.manifests[repo][ref]
	case "blobs":
		if _, ok := r.blobs[ref]; ok && r.manifests[repo] != nil {
			d = ref
		}
	}
	body, mt, alter, held := r.blobs[d], r.types[d], r.corrupt[d], r.held
	r.mu.Unlock()
	if held != nil && kind == "blobs" {
		select {
		case <-held:
		case <-req.Context().Done():
			return
		}
	}
	switch {
	case kind == "":
		writeError(w, http.StatusNotFound, "NAME_UNKNOWN", "repository name not known to registry")
		return
	case d == "" && kind == "manifests":
		writeError(w, http.StatusNotFound, "MANIFEST_UNKNOWN", "manifest unknown")
		return
	case d == "":
		writeError(w, http.StatusNotFound, "BLOB_UNKNOWN", "blob unknown to registry")
		return
	}
	if alter != nil {
		body = alter(body)
	}
	if mt == "" {
		mt = "application/octet-stream"
	}
	w.Header().Set("Content-Type", mt)
	w.Header().Set("Docker-Content-Digest", d)
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	if req.Method == http.MethodGet {
		_, _ = w.Write(body)
	}
}

// authorized checks the request's credentials, answering 401 with a
// challenge when they are missing or wrong.
func (r *Registry) authorized(w http.ResponseWriter, req *http.Request, repo string) bool {
	switch r.opts.Auth {
	case AuthBasic:
		if u, p, ok := req.BasicAuth(); ok && u == r.opts.Username && p == r.opts.Password {
			return true
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="testregistry"`)
	case AuthBearer:
		scope := "repository:" + repo + ":pull"
		if tok, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer "); ok {
			r.mu.Lock()
			granted, known := r.tokens[tok]
			r.mu.Unlock()
			if known && (repo == "" || granted == scope) {
				return true
			}
		}
		ch := fmt.Sprintf(`Bearer realm="%s/token",service="testregistry"`, r.URL)
		if repo != "" {
			ch += fmt.Sprintf(`,scope="%s"`, scope)
		}
		w.Header().Set("WWW-Authenticate", ch)
	default:
		return true
	}
	writeError(w, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required")
	return false
}

// serveToken is the token endpoint of Docker's token authentication.
func (r *Registry) serveToken(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	r.tokenReqs++
	r.mu.Unlock()
	params := req.URL.Query()
	if req.Method == http.MethodPost {
		if err := req.ParseForm(); err != nil {
			writeError(w, http.StatusBadRequest, "DENIED", err.Error())
			return
		}
		params = req.PostForm
		if r.opts.RefreshToken == "" || params.Get("grant_type") != "refresh_token" || params.Get("refresh_token") != r.opts.RefreshToken {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write(mustJSON(map[string]string{"error": "invalid_grant", "details": "bad refresh token"}))
			return
		}
	} else if r.opts.Username != "" {
		if u, p, ok := req.BasicAuth(); !ok || u != r.opts.Username || p != r.opts.Password {
			writeError(w, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required")
			return
		}
	}
	if params.Get("service") != "testregistry" {
		writeError(w, http.StatusBadRequest, "DENIED", "unknown service")
		return
	}
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	tok := hex.EncodeToString(b)
	r.mu.Lock()
	r.tokens[tok] = params.Get("scope")
	r.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if req.Method == http.MethodPost {
		_, _ = w.Write(mustJSON(map[string]any{"access_token": tok, "expires_in": 300}))
		return
	}
	_, _ = w.Write(mustJSON(map[string]any{"token": tok, "expires_in": 300}))
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(mustJSON(map[string]any{"errors": []map[string]string{{"code": code, "message": msg}}}))
}

func digest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func gzipped(b []byte) []byte {
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	_, _ = zw.Write(b)
	_ = zw.Close()
	return out.Bytes()
}

// tarOf is a layer of one regular file.
func tarOf(name, data string) []byte {
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	_ = tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(data)), ModTime: time.Unix(0, 0)})
	_, _ = tw.Write([]byte(data))
	_ = tw.Close()
	return out.Bytes()
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only maps of plain values are marshalled
	}
	return b
}
