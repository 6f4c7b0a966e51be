// Package version reports what this orch binary is: its own release, the git
// commit it was built from and the Kubernetes API version it serves.
//
// Version and GitCommit are set at link time by the Makefile:
//
//	-X github.com/orch-dev/orch/internal/version.Version=v0.1.0
//	-X github.com/orch-dev/orch/internal/version.GitCommit=0123abc
//
// They are variables only because -X can set nothing else; nothing assigns
// them at run time.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// Kubernetes is the Kubernetes release whose API orch serves. kubectl reads
// it from /version to pick a compatible client, so it must be a real release.
const Kubernetes = "v1.33.1"

var (
	// Version is orch's own release, "v0.0.0-dev" for unreleased builds.
	Version = "v0.0.0-dev"
	// GitCommit is the commit the binary was built from; empty falls back
	// to the VCS stamp the go command embeds, if any.
	GitCommit = ""
)

// Info describes a build.
type Info struct {
	Version    string // orch's release
	GitCommit  string // "unknown" when neither -X nor the VCS stamp gave one
	GoVersion  string
	Platform   string // GOOS/GOARCH
	Kubernetes string // the Kubernetes API version served
}

// Get returns the description of the running binary.
func Get() Info {
	return Info{
		Version:    Version,
		GitCommit:  commit(),
		GoVersion:  runtime.Version(),
		Platform:   runtime.GOOS + "/" + runtime.GOARCH,
		Kubernetes: Kubernetes,
	}
}

// String renders the Info the way `orch version` prints it.
func (i Info) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "orch version %s\n", i.Version)
	fmt.Fprintf(&b, "git commit: %s\n", i.GitCommit)
	fmt.Fprintf(&b, "go version: %s %s\n", i.GoVersion, i.Platform)
	fmt.Fprintf(&b, "kubernetes api: %s\n", i.Kubernetes)
	return b.String()
}

func commit() string {
	if GitCommit != "" {
		return GitCommit
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if rev == "" {
		return "unknown"
	}
	return rev + dirty
}
