package apiserver

import (
	"net/http"
	"strings"

	"k8s.io/apimachinery/pkg/runtime/schema"
)

// requestInfo is what a resource URL says, parsed as Kubernetes'
// RequestInfoFactory does.
type requestInfo struct {
	Verb         string // get list watch create update patch delete deletecollection
	GroupVersion schema.GroupVersion
	Namespace    string
	Resource     string
	Name         string
	Subresource  string
}

// namespaceSubresources are the subresources of the namespaces resource
// itself, as opposed to resources inside a namespace.
var namespaceSubresources = map[string]bool{"status": true, "finalize": true}

// parseRequestInfo parses /api/v1/... and /apis/G/V/... paths. ok is false
// for paths that are not resource requests.
func parseRequestInfo(r *http.Request) (ri requestInfo, ok bool) {
	parts := splitPath(r.URL.Path)
	switch {
	case len(parts) >= 3 && parts[0] == "api":
		ri.GroupVersion = schema.GroupVersion{Version: parts[1]}
		parts = parts[2:]
	case len(parts) >= 4 && parts[0] == "apis":
		ri.GroupVersion = schema.GroupVersion{Group: parts[1], Version: parts[2]}
		parts = parts[3:]
	default:
		return ri, false
	}

	watchPrefix := false
	if parts[0] == "watch" {
		watchPrefix = true
		parts = parts[1:]
		if len(parts) == 0 {
			return ri, false
		}
	}
	if parts[0] == "namespaces" && len(parts) > 1 {
		ri.Namespace = parts[1]
		if len(parts) > 2 && !namespaceSubresources[parts[2]] {
			parts = parts[2:]
		}
	}
	ri.Resource = parts[0]
	if len(parts) > 1 {
		ri.Name = parts[1]
	}
	if len(parts) > 2 {
		ri.Subresource = parts[2]
	}
	if len(parts) > 3 {
		return ri, false
	}
	if ri.Resource == "namespaces" {
		// The namespaces resource is cluster-scoped: /api/v1/namespaces/foo
		// names the namespace foo.
		ri.Namespace = ""
	}

	switch r.Method {
	case http.MethodGet, http.MethodHead:
		switch {
		case watchPrefix:
			ri.Verb = "watch"
		case ri.Name != "":
			ri.Verb = "get"
		case isTrue(r.URL.Query().Get("watch")):
			ri.Verb = "watch"
		default:
			ri.Verb = "list"
		}
	case http.MethodPost:
		ri.Verb = "create"
	case http.MethodPut:
		ri.Verb = "update"
	case http.MethodPatch:
		ri.Verb = "patch"
	case http.MethodDelete:
		if ri.Name == "" {
			ri.Verb = "deletecollection"
		} else {
			ri.Verb = "delete"
		}
	default:
		return ri, false
	}
	return ri, true
}

func splitPath(p string) []string {
	p = strings.Trim(p, "/")
	if p == "" {
		return nil
	}
	return strings.Split(p, "/")
}

func isTrue(s string) bool { return s == "true" || s == "1" }
