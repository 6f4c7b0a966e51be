package registry

import "testing"

// FuzzParseReference: any input is rejected or parses to a reference
// whose full form parses back to itself.
func FuzzParseReference(f *testing.F) {
	for _, s := range []string{"busybox", "busybox:1.36", "127.0.0.1:5000/a/b:c", "localhost/x@sha256:" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		"[::1]:5/a", "a//b", "A/b", "x:", "@", ":", "index.docker.io/busybox"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		r, err := ParseReference(in)
		if err != nil {
			return
		}
		again, err := ParseReference(r.String())
		if err != nil || again != r {
			t.Fatalf("ParseReference(%q) = %+v; its String %q parses to %+v, %v", in, r, r.String(), again, err)
		}
	})
}

// FuzzParseChallenges: hostile WWW-Authenticate headers do not panic or hang.
func FuzzParseChallenges(f *testing.F) {
	for _, s := range []string{`Bearer realm="https://a/token",service="s",scope="repository:x:pull"`, `Basic realm=x, Bearer realm="r"`, `Bearer realm="\`, `,,=,"`, `x y=`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		_ = parseChallenges([]string{in})
	})
}

// FuzzParseConfig: any registries.yaml is accepted or rejected without
// panicking, and an accepted one yields endpoints for any registry.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte("mirrors:\n  docker.io:\n    endpoint: [\"http://m:5000\"]\n    rewrite: {\"^(.*)$\": \"x/$1\"}\nconfigs:\n  m:5000:\n    auth: {username: u, password: p}\n"))
	f.Add([]byte("mirrors: {\"*\": {endpoint: [x]}}"))
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := ParseConfig(in)
		if err != nil {
			return
		}
		for _, ep := range c.endpoints("docker.io") {
			_ = ep.repoPath("library/busybox")
		}
	})
}
