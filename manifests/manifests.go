// Package manifests holds the Kubernetes objects every orch cluster starts
// with, as YAML files embedded in the binary. The server's deployer
// (server/deploy) copies them to DATA/server/manifests and applies them
// like the user's own manifests there; `--disable NAME` skips NAME.yaml.
//
// Files here are data only: one file per component a user may want to
// switch off, named for that component (k3s' names where k3s has one).
package manifests

import (
	"embed"
	"io/fs"
)

//go:embed *.yaml
var files embed.FS

// FS returns the built-in manifests, *.yaml at its root.
func FS() fs.FS { return files }
