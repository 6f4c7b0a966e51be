package registry

import (
	"strings"
	"testing"
)

func TestParseReference(t *testing.T) {
	const dgst = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	tests := []struct {
		in     string
		want   string // String() of the result
		object string
		domain string
		err    string
	}{
		{in: "busybox", want: "docker.io/library/busybox:latest", object: "latest", domain: "docker.io"},
		{in: "busybox:1.36", want: "docker.io/library/busybox:1.36", object: "1.36", domain: "docker.io"},
		{in: "rancher/pause:3.6", want: "docker.io/rancher/pause:3.6", object: "3.6", domain: "docker.io"},
		{in: "docker.io/busybox", want: "docker.io/library/busybox:latest", object: "latest", domain: "docker.io"},
		{in: "index.docker.io/library/busybox", want: "docker.io/library/busybox:latest", object: "latest", domain: "docker.io"},
		{in: "localhost/app", want: "localhost/app:latest", object: "latest", domain: "localhost"},
		{in: "localhost:5000/app:v1", want: "localhost:5000/app:v1", object: "v1", domain: "localhost:5000"},
		{in: "127.0.0.1:5000/test/busybox:1", want: "127.0.0.1:5000/test/busybox:1", object: "1", domain: "127.0.0.1:5000"},
		{in: "[::1]:5000/app", want: "[::1]:5000/app:latest", object: "latest", domain: "[::1]:5000"},
		{in: "ghcr.io/org/team/app", want: "ghcr.io/org/team/app:latest", object: "latest", domain: "ghcr.io"},
		{in: "busybox@" + dgst, want: "docker.io/library/busybox@" + dgst, object: dgst, domain: "docker.io"},
		{in: "busybox:1.36@" + dgst, want: "docker.io/library/busybox:1.36@" + dgst, object: dgst, domain: "docker.io"},
		{in: "Foo/bar", want: "Foo/bar:latest", object: "latest", domain: "Foo"},
		{in: "", err: "invalid reference format"},
		{in: "Busybox", err: "must be lowercase"},
		{in: "busybox:", err: "bad tag"},
		{in: "busybox:-x", err: "bad tag"},
		{in: "busybox@sha256:abc", err: "digest"},
		{in: "busybox@md5:0123", err: "digest"},
		{in: "a//b", err: "bad repository name component"},
		{in: "a/b_", err: "bad repository name component"},
		{in: "host:port/x", err: "bad registry host"},
		{in: "x/" + strings.Repeat("a", 300), err: "must not be more than"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			r, err := ParseReference(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ParseReference(%q) = %v, %v; want error containing %q", tt.in, r, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseReference(%q): %v", tt.in, err)
			}
			if r.String() != tt.want || r.object() != tt.object || r.Domain != tt.domain {
				t.Errorf("ParseReference(%q) = %s (object %s, domain %s); want %s (object %s, domain %s)",
					tt.in, r, r.object(), r.Domain, tt.want, tt.object, tt.domain)
			}
		})
	}
}
