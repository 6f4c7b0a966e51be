package apiserver

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/orch-dev/orch/server/registry"
	"github.com/orch-dev/orch/store"
)

// Config is everything the API server needs; the server package builds it.
type Config struct {
	Store store.Store
	Table *registry.Table

	// Authenticate identifies the caller of a request. It returns ok=false
	// for an unauthenticated request (answered 401). Nil allows everyone
	// (tests only).
	Authenticate func(r *http.Request) (user UserInfo, ok bool)
	// Authorize decides what an authenticated caller may do (see
	// authorization.go); anything but DecisionAllow is answered 403. Nil
	// allows every authenticated request.
	Authorize Authorizer

	// PostStart hooks run in order once the bootstrap objects exist and
	// before Ready closes, like kube-apiserver's post-start hooks that gate
	// /readyz (the RBAC bootstrap policy). An error stops Run.
	PostStart []func(ctx context.Context, api *Local) error

	// Limits, each answered with a clear Status error when exceeded.
	MaxRequestBodyBytes int64         // default 3 MiB, as Kubernetes
	RequestTimeout      time.Duration // non-watch requests; default 60 s
	MaxWatches          int           // concurrent watches; default 1000

	// KubernetesService describes the `kubernetes` Service in the default
	// namespace that bootstrap creates. Nil skips it (tests).
	KubernetesService *KubernetesService

	// NodeTransport reaches a node's agent for pods/log; an error (the
	// node is not connected) is answered 503. Nil: no node is reachable.
	NodeTransport func(nodeName string) (http.RoundTripper, error)

	Logger *slog.Logger

	// GitVersion reported by /version, e.g. "v1.33.1+orch".
	GitVersion string
	GitCommit  string
}

// UserInfo is an authenticated caller.
type UserInfo struct {
	Name   string
	UID    string
	Groups []string
	// Extra carries what the authenticator knows beyond name and groups
	// (a service account token's pod name and uid, credential id), as
	// Kubernetes' user.Info does.
	Extra map[string][]string
}

type userKey struct{}

// WithUser returns ctx carrying the authenticated caller u.
func WithUser(ctx context.Context, u UserInfo) context.Context {
	return context.WithValue(ctx, userKey{}, u)
}

// UserFrom returns the caller the request context carries (set by the
// handler after authentication), or ok=false for in-process callers.
func UserFrom(ctx context.Context) (UserInfo, bool) {
	u, ok := ctx.Value(userKey{}).(UserInfo)
	return u, ok
}

// KubernetesService is the in-cluster address of the API server.
type KubernetesService struct {
	ClusterIP  string // first address of the service CIDR, e.g. 10.43.0.1
	EndpointIP string // address the API server is reached at
	Port       int32  // its HTTPS port, e.g. 6443
}
