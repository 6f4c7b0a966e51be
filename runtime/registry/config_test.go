package registry

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseConfig(t *testing.T) {
	tests := []struct {
		name, yaml string
		err        string
	}{
		{name: "empty", yaml: ""},
		{name: "k3s example", yaml: `
mirrors:
  docker.io:
    endpoint:
      - "https://mycustomreg.com:5000"
  "*":
    endpoint: ["http://10.0.0.1:5000"]
configs:
  "mycustomreg.com:5000":
    auth:
      username: xxx
      password: xxx
    tls:
      cert_file: /c.pem
      key_file: /k.pem
      ca_file: /ca.pem
`},
		{name: "misspelt key", yaml: "mirrors:\n  docker.io:\n    endpoints: [x]\n", err: "field endpoints not found"},
		{name: "bad scheme", yaml: "mirrors:\n  docker.io:\n    endpoint: [\"ftp://x\"]\n", err: "scheme must be http or https"},
		{name: "bad rewrite", yaml: "mirrors:\n  docker.io:\n    rewrite:\n      \"(\": x\n", err: "mirrors.docker.io.rewrite"},
		{name: "bad auth", yaml: "configs:\n  x:\n    auth: {auth: \"!!\"}\n", err: "configs.x.auth.auth"},
		{name: "cert without key", yaml: "configs:\n  x:\n    tls: {cert_file: /c}\n", err: "cert_file and key_file go together"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tt.yaml))
			if tt.err == "" && err != nil {
				t.Fatal(err)
			}
			if tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
				t.Fatalf("ParseConfig = %v, want error %q", err, tt.err)
			}
		})
	}
}

func TestLoadConfigMissingFile(t *testing.T) {
	c, err := LoadConfig(filepath.Join(t.TempDir(), "registries.yaml"))
	if err != nil || len(c.Mirrors) != 0 {
		t.Fatalf("LoadConfig(missing) = %+v, %v", c, err)
	}
	p := filepath.Join(t.TempDir(), "registries.yaml")
	if err := os.WriteFile(p, []byte("mirrors: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(p); err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("LoadConfig(bad) = %v, want an error naming the file", err)
	}
}

func TestEndpoints(t *testing.T) {
	c, err := ParseConfig([]byte(`
mirrors:
  docker.io:
    endpoint: ["mirror.local:5000", "http://10.0.0.1:5000/base"]
    rewrite: {"^library/(.*)": "hub/$1"}
  self.example.com:
    endpoint: ["https://self.example.com"]
  "*":
    endpoint: ["http://all.local"]
`))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		domain string
		want   []string
	}{
		{"docker.io", []string{"https://mirror.local:5000/v2", "http://10.0.0.1:5000/base/v2", "https://registry-1.docker.io/v2"}},
		{"self.example.com", []string{"https://self.example.com/v2"}},
		{"quay.io", []string{"http://all.local/v2", "https://quay.io/v2"}},
	}
	for _, tt := range tests {
		var got []string
		for _, ep := range c.endpoints(tt.domain) {
			got = append(got, ep.String()+ep.path)
		}
		if strings.Join(got, " ") != strings.Join(tt.want, " ") {
			t.Errorf("endpoints(%s) = %v, want %v", tt.domain, got, tt.want)
		}
	}
	eps := c.endpoints("docker.io")
	if got := eps[0].repoPath("library/busybox"); got != "hub/busybox" {
		t.Errorf("rewrite = %s, want hub/busybox", got)
	}
	if got := eps[2].repoPath("library/busybox"); got != "library/busybox" {
		t.Errorf("the registry itself rewrote to %s", got)
	}
}
