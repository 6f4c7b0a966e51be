package registry

import (
	"reflect"
	"testing"
	"time"
)

func TestParseChallenges(t *testing.T) {
	tests := []struct {
		in   []string
		want []challenge
	}{
		{[]string{`Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"`},
			[]challenge{{scheme: "bearer", params: map[string]string{"realm": "https://auth.docker.io/token", "service": "registry.docker.io", "scope": "repository:library/busybox:pull"}}}},
		{[]string{`Basic realm="Registry Realm"`}, []challenge{{scheme: "basic", params: map[string]string{"realm": "Registry Realm"}}}},
		{[]string{`basic realm=x, Bearer realm="r", service=s`},
			[]challenge{{scheme: "basic", params: map[string]string{"realm": "x"}}, {scheme: "bearer", params: map[string]string{"realm": "r", "service": "s"}}}},
		{[]string{`Bearer realm="a\"b"`}, []challenge{{scheme: "bearer", params: map[string]string{"realm": `a"b`}}}},
		{[]string{`Negotiate`}, []challenge{{scheme: "negotiate", params: map[string]string{}}}},
		{nil, nil},
	}
	for _, tt := range tests {
		if got := parseChallenges(tt.in); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("parseChallenges(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestTokenCacheExpiry(t *testing.T) {
	now := time.Unix(1000, 0)
	c := newTokenCache()
	c.now = func() time.Time { return now }
	k := tokenKey{realm: "r", scope: "repository:a:pull"}
	c.put(k, "tok", 60*time.Second)
	if tok, ok := c.get(k); !ok || tok != "tok" {
		t.Fatalf("get = %q, %v", tok, ok)
	}
	if _, ok := c.get(tokenKey{realm: "r", scope: "repository:b:pull"}); ok {
		t.Fatal("a token was shared across scopes")
	}
	now = now.Add(55 * time.Second) // within the slack before expiry
	if _, ok := c.get(k); ok {
		t.Fatal("a token about to expire was used")
	}
}
