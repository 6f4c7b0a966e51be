package apiserver

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Authorization: every authenticated request is described by Attributes
// (what k8s.io/apiserver's authorizer.Attributes carries, computed as its
// RequestInfoFactory does) and handed to Config.Authorize before it is
// served. A request the authorizer does not allow gets the Forbidden Status
// kube-apiserver sends. Impersonation (kubectl --as, --as-group) is
// resolved here too, since it is authorized like any other verb.

// Decision is an authorizer's verdict on a request.
type Decision int

const (
	// DecisionNoOpinion leaves the request to the next authorizer; the last
	// one's NoOpinion denies it.
	DecisionNoOpinion Decision = iota
	// DecisionAllow allows the request.
	DecisionAllow
	// DecisionDeny denies it, whatever later authorizers would say.
	DecisionDeny
)

func (d Decision) String() string {
	switch d {
	case DecisionAllow:
		return "Allow"
	case DecisionDeny:
		return "Deny"
	}
	return "NoOpinion"
}

// Attributes describe one request for authorization.
type Attributes struct {
	User UserInfo
	// Verb is the Kubernetes verb of a resource request (get list watch
	// create update patch delete deletecollection, impersonate) or the
	// lower-case HTTP method of a non-resource request (get, post, ...).
	Verb string

	// ResourceRequest tells resource requests (the fields below) from
	// non-resource ones (Path).
	ResourceRequest bool
	APIGroup        string
	APIVersion      string
	Namespace       string
	Resource        string
	Subresource     string
	Name            string
	// FieldSelector holds the requirements of a list or watch's
	// fieldSelector (nil without one): the node authorizer lets a node
	// list only the pods bound to it.
	FieldSelector fields.Requirements

	// Path of a non-resource request, e.g. "/api" or "/version".
	Path string
}

// Authorizer decides whether a request is allowed; reason says why (it is
// appended to the Forbidden message). An error counts as a denial.
type Authorizer func(ctx context.Context, a Attributes) (decision Decision, reason string, err error)

// Well-known names the authorization step relies on (server/auth and
// server/serviceaccount define them too, but import this package).
const (
	authenticatedGroup   = "system:authenticated"
	serviceAccountPrefix = "system:serviceaccount:"
	serviceAccountsGroup = "system:serviceaccounts"

	// Impersonation headers, as kubectl --as, --as-group and --as-uid send.
	headerImpersonateUser        = "Impersonate-User"
	headerImpersonateGroup       = "Impersonate-Group"
	headerImpersonateUID         = "Impersonate-Uid"
	headerImpersonateExtraPrefix = "Impersonate-Extra-"
)

// authenticate identifies the caller of r (401 when unknown), resolves
// impersonation and authorizes the request. It returns r carrying the
// effective user, or ok=false when it has answered r itself.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) (*http.Request, bool) {
	if s.cfg.Authenticate == nil {
		return r, true
	}
	u, ok := s.cfg.Authenticate(r)
	if !ok {
		s.writeError(w, r, apierrors.NewUnauthorized("Unauthorized"))
		return r, false
	}
	if s.cfg.Authorize == nil {
		return r.WithContext(WithUser(r.Context(), u)), true
	}
	u, err := s.impersonate(r, u)
	if err != nil {
		s.writeError(w, r, err)
		return r, false
	}
	r = r.WithContext(WithUser(r.Context(), u))
	a := requestAttributes(r, u)
	if err := s.authorize(r.Context(), a); err != nil {
		s.writeError(w, r, err)
		return r, false
	}
	if streamingUpgrade(a) {
		// WebSocket clients open exec, attach and port-forward with a GET;
		// since 1.31 Kubernetes also asks for create, the verb of the
		// POST that SPDY clients send (AuthorizePodWebsocketUpgradeCreatePermission).
		a.Verb = "create"
		if err := s.authorize(r.Context(), a); err != nil {
			s.writeError(w, r, err)
			return r, false
		}
	}
	return r, true
}

// streamingUpgrade reports a GET of a pod's exec, attach or portforward
// subresource.
func streamingUpgrade(a Attributes) bool {
	if !a.ResourceRequest || a.Verb != "get" || a.APIGroup != "" || a.Resource != "pods" {
		return false
	}
	switch a.Subresource {
	case "exec", "attach", "portforward":
		return true
	}
	return false
}

// authorize asks Config.Authorize about a and returns the Forbidden error
// to send when it does not allow it.
func (s *Server) authorize(ctx context.Context, a Attributes) error {
	decision, reason, err := s.cfg.Authorize(ctx, a)
	if decision == DecisionAllow {
		return nil
	}
	if err != nil {
		s.log.Warn("authorization failed", "user", a.User.Name, "verb", a.Verb, "resource", a.Resource, "path", a.Path, "err", err)
		if reason == "" {
			reason = err.Error()
		}
	}
	return Forbidden(a, reason)
}

// Forbidden is the error kube-apiserver answers a denied request with, e.g.
// `pods is forbidden: User "x" cannot list resource "pods" in API group ""
// in the namespace "default"`, followed by the authorizer's reason.
func Forbidden(a Attributes, reason string) error {
	msg := ForbiddenMessage(a)
	if reason != "" {
		msg += ": " + reason
	}
	return apierrors.NewForbidden(schema.GroupResource{Group: a.APIGroup, Resource: a.Resource}, a.Name, fmt.Errorf("%s", msg))
}

// ForbiddenMessage says who may not do what (upstream's forbiddenMessage).
func ForbiddenMessage(a Attributes) string {
	if !a.ResourceRequest {
		return fmt.Sprintf("User %q cannot %s path %q", a.User.Name, a.Verb, a.Path)
	}
	resource := a.Resource
	if a.Subresource != "" {
		resource += "/" + a.Subresource
	}
	if a.Namespace != "" {
		return fmt.Sprintf("User %q cannot %s resource %q in API group %q in the namespace %q", a.User.Name, a.Verb, resource, a.APIGroup, a.Namespace)
	}
	return fmt.Sprintf("User %q cannot %s resource %q in API group %q at the cluster scope", a.User.Name, a.Verb, resource, a.APIGroup)
}

// requestAttributes describes r for authorization.
func requestAttributes(r *http.Request, u UserInfo) Attributes {
	ri, ok := parseRequestInfo(r)
	if !ok {
		// A resource path with more segments than a resource request has
		// (pods/NAME/proxy/PATH) is still a request on that subresource,
		// as upstream parses it, never a non-resource path that
		// system:discovery's "/api/*" would grant.
		if p, deeper := resourcePathPrefix(r.URL.Path); deeper {
			short := r.Clone(r.Context())
			short.URL.Path = p
			ri, ok = parseRequestInfo(short)
		}
	}
	if !ok || ri.Resource == "" {
		return Attributes{User: u, Verb: strings.ToLower(r.Method), Path: r.URL.Path}
	}
	a := Attributes{
		User: u, Verb: ri.Verb, ResourceRequest: true,
		APIGroup: ri.GroupVersion.Group, APIVersion: ri.GroupVersion.Version,
		Namespace: ri.Namespace, Resource: ri.Resource, Subresource: ri.Subresource, Name: ri.Name,
	}
	if a.Resource == "namespaces" && a.Name != "" {
		// A namespace is authorized inside itself, as upstream's request
		// info has it: a RoleBinding granting get on namespaces lets its
		// subjects read their own namespace.
		a.Namespace = a.Name
	}
	if a.Verb == "list" || a.Verb == "watch" || a.Verb == "deletecollection" {
		if fs := r.URL.Query().Get("fieldSelector"); fs != "" {
			if sel, err := fields.ParseSelector(fs); err == nil {
				a.FieldSelector = sel.Requirements()
				// A list or watch of one name is authorized as that name, as
				// upstream does (kubectl get pod x -w, informers of one object).
				if name, ok := sel.RequiresExactMatch("metadata.name"); ok && a.Verb != "deletecollection" && a.Name == "" {
					a.Name = name
				}
			}
		}
	}
	return a
}

// resourcePathPrefix cuts a path under /api/V or /apis/G/V after its
// subresource segment; deeper reports whether there was more.
func resourcePathPrefix(path string) (prefix string, deeper bool) {
	parts := splitPath(path)
	base := 0
	switch {
	case len(parts) > 2 && parts[0] == "api":
		base = 2
	case len(parts) > 3 && parts[0] == "apis":
		base = 3
	default:
		return path, false
	}
	if parts[base] == "watch" {
		base++
	}
	if len(parts) > base+2 && parts[base] == "namespaces" && !namespaceSubresources[parts[base+2]] {
		base += 2
	}
	keep := base + 3 // resource, name, subresource
	if len(parts) <= keep {
		return path, false
	}
	return "/" + strings.Join(parts[:keep], "/"), true
}

// impersonate returns the user r acts as: u itself, or the user named by
// the Impersonate-* headers once u may impersonate it and each group.
func (s *Server) impersonate(r *http.Request, u UserInfo) (UserInfo, error) {
	name := r.Header.Get(headerImpersonateUser)
	groups := r.Header.Values(headerImpersonateGroup)
	hasExtra := false
	for h := range r.Header {
		if strings.HasPrefix(h, headerImpersonateExtraPrefix) {
			hasExtra = true
		}
	}
	uid := r.Header.Get(headerImpersonateUID)
	if name == "" {
		if len(groups) > 0 || hasExtra || uid != "" {
			return u, apierrors.NewBadRequest("requested impersonation of groups, extra or uid without impersonating a user")
		}
		return u, nil
	}
	if hasExtra || uid != "" {
		// orch users carry no extra or uid to impersonate.
		return u, apierrors.NewBadRequest("impersonation of extra user fields and uids is not supported")
	}
	checks := []Attributes{{User: u, Verb: "impersonate", ResourceRequest: true, Resource: "users", Name: name}}
	if rest, ok := strings.CutPrefix(name, serviceAccountPrefix); ok {
		ns, sa, found := strings.Cut(rest, ":")
		if !found || ns == "" || sa == "" || strings.Contains(sa, ":") {
			return u, apierrors.NewBadRequest(fmt.Sprintf("invalid service account username %q", name))
		}
		checks[0].Resource, checks[0].Namespace, checks[0].Name = "serviceaccounts", ns, sa
	}
	for _, g := range groups {
		checks = append(checks, Attributes{User: u, Verb: "impersonate", ResourceRequest: true, Resource: "groups", Name: g})
	}
	if checks[0].Resource == "serviceaccounts" && len(groups) == 0 {
		// A service account comes with its groups, as its token would.
		groups = []string{serviceAccountsGroup, serviceAccountsGroup + ":" + checks[0].Namespace}
	}
	for _, a := range checks {
		if err := s.authorize(r.Context(), a); err != nil {
			return u, err
		}
	}
	out := UserInfo{Name: name, Groups: slices.Clone(groups)}
	if !slices.Contains(out.Groups, authenticatedGroup) {
		out.Groups = append(out.Groups, authenticatedGroup)
	}
	return out, nil
}

// Authorized wraps h, a non-resource endpoint served beside the API (the
// server's /metrics), in the API's authentication and authorization.
func (s *Server) Authorized(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r, ok := s.authenticate(w, r)
		if !ok {
			return
		}
		h.ServeHTTP(w, r)
	})
}
