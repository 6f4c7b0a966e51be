package ingress

import (
	"cmp"
	"net"
	"slices"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
)

// route is one path of one Ingress rule, with its backend resolved.
type route struct {
	path    string // as written for Exact; without a trailing "/" for Prefix ("/" stays)
	exact   bool
	backend *Backend
	age     int // position of the Ingress, oldest first: ties go to older Ingresses
	rank    int // position of the path in its Ingress
}

// matches reports whether the request path p is matched by r. A Prefix
// matches whole path elements, as the Ingress API specifies: "/foo"
// matches "/foo", "/foo/" and "/foo/bar", never "/foobar".
func (r *route) matches(p string) bool {
	if r.exact {
		return p == r.path
	}
	if r.path == "/" {
		return true
	}
	return p == r.path || strings.HasPrefix(p, r.path) && p[len(r.path)] == '/'
}

// before orders routes by precedence: the longest path, Exact over Prefix
// at equal length, then the older Ingress, then the order written.
func (r *route) before(o *route) int {
	if c := cmp.Compare(len(o.path), len(r.path)); c != 0 {
		return c
	}
	if r.exact != o.exact {
		if r.exact {
			return -1
		}
		return 1
	}
	if c := cmp.Compare(r.age, o.age); c != 0 {
		return c
	}
	return cmp.Compare(r.rank, o.rank)
}

// Table routes requests by host and path. It is immutable once built.
type Table struct {
	exact    map[string][]route // by lower-case host
	wildcard map[string][]route // "*.foo.com" kept as ".foo.com"
	anyHost  []route            // rules without a host
	fallback *Backend           // the oldest spec.defaultBackend, or nil
}

// Match returns the backend for a request to host (a Host header, port
// allowed) and path, or nil when nothing matches (the caller answers 404).
// The most specific host is tried first; a host whose paths all miss
// falls through to the less specific ones, and last to the default
// backend.
func (t *Table) Match(host, path string) *Backend {
	if path == "" {
		path = "/"
	}
	host = normalizeHost(host)
	if b := firstMatch(t.exact[host], path); b != nil {
		return b
	}
	if i := strings.IndexByte(host, '.'); i > 0 {
		if b := firstMatch(t.wildcard[host[i:]], path); b != nil {
			return b
		}
	}
	if b := firstMatch(t.anyHost, path); b != nil {
		return b
	}
	return t.fallback
}

func firstMatch(routes []route, path string) *Backend {
	for i := range routes {
		if routes[i].matches(path) {
			return routes[i].backend
		}
	}
	return nil
}

// normalizeHost lower-cases a Host header or SNI name and drops its port
// and a trailing dot, the forms under which a client may send one name.
func normalizeHost(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	h = strings.TrimSuffix(strings.ToLower(h), ".")
	return strings.Trim(h, "[]")
}

// add puts the paths of one rule in the table under its host.
func (t *Table) add(host string, routes []route) {
	host = normalizeHost(host)
	switch {
	case host == "":
		t.anyHost = append(t.anyHost, routes...)
	case strings.HasPrefix(host, "*."):
		t.wildcard[host[1:]] = append(t.wildcard[host[1:]], routes...)
	default:
		t.exact[host] = append(t.exact[host], routes...)
	}
}

// sort puts every host's routes in precedence order.
func (t *Table) sort() {
	byPrecedence := func(a, b route) int { return a.before(&b) }
	for _, rs := range t.exact {
		slices.SortStableFunc(rs, byPrecedence)
	}
	for _, rs := range t.wildcard {
		slices.SortStableFunc(rs, byPrecedence)
	}
	slices.SortStableFunc(t.anyHost, byPrecedence)
}

// newRoute makes the route of one Ingress path; ok is false for a path
// the API would have refused (relative).
func newRoute(p networkingv1.HTTPIngressPath, b *Backend, age, rank int) (route, bool) {
	path := p.Path
	if path == "" {
		path = "/"
	}
	if !strings.HasPrefix(path, "/") {
		return route{}, false
	}
	exact := p.PathType != nil && *p.PathType == networkingv1.PathTypeExact
	if !exact && path != "/" {
		path = strings.TrimRight(path, "/")
		if path == "" {
			path = "/"
		}
	}
	return route{path: path, exact: exact, backend: b, age: age, rank: rank}, true
}
