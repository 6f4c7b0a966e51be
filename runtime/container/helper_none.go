//go:build !orchhelper || !(amd64 || arm64)

package container

// helperGz is empty without the orchhelper build tag (go build, go test):
// shims then run Config.Exe, the whole orch binary.
var helperGz []byte
