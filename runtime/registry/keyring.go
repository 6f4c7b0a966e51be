package registry

import (
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"sort"
	"strings"

	v1 "k8s.io/api/core/v1"
)

// credential is one set of registry credentials.
type credential struct {
	username, password string
	identityToken      string // an OAuth2 refresh token, from `docker login` with a token
	source             string // where it came from, for messages: secret ns/name or registries.yaml
}

// dockerConfigEntry is one registry's entry of a .dockercfg or of
// .dockerconfigjson's "auths".
type dockerConfigEntry struct {
	Username      string `json:"username"`
	Password      string `json:"password"`
	Auth          string `json:"auth"`
	IdentityToken string `json:"identitytoken"`
}

// keyring holds the credentials of a pod's imagePullSecrets by the
// registry location they are for, as the kubelet's BasicDockerKeyring does.
type keyring struct {
	keys  []string // most specific first
	creds map[string][]credential
}

// newKeyring reads dockerconfigjson and dockercfg secrets. Secrets of
// other types, and entries that cannot be decoded, are skipped: the
// kubelet does the same, and the pull then fails with the registry's own
// "unauthorized" rather than a confusing error about a secret.
func newKeyring(secrets []v1.Secret) *keyring {
	k := &keyring{creds: map[string][]credential{}}
	for _, s := range secrets {
		var entries map[string]dockerConfigEntry
		switch s.Type {
		case v1.SecretTypeDockerConfigJson:
			var cfg struct {
				Auths map[string]dockerConfigEntry `json:"auths"`
			}
			if json.Unmarshal(s.Data[v1.DockerConfigJsonKey], &cfg) != nil {
				continue
			}
			entries = cfg.Auths
		case v1.SecretTypeDockercfg:
			if json.Unmarshal(s.Data[v1.DockerConfigKey], &entries) != nil {
				continue
			}
		default:
			continue
		}
		for loc, e := range entries {
			cr := credential{username: e.Username, password: e.Password, identityToken: e.IdentityToken,
				source: fmt.Sprintf("secret %s/%s", s.Namespace, s.Name)}
			if e.Auth != "" {
				u, p, err := decodeAuth(e.Auth)
				if err != nil {
					continue
				}
				cr.username, cr.password = u, p
			}
			key, ok := keyringKey(loc)
			if !ok {
				continue
			}
			if _, seen := k.creds[key]; !seen {
				k.keys = append(k.keys, key)
			}
			k.creds[key] = append(k.creds[key], cr)
		}
	}
	// Reverse lexical order puts longer, more specific keys of the same
	// host first, like the kubelet.
	sort.Sort(sort.Reverse(sort.StringSlice(k.keys)))
	return k
}

// keyringKey turns a docker config location ("https://index.docker.io/v1/",
// "registry.example.com:5000", "*.example.com/team") into host[/path].
func keyringKey(loc string) (string, bool) {
	v := loc
	if !strings.HasPrefix(v, "https://") && !strings.HasPrefix(v, "http://") {
		v = "https://" + v
	}
	u, err := url.Parse(v)
	if err != nil || u.Host == "" {
		return "", false
	}
	p := u.Path
	// Docker writes API version paths into config files; they are not
	// part of the repository path.
	if strings.HasPrefix(p, "/v1/") || strings.HasPrefix(p, "/v2/") {
		p = p[3:]
	}
	p = strings.TrimSuffix(p, "/")
	host := u.Host
	if host == defaultDomain || host == defaultEndpoint {
		host = legacyDomain
	}
	return host + p, true
}

// lookup returns the credentials for a repository, best match first.
func (k *keyring) lookup(r Reference) []credential {
	domain := r.Domain
	if domain == defaultDomain {
		domain = legacyDomain
	}
	target := domain + "/" + r.Path
	var out []credential
	for _, key := range k.keys {
		if globMatch(key, target) {
			out = append(out, k.creds[key]...)
		}
	}
	return out
}

// globMatch is the kubelet's matching of a credential location against an
// image: the same port, the same number of host labels each matching as a
// glob (*.example.com), and the location's path a prefix of the image's.
func globMatch(glob, target string) bool {
	g, err := url.Parse("https://" + glob)
	if err != nil {
		return false
	}
	t, err := url.Parse("https://" + target)
	if err != nil {
		return false
	}
	gHost, gPort := splitHostPort(g.Host)
	tHost, tPort := splitHostPort(t.Host)
	if gPort != tPort || !strings.HasPrefix(t.Path, g.Path) {
		return false
	}
	gParts, tParts := strings.Split(gHost, "."), strings.Split(tHost, ".")
	if len(gParts) != len(tParts) {
		return false
	}
	for i := range gParts {
		if ok, err := filepath.Match(gParts[i], tParts[i]); err != nil || !ok {
			return false
		}
	}
	return true
}

func splitHostPort(hostport string) (host, port string) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return hostport, ""
	}
	return host, port
}
