// Package registry pulls images from OCI and Docker registries (the
// Distribution API v2) into the node's image store.
//
// A pull resolves the reference as Docker does (docker.io, library/,
// :latest), asks each endpoint in turn — the mirrors registries.yaml lists
// for the registry, then the registry itself — for the manifest, picks the
// node's platform from an index, and hands the manifest to the image
// store's Ingest, which reads config and layers through this package,
// verifying each by its digest while it streams. Registries' 401
// challenges are answered with basic credentials or bearer tokens (cached
// per scope); credentials come from the pod's imagePullSecrets, matched by
// registry host the way the kubelet matches them, else from
// registries.yaml.
//
// The package owns no image storage and keeps no state on disk; it must
// not know about pods beyond their pull secrets.
package registry

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"

	"github.com/orch-dev/orch/runtime/image"
)

// Options configure a Puller.
type Options struct {
	// Config is the content of registries.yaml; nil is an empty one.
	Config *Config
	// Platform is what to pick from multi-platform images; default
	// NodePlatform().
	Platform image.Platform
	// UserAgent is sent with every request; default "orch".
	UserAgent string
	// ProgressTimeout ends a request when the registry sends nothing for
	// this long (the kubelet's image pull progress deadline); default 1m.
	ProgressTimeout time.Duration
	Logger          *slog.Logger
}

// Puller pulls images into an image store. It is safe for concurrent use:
// concurrent pulls of the same image (with the same credentials) into the
// same store share one download.
type Puller struct {
	cfg       *Config
	platform  platformMatcher
	userAgent string
	// progressTimeout ends requests that stall, see Options.
	progressTimeout time.Duration
	log             *slog.Logger
	tokens          *tokenCache

	mu      sync.Mutex
	clients map[string]*http.Client // by endpoint host
	plain   map[string]bool         // loopback hosts found to speak plain HTTP
	flights map[flightKey]*flight
}

// New returns a Puller. TLS files named in the config are read now, so a
// bad ca_file is reported at start-up rather than at the first pull.
func New(opts Options) (*Puller, error) {
	if opts.Config == nil {
		opts.Config = &Config{}
	}
	if opts.Platform.OS == "" {
		opts.Platform = NodePlatform()
	}
	if opts.UserAgent == "" {
		opts.UserAgent = "orch"
	}
	if opts.ProgressTimeout <= 0 {
		opts.ProgressTimeout = time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	p := &Puller{
		cfg:             opts.Config,
		platform:        newPlatformMatcher(opts.Platform),
		userAgent:       opts.UserAgent,
		progressTimeout: opts.ProgressTimeout,
		log:             opts.Logger,
		tokens:          newTokenCache(),
		clients:         map[string]*http.Client{},
		plain:           map[string]bool{},
		flights:         map[flightKey]*flight{},
	}
	for host, hc := range opts.Config.Configs {
		c, err := newHTTPClient(hc.TLS)
		if err != nil {
			return nil, fmt.Errorf("registry config for %s: %w", host, err)
		}
		p.clients[host] = c
	}
	return p, nil
}

// newHTTPClient is a client with the host's TLS settings. There is no
// overall timeout (layers can be large); connecting and waiting for
// response headers are bounded instead.
func newHTTPClient(tc *TLSConfig) (*http.Client, error) {
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if tc != nil {
		tlsCfg.InsecureSkipVerify = tc.InsecureSkipVerify
		if tc.CAFile != "" {
			pem, err := os.ReadFile(tc.CAFile)
			if err != nil {
				return nil, fmt.Errorf("ca_file: %w", err)
			}
			pool, err := x509.SystemCertPool()
			if err != nil {
				pool = x509.NewCertPool()
			}
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("ca_file %s: no PEM certificates", tc.CAFile)
			}
			tlsCfg.RootCAs = pool
		}
		if tc.CertFile != "" {
			pair, err := tls.LoadX509KeyPair(tc.CertFile, tc.KeyFile)
			if err != nil {
				return nil, fmt.Errorf("cert_file/key_file: %w", err)
			}
			tlsCfg.Certificates = []tls.Certificate{pair}
		}
	}
	return &http.Client{Transport: &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tlsCfg,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: time.Minute,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   4,
		ForceAttemptHTTP2:     true,
	}}, nil
}

func (p *Puller) client(host string) *http.Client {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.clients[host]; ok {
		return c
	}
	if c, ok := p.clients[defaultDomain]; ok && host == defaultEndpoint {
		return c // configs name Docker Hub docker.io, as images do
	}
	if c, ok := p.clients["*"]; ok {
		return c
	}
	c, _ := newHTTPClient(nil) // cannot fail without files to read
	p.clients[host] = c
	return c
}

type flightKey struct {
	dst   *image.Store
	ref   string // normalized
	creds string // fingerprint of the credentials tried
}

// flight is one pull in progress that callers share. Its context ends
// when the last caller waiting for it gives up.
type flight struct {
	done    chan struct{}
	img     image.Image
	err     error
	waiters int
	cancel  context.CancelFunc
}

// Pull pulls ref into dst, with the pod's imagePullSecrets. Concurrent
// pulls of the same image share one download; a caller whose ctx ends
// stops waiting, and the download stops when no caller waits any more.
func (p *Puller) Pull(ctx context.Context, dst *image.Store, ref string, pullSecrets []v1.Secret) (image.Image, error) {
	r, err := ParseReference(ref)
	if err != nil {
		return image.Image{}, fmt.Errorf("pull %s: %w", ref, err)
	}
	creds := newKeyring(pullSecrets).lookup(r)
	key := flightKey{dst: dst, ref: r.String(), creds: fingerprint(creds)}

	p.mu.Lock()
	f, ok := p.flights[key]
	if !ok {
		fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		f = &flight{done: make(chan struct{}), cancel: cancel}
		p.flights[key] = f
		go func() {
			defer close(f.done)
			defer cancel()
			f.img, f.err = p.pull(fctx, dst, ref, r, creds)
			p.mu.Lock()
			if p.flights[key] == f {
				delete(p.flights, key)
			}
			p.mu.Unlock()
		}()
	}
	f.waiters++
	p.mu.Unlock()

	select {
	case <-f.done:
		return f.img, f.err
	case <-ctx.Done():
		p.mu.Lock()
		f.waiters--
		if f.waiters == 0 {
			f.cancel()
			if p.flights[key] == f {
				delete(p.flights, key) // a new caller starts afresh
			}
		}
		p.mu.Unlock()
		return image.Image{}, fmt.Errorf("pull %s: %w", ref, ctx.Err())
	}
}

func fingerprint(creds []credential) string {
	h := sha256.New()
	for _, c := range creds {
		fmt.Fprintf(h, "%q %q %q\n", c.username, c.password, c.identityToken)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// pull tries each endpoint in turn and returns the first success, else the
// error of the last endpoint (the registry itself).
func (p *Puller) pull(ctx context.Context, dst *image.Store, ref string, r Reference, creds []credential) (image.Image, error) {
	var last error
	for _, ep := range p.cfg.endpoints(r.Domain) {
		img, err := p.pullFrom(ctx, dst, ref, r, ep, creds)
		if err == nil {
			return img, nil
		}
		if ctx.Err() != nil {
			return image.Image{}, fmt.Errorf("pull %s: %w", ref, ctx.Err())
		}
		if ep.mirror {
			p.log.Info("registry mirror failed, trying the next endpoint", "image", ref, "mirror", ep.String(), "err", err)
		}
		last = err
	}
	return image.Image{}, last
}

// pullFrom pulls from one endpoint, trying each credential that matched
// the image (most specific first) while the registry refuses them, as
// the kubelet does; with none, the endpoint's registries.yaml credential
// or none at all.
func (p *Puller) pullFrom(ctx context.Context, dst *image.Store, ref string, r Reference, ep endpoint, creds []credential) (image.Image, error) {
	var tries []*credential
	for i := range creds {
		tries = append(tries, &creds[i])
	}
	if len(tries) == 0 {
		c := p.cfg.hostConfig(ep.host).Auth.credentials()
		if c != nil {
			c.source = "registries.yaml"
		}
		tries = append(tries, c)
	}
	var err error
	var sources []string
	for _, cred := range tries {
		var img image.Image
		img, err = p.pullWith(ctx, dst, ref, r, ep, cred)
		var rerr *Error
		if err == nil || !errors.As(err, &rerr) || !rerr.Unauthorized() {
			return img, err
		}
		if cred != nil {
			sources = append(sources, cred.source)
		}
	}
	if len(sources) > 0 {
		// Say which credentials were refused: a stale pull secret is the
		// usual cause.
		return image.Image{}, fmt.Errorf("%w (with the credentials of %s)", err, strings.Join(sources, ", "))
	}
	return image.Image{}, err
}

func (p *Puller) pullWith(ctx context.Context, dst *image.Store, ref string, r Reference, ep endpoint, cred *credential) (image.Image, error) {
	s := &session{p: p, ep: ep, repo: ep.repoPath(r.Path), cred: cred, hc: p.client(ep.host)}
	p.mu.Lock()
	if p.plain[ep.host] {
		s.ep.scheme = "http"
	}
	p.mu.Unlock()
	desc, body, err := s.manifest(ctx, r.object())
	if err != nil && s.ep.scheme == "https" && !ep.explicitHTTP && isLoopback(ep.host) && ctx.Err() == nil && mayBePlainHTTP(err) {
		// Docker treats registries on loopback addresses as insecure: try
		// HTTPS, then plain HTTP. The HTTP answer counts once there is one.
		s.ep.scheme = "http"
		d, b, herr := s.manifest(ctx, r.object())
		if herr == nil || !isTransportError(herr) {
			p.mu.Lock()
			p.plain[ep.host] = true
			p.mu.Unlock()
			desc, body, err = d, b, herr
		} else {
			s.ep.scheme = "https"
		}
	}
	if err != nil {
		return image.Image{}, fmt.Errorf("pull %s: %w", ref, err)
	}
	src := &blobSource{s: s, cached: map[string][]byte{desc.Digest: body}, manifests: map[string]bool{}}
	resolved := desc.Digest // the repo digest, the index's for multi-platform images
	switch desc.MediaType {
	case image.MediaTypeOCIIndex, image.MediaTypeDockerList:
		var idx struct {
			Manifests []image.Descriptor `json:"manifests"`
		}
		if err := json.Unmarshal(body, &idx); err != nil {
			return image.Image{}, fmt.Errorf("pull %s: decode index: %w", ref, err)
		}
		d, err := pickManifest(p.platform, idx.Manifests)
		if err != nil {
			return image.Image{}, fmt.Errorf("pull %s: %w", ref, err)
		}
		src.manifests[d.Digest] = true
		desc = d
	case image.MediaTypeOCIManifest, image.MediaTypeDockerManifest, "":
	default:
		return image.Image{}, fmt.Errorf("pull %s: unsupported manifest media type %q", ref, desc.MediaType)
	}
	img, err := dst.Ingest(ctx, ref, resolved, src, desc)
	if err != nil {
		// Ingest's errors already start with the reference.
		return image.Image{}, fmt.Errorf("pull %w", err)
	}
	return img, nil
}

func isTransportError(err error) bool {
	var terr *transportError
	return errors.As(err, &terr)
}

// mayBePlainHTTP tells whether an HTTPS request's failure could mean the
// server speaks plain HTTP; a certificate the client refused says it
// speaks TLS.
func mayBePlainHTTP(err error) bool {
	var cerr *tls.CertificateVerificationError
	return isTransportError(err) && !errors.As(err, &cerr)
}

// isLoopback tells whether host[:port] is localhost or a loopback IP.
func isLoopback(hostport string) bool {
	host, _ := splitHostPort(hostport)
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(trimBrackets(host))
	return ip != nil && ip.IsLoopback()
}

func trimBrackets(s string) string {
	if len(s) > 1 && s[0] == '[' && s[len(s)-1] == ']' {
		return s[1 : len(s)-1]
	}
	return s
}
