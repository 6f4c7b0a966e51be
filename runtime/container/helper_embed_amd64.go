//go:build orchhelper

package container

import _ "embed"

// helperGz is runtime/helper built for amd64 and gzipped (make build).
//
//go:embed helperbin/orch-helper-amd64.gz
var helperGz []byte
