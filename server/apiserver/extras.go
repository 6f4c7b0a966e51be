package apiserver

import (
	"encoding/json"
	"net/http"
	"runtime"
	"strings"

	"k8s.io/apimachinery/pkg/version"
)

// versionInfo is what /version reports: the Kubernetes version whose API
// orch serves, so kubectl picks a matching client.
func (s *Server) versionInfo() version.Info {
	v := strings.TrimPrefix(s.cfg.GitVersion, "v")
	major, minor := "1", "33"
	if parts := strings.SplitN(v, ".", 3); len(parts) >= 2 {
		major, minor = parts[0], parts[1]
	}
	return version.Info{
		Major: major, Minor: minor, GitVersion: s.cfg.GitVersion, GitCommit: s.cfg.GitCommit,
		GitTreeState: "clean", GoVersion: runtime.Version(), Compiler: runtime.Compiler,
		Platform: runtime.GOOS + "/" + runtime.GOARCH,
	}
}

// mountExtras mounts the non-resource endpoints: version, discovery, OpenAPI.
func (s *Server) mountExtras() error {
	vi, _ := json.Marshal(s.versionInfo())
	s.mux.HandleFunc("/version", func(w http.ResponseWriter, r *http.Request) {
		writeRaw(w, http.StatusOK, mediaJSON, vi)
	})
	s.mountDiscovery()
	s.mountOpenAPI()
	return nil
}
