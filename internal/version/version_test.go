package version

import (
	"runtime"
	"strings"
	"testing"
)

func TestInfoString(t *testing.T) {
	i := Info{Version: "v1.2.3", GitCommit: "abc123", GoVersion: "go1.26.0", Platform: "linux/arm64", Kubernetes: "v1.33.1"}
	want := "orch version v1.2.3\ngit commit: abc123\ngo version: go1.26.0 linux/arm64\nkubernetes api: v1.33.1\n"
	if got := i.String(); got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

func TestGet(t *testing.T) {
	i := Get()
	if i.GoVersion != runtime.Version() {
		t.Errorf("GoVersion = %q, want %q", i.GoVersion, runtime.Version())
	}
	if i.Kubernetes != Kubernetes || !strings.HasPrefix(i.Kubernetes, "v1.") {
		t.Errorf("Kubernetes = %q", i.Kubernetes)
	}
	if i.GitCommit == "" || i.Version == "" {
		t.Errorf("empty fields in %+v", i)
	}
}
