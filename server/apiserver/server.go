// Package apiserver serves the Kubernetes REST wire protocol over the
// resource table (server/registry) and the store. One generic handler
// serves every resource; kinds differ only by their registry entries.
//
// It owns request decoding, defaulting, validation, watch streams, patches,
// tables and the bootstrap objects. It does not own TLS, certificates or
// listeners (server/pki and the server package do).
//
// Reads go to the store directly: bbolt reads are memory-mapped and cheap,
// the store's in-memory history serves old revisions and watches, and
// stored JSON is served without decoding (the resourceVersion is spliced
// in), so there is no second copy of every object in memory.
package apiserver

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/orch-dev/orch/server/registry"
	"github.com/orch-dev/orch/store"
)

// fieldManager records managed fields and applies patches (implemented by
// server/apiserver/patch).
type fieldManager interface {
	Update(gvk schema.GroupVersionKind, live, obj runtime.Object, manager, subresource string) (runtime.Object, error)
	Apply(gvk schema.GroupVersionKind, live runtime.Object, patch []byte, manager string, force bool, subresource string) (runtime.Object, error)
	Patch(live runtime.Object, pt types.PatchType, patch []byte, fv fieldValidation) (runtime.Object, []string, error)
}

// Server is the API server. Build it with New, start it with Run, serve
// Handler once Ready is closed.
type Server struct {
	cfg    Config
	log    *slog.Logger
	store  store.Store
	table  *registry.Table
	scheme *runtime.Scheme
	codecs *codecs
	fields fieldManager

	watchSlots chan struct{}
	ready      chan struct{}
	stopping   chan struct{}
	mux        *http.ServeMux
	computed   []ComputedResource // see AddComputed
}

// New checks cfg and builds a Server; it starts nothing.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil || cfg.Table == nil {
		return nil, errors.New("apiserver: Store and Table are required")
	}
	if cfg.MaxRequestBodyBytes <= 0 {
		cfg.MaxRequestBodyBytes = 3 << 20
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 60 * time.Second
	}
	if cfg.MaxWatches <= 0 {
		cfg.MaxWatches = 1000
	}
	if cfg.GitVersion == "" {
		cfg.GitVersion = "v1.33.1+orch"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{
		cfg:        cfg,
		log:        cfg.Logger,
		store:      cfg.Store,
		table:      cfg.Table,
		scheme:     cfg.Table.Scheme,
		codecs:     newCodecs(cfg.Table.Scheme),
		watchSlots: make(chan struct{}, cfg.MaxWatches),
		ready:      make(chan struct{}),
		stopping:   make(chan struct{}),
		mux:        http.NewServeMux(),
	}
	s.fields = newFieldManager(cfg.Table)
	if err := s.buildRoutes(); err != nil {
		return nil, err
	}
	return s, nil
}

// Run creates the bootstrap objects (namespaces, the kubernetes Service),
// closes Ready and serves until ctx is done; then it ends open watches.
func (s *Server) Run(ctx context.Context) error {
	if err := s.bootstrap(ctx); err != nil {
		return err
	}
	for _, hook := range s.cfg.PostStart {
		if err := hook(ctx, s.Local()); err != nil {
			return err
		}
	}
	close(s.ready)
	<-ctx.Done()
	close(s.stopping)
	return nil
}

// Ready is closed once the server can answer requests consistently.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Handler serves the API. Authentication is done inside (Config.Authenticate).
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

func (s *Server) buildRoutes() error {
	s.mux.HandleFunc("/healthz", s.serveHealth)
	s.mux.HandleFunc("/livez", s.serveHealth)
	s.mux.HandleFunc("/readyz", s.serveHealth)
	return s.mountExtras()
}

// publicPaths are served without authentication, as Kubernetes'
// system:public-info-viewer role allows.
func isPublicPath(p string) bool {
	switch p {
	case "/healthz", "/livez", "/readyz", "/version":
		return true
	}
	return strings.HasPrefix(p, "/healthz/") || strings.HasPrefix(p, "/livez/") || strings.HasPrefix(p, "/readyz/")
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if !isPublicPath(r.URL.Path) {
		var ok bool
		if r, ok = s.authenticate(w, r); !ok {
			return
		}
	}
	if ri, ok := parseRequestInfo(r); ok && ri.Resource != "" {
		s.serveResource(w, r, ri)
		return
	}
	s.mux.ServeHTTP(w, r)
}

func (s *Server) serveHealth(w http.ResponseWriter, r *http.Request) {
	select {
	case <-s.ready:
		writeRaw(w, http.StatusOK, "text/plain; charset=utf-8", []byte("ok"))
	default:
		writeRaw(w, http.StatusServiceUnavailable, "text/plain; charset=utf-8", []byte("[-]bootstrap not finished\nreadyz check failed"))
	}
}

var errNotFoundGeneric = apierrors.NewGenericServerResponse(http.StatusNotFound, "", schema.GroupResource{}, "", "the server could not find the requested resource", 0, false)

func (s *Server) serveResource(w http.ResponseWriter, r *http.Request, ri requestInfo) {
	res := s.table.Lookup(ri.GroupVersion, ri.Resource)
	if c := s.computedResource(ri.GroupVersion, ri.Resource); res == nil && c != nil {
		s.serveComputed(w, r, c, ri)
		return
	}
	if res == nil || (ri.Namespace != "" && !res.Namespaced) {
		s.writeError(w, r, errNotFoundGeneric)
		return
	}
	select {
	case <-s.ready:
	default:
		s.writeError(w, r, apierrors.NewServiceUnavailable("the server is starting up"))
		return
	}
	if res.Ephemeral != nil {
		s.serveEphemeral(w, r, res, ri)
		return
	}
	if ri.Subresource != "" {
		s.serveSubresource(w, r, res, ri)
		return
	}
	switch ri.Verb {
	case "get":
		s.get(w, r, res, ri.Namespace, ri.Name)
	case "list":
		s.list(w, r, res, ri.Namespace)
	case "watch":
		if ri.Name != "" {
			// Legacy /watch/.../name: a watch of one object.
			q := r.URL.Query()
			q.Set("fieldSelector", joinSelector(q.Get("fieldSelector"), "metadata.name="+ri.Name))
			r.URL.RawQuery = q.Encode()
		}
		s.watch(w, r, res, ri.Namespace)
	case "create":
		if ri.Name != "" {
			s.writeError(w, r, apierrors.NewMethodNotSupported(res.GroupVersionResource().GroupResource(), "create"))
			return
		}
		s.create(w, r, res, ri.Namespace)
	case "update":
		s.requireName(w, r, res, ri, s.update)
	case "patch":
		s.requireName(w, r, res, ri, s.patch)
	case "delete":
		s.delete(w, r, res, ri.Namespace, ri.Name)
	case "deletecollection":
		s.deleteCollection(w, r, res, ri.Namespace)
	default:
		s.writeError(w, r, apierrors.NewMethodNotSupported(res.GroupVersionResource().GroupResource(), ri.Verb))
	}
}

func (s *Server) requireName(w http.ResponseWriter, r *http.Request, res *registry.Resource, ri requestInfo,
	h func(http.ResponseWriter, *http.Request, *registry.Resource, string, string, string)) {
	if ri.Name == "" {
		s.writeError(w, r, apierrors.NewMethodNotSupported(res.GroupVersionResource().GroupResource(), ri.Verb))
		return
	}
	h(w, r, res, ri.Namespace, ri.Name, ri.Subresource)
}

func joinSelector(a, b string) string {
	if a == "" {
		return b
	}
	return a + "," + b
}

func fieldErrors(path, value, msg string) field.ErrorList {
	return field.ErrorList{field.Forbidden(field.NewPath(path), msg)}
}
