package registry

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/orch-dev/orch/runtime/image"
)

// acceptManifests is what a pull accepts, newest formats first.
var acceptManifests = strings.Join([]string{
	image.MediaTypeOCIIndex,
	image.MediaTypeOCIManifest,
	image.MediaTypeDockerList,
	image.MediaTypeDockerManifest,
}, ", ")

const maxManifestSize = 4 << 20

// Error is an error answer of a registry, in the Distribution API's form
// ({"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}).
type Error struct {
	Status  int    // HTTP status
	Code    string // e.g. MANIFEST_UNKNOWN, UNAUTHORIZED, DENIED
	Message string
}

// Error reads like Docker's: "unauthorized: authentication required",
// "manifest unknown".
func (e *Error) Error() string {
	code := strings.ToLower(strings.ReplaceAll(e.Code, "_", " "))
	switch {
	case code == "":
		return e.Message
	case e.Message == "" || strings.EqualFold(e.Message, code):
		return code
	}
	return code + ": " + e.Message
}

// Unauthorized tells whether other credentials might help.
func (e *Error) Unauthorized() bool {
	return e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden
}

// errorFromResponse turns an unsuccessful answer into an *Error, with
// fallbackCode for registries that send no error body.
func errorFromResponse(resp *http.Response, fallbackCode string) error {
	e := &Error{Status: resp.StatusCode}
	var body struct {
		Errors []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
		// Token servers answer OAuth2-style.
		OAuthError string `json:"error"`
		Details    string `json:"details"`
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if json.Unmarshal(b, &body) == nil && len(body.Errors) > 0 {
		e.Code, e.Message = body.Errors[0].Code, body.Errors[0].Message
		return e
	}
	if body.OAuthError != "" {
		e.Code, e.Message = "UNAUTHORIZED", body.OAuthError
		if body.Details != "" {
			e.Message += ": " + body.Details
		}
		return e
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		e.Code, e.Message = "UNAUTHORIZED", "authentication required"
	case resp.StatusCode == http.StatusForbidden:
		e.Code, e.Message = "DENIED", "requested access to the resource is denied"
	case resp.StatusCode == http.StatusTooManyRequests:
		e.Code, e.Message = "TOOMANYREQUESTS", "too many requests"
	case resp.StatusCode == http.StatusNotFound && fallbackCode != "":
		e.Code = fallbackCode
	default:
		e.Message = fmt.Sprintf("unexpected status %s", resp.Status)
	}
	return e
}

// transportError is a request that got no HTTP answer at all.
type transportError struct{ err error }

func (e *transportError) Error() string { return e.err.Error() }
func (e *transportError) Unwrap() error { return e.err }

// session is one pull's conversation with one endpoint for one
// repository, with the credential chosen for it.
type session struct {
	p    *Puller
	ep   endpoint
	repo string // repository path on this endpoint (after rewrites)
	cred *credential
	hc   *http.Client
	// authz is the Authorization header the last challenge called for.
	authz string
}

// get sends GET path (relative to the endpoint's /v2) and answers the
// registry's 401 challenge once: basic with the credential, or a bearer
// token for the repository's pull scope.
func (s *session) get(ctx context.Context, path, accept string) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.ep.String()+s.ep.path+path, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("User-Agent", s.p.userAgent)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		if s.authz != "" {
			req.Header.Set("Authorization", s.authz)
		}
		resp, err := s.send(ctx, req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusUnauthorized || attempt > 0 {
			return resp, nil
		}
		chs := parseChallenges(resp.Header.Values("WWW-Authenticate"))
		// Keep the 401 to return when no challenge can be answered.
		authz, aerr := s.answer(ctx, chs)
		if aerr != nil || authz == "" {
			if aerr != nil {
				resp.Body.Close()
				return nil, aerr
			}
			return resp, nil
		}
		resp.Body.Close()
		s.authz = authz
	}
}

// send sends req and gives up when the registry sends nothing for the
// progress timeout, before the answer or within its body: a stalled
// download must not hold a pod's image pull for ever, and a slow but
// moving one must not be cut off by an overall deadline.
func (s *session) send(ctx context.Context, req *http.Request) (*http.Response, error) {
	rctx, cancel := context.WithCancel(ctx)
	g := &stallGuard{timeout: s.p.progressTimeout, cancel: cancel}
	g.timer = time.AfterFunc(g.timeout, g.fire)
	resp, err := s.hc.Do(req.WithContext(rctx))
	if err != nil {
		g.stop()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, &transportError{err: g.explain(err)}
	}
	g.body = resp.Body
	resp.Body = g
	return resp, nil
}

// stallGuard is a response body that cancels its request when no byte
// arrives for timeout.
type stallGuard struct {
	timeout time.Duration
	timer   *time.Timer
	cancel  context.CancelFunc
	stalled atomic.Bool
	body    io.ReadCloser
}

func (g *stallGuard) fire() {
	g.stalled.Store(true)
	g.cancel()
}

func (g *stallGuard) stop() {
	g.timer.Stop()
	g.cancel()
}

func (g *stallGuard) explain(err error) error {
	if g.stalled.Load() {
		return fmt.Errorf("the registry sent nothing for %s: %w", g.timeout, err)
	}
	return err
}

func (g *stallGuard) Read(p []byte) (int, error) {
	n, err := g.body.Read(p)
	if n > 0 {
		g.timer.Reset(g.timeout)
	}
	if err != nil && !errors.Is(err, io.EOF) {
		err = g.explain(err)
	}
	return n, err
}

func (g *stallGuard) Close() error {
	g.stop()
	return g.body.Close()
}

// answer returns the Authorization header for a registry's challenges,
// "" when none can be answered.
func (s *session) answer(ctx context.Context, chs []challenge) (string, error) {
	for _, ch := range chs {
		if ch.scheme == "bearer" {
			scope := ch.params["scope"]
			if scope == "" {
				scope = "repository:" + s.repo + ":pull"
			}
			key := tokenKey{realm: ch.params["realm"], service: ch.params["service"], scope: scope}
			if s.cred != nil {
				key.user = s.cred.username + "\x00" + s.cred.identityToken
			}
			if tok, ok := s.p.tokens.get(key); ok {
				return "Bearer " + tok, nil
			}
			tok, life, err := fetchToken(ctx, s.hc, ch, scope, s.cred)
			if err != nil {
				return "", err
			}
			s.p.tokens.put(key, tok, life)
			return "Bearer " + tok, nil
		}
	}
	for _, ch := range chs {
		if ch.scheme == "basic" && s.cred != nil && s.cred.identityToken == "" {
			return "Basic " + base64.StdEncoding.EncodeToString([]byte(s.cred.username+":"+s.cred.password)), nil
		}
	}
	return "", nil
}

// manifest fetches and checks the manifest or index ref (a tag or a
// digest) names. A digest is verified against the content; for a tag the
// registry's Docker-Content-Digest header, when sent, must match too.
func (s *session) manifest(ctx context.Context, ref string) (image.Descriptor, []byte, error) {
	resp, err := s.get(ctx, "/"+s.repo+"/manifests/"+ref, acceptManifests)
	if err != nil {
		return image.Descriptor{}, nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return image.Descriptor{}, nil, errorFromResponse(resp, "MANIFEST_UNKNOWN")
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxManifestSize+1))
	if err != nil {
		return image.Descriptor{}, nil, fmt.Errorf("read manifest: %w", err)
	}
	if len(b) > maxManifestSize {
		return image.Descriptor{}, nil, fmt.Errorf("manifest is larger than %d bytes", maxManifestSize)
	}
	sum := sha256.Sum256(b)
	got := "sha256:" + hex.EncodeToString(sum[:])
	want := resp.Header.Get("Docker-Content-Digest")
	if strings.HasPrefix(ref, "sha256:") {
		want = ref
	}
	if strings.HasPrefix(want, "sha256:") && want != got {
		return image.Descriptor{}, nil, fmt.Errorf("manifest digest mismatch: expected %s, got %s", want, got)
	}
	mt, _, _ := strings.Cut(resp.Header.Get("Content-Type"), ";")
	var m struct {
		MediaType     string `json:"mediaType"`
		SchemaVersion int    `json:"schemaVersion"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return image.Descriptor{}, nil, fmt.Errorf("decode manifest: %w", err)
	}
	if m.MediaType != "" {
		mt = m.MediaType
	}
	if m.SchemaVersion == 1 {
		return image.Descriptor{}, nil, errors.New("Docker image manifest schema 1 is not supported; push the image again with a current client")
	}
	return image.Descriptor{MediaType: strings.TrimSpace(mt), Digest: got, Size: int64(len(b))}, b, nil
}

// blobSource serves Ingest the pull's blobs: manifests from the manifests
// endpoint (the top one from memory), everything else from blobs.
type blobSource struct {
	s         *session
	cached    map[string][]byte
	manifests map[string]bool
}

var _ image.BlobSource = (*blobSource)(nil)

func (b *blobSource) Open(ctx context.Context, digest string) (io.ReadCloser, error) {
	if data, ok := b.cached[digest]; ok {
		return io.NopCloser(strings.NewReader(string(data))), nil
	}
	if b.manifests[digest] {
		_, data, err := b.s.manifest(ctx, digest)
		if err != nil {
			return nil, fmt.Errorf("manifest %s: %w", digest, err)
		}
		return io.NopCloser(strings.NewReader(string(data))), nil
	}
	resp, err := b.s.get(ctx, "/"+b.s.repo+"/blobs/"+digest, "")
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", digest, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, fmt.Errorf("blob %s: %w", digest, errorFromResponse(resp, "BLOB_UNKNOWN"))
	}
	// Ingest verifies the digest while it unpacks.
	return resp.Body, nil
}
