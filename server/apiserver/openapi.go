package apiserver

import (
	"net/http"
	"reflect"
	"strings"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/orch-dev/orch/server/apiserver/patch"
	"github.com/orch-dev/orch/server/openapi"
	"github.com/orch-dev/orch/server/registry"
)

// openAPIResources describes the table's resources for server/openapi.
func openAPIResources(t *registry.Table) []openapi.Resource {
	var out []openapi.Resource
	for _, res := range t.Resources() {
		r := openapi.Resource{
			GroupVersion: res.GroupVersion,
			Name:         res.Name,
			Kind:         res.Kind,
			Namespaced:   res.Namespaced,
			Object:       reflect.TypeOf(res.New()).Elem(),
			List:         reflect.TypeOf(res.NewList()).Elem(),
		}
		if res.HasSubresource("status") {
			r.Subresources = append(r.Subresources, openapi.Subresource{Name: "status", Type: r.Object, GVK: res.GroupVersionKind()})
		}
		if res.HasSubresource("scale") {
			r.Subresources = append(r.Subresources, openapi.Subresource{Name: "scale",
				Type: reflect.TypeOf(autoscalingv1.Scale{}), GVK: autoscalingv1.SchemeGroupVersion.WithKind("Scale")})
		}
		out = append(out, r)
	}
	return out
}

// fieldsAdapter adapts patch.Manager to the server's fieldManager (whose
// Patch takes the server's fieldValidation type).
type fieldsAdapter struct{ *patch.Manager }

func (a fieldsAdapter) Patch(live runtime.Object, pt types.PatchType, body []byte, fv fieldValidation) (runtime.Object, []string, error) {
	return a.Manager.Patch(live, pt, body, patch.FieldValidation(fv))
}

// newFieldManager returns the patch and managed-fields implementation for
// table, whose server-side apply schema comes from the OpenAPI definitions.
func newFieldManager(t *registry.Table) fieldManager {
	statusKinds := map[schema.GroupVersionKind]bool{}
	for _, res := range t.Resources() {
		if res.HasSubresource("status") {
			statusKinds[res.GroupVersionKind()] = true
		}
	}
	builder := openapi.NewBuilder(openAPIResources(t))
	return fieldsAdapter{patch.NewManager(patch.Options{
		Scheme:    t.Scheme,
		Models:    builder.Definitions,
		HasStatus: func(gvk schema.GroupVersionKind) bool { return statusKinds[gvk] },
	})}
}

// OpenAPI v2 protobuf media types. Clients ask for the "@" spelling,
// which is not a valid media type, so answers carry the other one (as
// Kubernetes' do).
const (
	mediaOpenAPIV2Proto          = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
	mediaOpenAPIV2ProtoRequested = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
)

// openAPIMediaType picks the first of JSON or (when allowed) the OpenAPI
// v2 protobuf type that the Accept header lists; "" if none.
func openAPIMediaType(r *http.Request, protobuf bool) string {
	accept := r.Header.Get("Accept")
	if accept == "" {
		return mediaJSON
	}
	for _, clause := range strings.Split(accept, ",") {
		typ, _, _ := strings.Cut(strings.TrimSpace(clause), ";")
		switch strings.TrimSpace(typ) {
		case mediaJSON, "*/*", "application/*":
			return mediaJSON
		case mediaOpenAPIV2Proto, mediaOpenAPIV2ProtoRequested:
			if protobuf {
				return mediaOpenAPIV2Proto
			}
		}
	}
	return ""
}

// mountOpenAPI serves /openapi/v2, /openapi/v3 and /openapi/v3/<gv>.
// Documents are built when asked for (kubectl caches them by hash).
func (s *Server) mountOpenAPI() {
	builder := openapi.NewBuilder(openAPIResources(s.table))
	notAcceptable := func(w http.ResponseWriter, r *http.Request) {
		writeRaw(w, http.StatusNotAcceptable, "text/plain; charset=utf-8",
			[]byte("OpenAPI documents are served as application/json (and v2 also as "+mediaOpenAPIV2Proto+")"))
	}
	s.mux.HandleFunc("/openapi/v2", func(w http.ResponseWriter, r *http.Request) {
		var data []byte
		var err error
		mt := openAPIMediaType(r, true)
		switch mt {
		case mediaJSON:
			data, err = builder.V2()
		case mediaOpenAPIV2Proto:
			data, err = builder.V2Proto()
		default:
			notAcceptable(w, r)
			return
		}
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		writeRaw(w, http.StatusOK, mt, data)
	})
	s.mux.HandleFunc("/openapi/v3", func(w http.ResponseWriter, r *http.Request) {
		data, err := builder.V3Index()
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		writeRaw(w, http.StatusOK, mediaJSON, data)
	})
	s.mux.HandleFunc("/openapi/v3/", func(w http.ResponseWriter, r *http.Request) {
		if openAPIMediaType(r, false) == "" {
			notAcceptable(w, r)
			return
		}
		data, hash, ok, err := builder.V3(strings.TrimPrefix(r.URL.Path, "/openapi/v3/"))
		switch {
		case err != nil:
			s.writeError(w, r, err)
			return
		case !ok:
			s.writeError(w, r, errNotFoundGeneric)
			return
		}
		w.Header().Set("Etag", `"`+hash+`"`)
		if r.URL.Query().Get("hash") == hash {
			// The URL names this exact content: clients may keep it.
			w.Header().Set("Content-Type", mediaJSON)
			w.Header().Set("Cache-Control", "public, immutable, max-age=31536000")
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(data)
			return
		}
		writeRaw(w, http.StatusOK, mediaJSON, data)
	})
}
