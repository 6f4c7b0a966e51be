//go:build orchhelper

package container

import _ "embed"

// helperGz is runtime/helper built for arm64 and gzipped (make build-arm64).
//
//go:embed helperbin/orch-helper-arm64.gz
var helperGz []byte
