package registry

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// DefaultConfigFile is where k3s, and orch, read registry settings.
const DefaultConfigFile = "/etc/orch/registries.yaml"

// Config is /etc/orch/registries.yaml, in k3s' format:
//
//	mirrors:
//	  docker.io:
//	    endpoint: ["https://mirror.example.com:5000", "http://10.0.0.5:5000"]
//	    rewrite:
//	      "^library/(.*)": "dockerhub/$1"
//	configs:
//	  "mirror.example.com:5000":
//	    auth: {username: u, password: p}
//	    tls: {ca_file: /etc/ssl/mirror-ca.pem, insecure_skip_verify: false}
//
// Mirrors are tried in order, then the registry itself. A mirror named "*"
// applies to every registry. Configs are keyed by the host[:port] of an
// endpoint (or "*") and apply to requests to that host.
type Config struct {
	Mirrors map[string]Mirror     `yaml:"mirrors"`
	Configs map[string]HostConfig `yaml:"configs"`
}

// Mirror lists the endpoints serving one registry's images.
type Mirror struct {
	Endpoints []string          `yaml:"endpoint"`
	Rewrites  map[string]string `yaml:"rewrite"`
}

// HostConfig is how to talk to one registry host.
type HostConfig struct {
	Auth *AuthConfig `yaml:"auth"`
	TLS  *TLSConfig  `yaml:"tls"`
}

// AuthConfig are a registry host's credentials.
type AuthConfig struct {
	Username      string `yaml:"username"`
	Password      string `yaml:"password"`
	Auth          string `yaml:"auth"` // base64 of username:password
	IdentityToken string `yaml:"identitytoken"`
}

// TLSConfig is the TLS client setup for a registry host.
type TLSConfig struct {
	CAFile             string `yaml:"ca_file"`
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

// LoadConfig reads a registries.yaml. A missing file is an empty config:
// most nodes have none.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return &Config{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("registry config: %w", err)
	}
	c, err := ParseConfig(b)
	if err != nil {
		return nil, fmt.Errorf("registry config %s: %w", path, err)
	}
	return c, nil
}

// ParseConfig parses and checks registries.yaml content. Unknown keys are
// errors so that a misspelt "endpoints" does not silently do nothing.
func ParseConfig(b []byte) (*Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) { // io.EOF: empty file
		return nil, err
	}
	var errs []error
	for reg, m := range c.Mirrors {
		for _, ep := range m.Endpoints {
			if _, err := parseEndpoint(ep); err != nil {
				errs = append(errs, fmt.Errorf("mirrors.%s.endpoint: %w", reg, err))
			}
		}
		for re := range m.Rewrites {
			if _, err := regexp.Compile(re); err != nil {
				errs = append(errs, fmt.Errorf("mirrors.%s.rewrite %q: %w", reg, re, err))
			}
		}
	}
	for host, hc := range c.Configs {
		if hc.Auth != nil && hc.Auth.Auth != "" {
			if _, _, err := decodeAuth(hc.Auth.Auth); err != nil {
				errs = append(errs, fmt.Errorf("configs.%s.auth.auth: %w", host, err))
			}
		}
		if hc.TLS != nil && (hc.TLS.CertFile == "") != (hc.TLS.KeyFile == "") {
			errs = append(errs, fmt.Errorf("configs.%s.tls: cert_file and key_file go together", host))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &c, nil
}

// endpoint is one place to fetch a registry's images from.
type endpoint struct {
	scheme string // https or http
	host   string // host[:port]
	path   string // API prefix, normally /v2
	// explicitHTTP is true when the user asked for http (an http://
	// endpoint); loopback registries without a config fall back to it.
	explicitHTTP bool
	rewrites     []rewrite
	mirror       bool
}

type rewrite struct {
	re   *regexp.Regexp
	repl string
}

func (e endpoint) String() string { return e.scheme + "://" + e.host }

// repoPath applies the mirror's rewrites (the first that matches) to a
// repository path.
func (e endpoint) repoPath(p string) string {
	for _, rw := range e.rewrites {
		if rw.re.MatchString(p) {
			return rw.re.ReplaceAllString(p, rw.repl)
		}
	}
	return p
}

// parseEndpoint accepts "host[:port]", "https://host[:port][/v2]" and
// "http://...".
func parseEndpoint(s string) (endpoint, error) {
	raw := s
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return endpoint{}, fmt.Errorf("endpoint %q: %w", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return endpoint{}, fmt.Errorf("endpoint %q: scheme must be http or https", raw)
	}
	if u.Host == "" {
		return endpoint{}, fmt.Errorf("endpoint %q: no host", raw)
	}
	p := strings.TrimSuffix(u.Path, "/")
	if !strings.HasSuffix(p, "/v2") {
		p += "/v2"
	}
	return endpoint{scheme: u.Scheme, host: u.Host, path: p, explicitHTTP: u.Scheme == "http"}, nil
}

// endpoints returns where to fetch images of registry domain from:
// its mirrors (or the "*" mirror's) in order, then the registry itself.
func (c *Config) endpoints(domain string) []endpoint {
	var out []endpoint
	m, ok := c.Mirrors[domain]
	if !ok {
		m, ok = c.Mirrors["*"]
	}
	if ok {
		rws := compileRewrites(m.Rewrites)
		for _, s := range m.Endpoints {
			ep, err := parseEndpoint(s)
			if err != nil {
				continue // ParseConfig reported it
			}
			ep.rewrites, ep.mirror = rws, true
			out = append(out, ep)
		}
	}
	host := domain
	if host == defaultDomain {
		host = defaultEndpoint
	}
	def := endpoint{scheme: "https", host: host, path: "/v2"}
	for _, ep := range out {
		if ep.host == def.host && ep.path == def.path {
			return out // the registry is listed among its own mirrors
		}
	}
	return append(out, def)
}

// compileRewrites orders rewrites by pattern so the choice among several
// matching ones does not depend on map order.
func compileRewrites(m map[string]string) []rewrite {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []rewrite
	for _, k := range keys {
		if re, err := regexp.Compile(k); err == nil {
			out = append(out, rewrite{re: re, repl: m[k]})
		}
	}
	return out
}

// hostConfig returns the config for requests to host, or the "*" one.
func (c *Config) hostConfig(host string) HostConfig {
	if hc, ok := c.Configs[host]; ok {
		return hc
	}
	if host == defaultEndpoint {
		if hc, ok := c.Configs[defaultDomain]; ok {
			return hc
		}
	}
	return c.Configs["*"]
}

// credentials of a host from its config, nil when none.
func (a *AuthConfig) credentials() *credential {
	if a == nil {
		return nil
	}
	cr := &credential{username: a.Username, password: a.Password, identityToken: a.IdentityToken}
	if a.Auth != "" {
		cr.username, cr.password, _ = decodeAuth(a.Auth)
	}
	if cr.username == "" && cr.password == "" && cr.identityToken == "" {
		return nil
	}
	return cr
}

// decodeAuth decodes the base64 "user:password" of docker config files.
func decodeAuth(s string) (user, pass string, err error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return "", "", fmt.Errorf("auth is not base64: %w", err)
	}
	user, pass, ok := strings.Cut(string(b), ":")
	if !ok {
		return "", "", errors.New("auth is not base64 of user:password")
	}
	return user, pass, nil
}
