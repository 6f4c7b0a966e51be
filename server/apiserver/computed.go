package apiserver

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	apidiscoveryv2 "k8s.io/api/apidiscovery/v2"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/yaml"

	"github.com/orch-dev/orch/server/registry"
)

// ComputedResource is a read-only resource whose objects are computed on
// request rather than stored, such as metrics.k8s.io's NodeMetrics and
// PodMetrics (which metrics-server serves in Kubernetes). It answers get
// and list (label selectors, metadata.name/namespace field selectors, all
// namespaces), is listed in discovery, and is kept out of the resource
// table so that controllers walking the table never see it.
type ComputedResource struct {
	GroupVersion schema.GroupVersion
	Name         string // plural, e.g. "pods"
	SingularName string
	Kind         string // the list kind is Kind+"List"
	Namespaced   bool

	// Get returns the named object with its apiVersion and kind set, or an
	// API status error (NotFound).
	Get func(ctx context.Context, namespace, name string) (runtime.Object, error)
	// List returns a list object (with an Items slice) of the objects in
	// namespace, "" meaning all; the API server applies the selectors.
	List func(ctx context.Context, namespace string) (runtime.Object, error)

	// Columns and Row give `kubectl get` its table, as registry.Resource's
	// do; nil means Name and Age.
	Columns []metav1.TableColumnDefinition
	Row     func(obj runtime.Object) []interface{}
}

// computedVerbs are the verbs of a ComputedResource, as metrics-server's.
var computedVerbs = metav1.Verbs{"get", "list"}

// AddComputed serves resources beside the table. Call it before the
// Handler serves its first request: discovery is built once, on first use.
func (s *Server) AddComputed(resources ...ComputedResource) error {
	for _, c := range resources {
		if c.Get == nil || c.List == nil || c.Name == "" || c.Kind == "" {
			return fmt.Errorf("apiserver: computed resource %s needs a name, kind, Get and List", c.GroupVersion.WithResource(c.Name))
		}
		gvr := c.GroupVersion.WithResource(c.Name)
		if s.table.Lookup(c.GroupVersion, c.Name) != nil || s.computedResource(c.GroupVersion, c.Name) != nil {
			return fmt.Errorf("apiserver: resource %s is already served", gvr)
		}
		s.computed = append(s.computed, c)
	}
	return nil
}

func (s *Server) computedResource(gv schema.GroupVersion, name string) *ComputedResource {
	for i := range s.computed {
		if s.computed[i].GroupVersion == gv && s.computed[i].Name == name {
			return &s.computed[i]
		}
	}
	return nil
}

func (s *Server) serveComputed(w http.ResponseWriter, r *http.Request, c *ComputedResource, ri requestInfo) {
	gr := c.GroupVersion.WithResource(c.Name).GroupResource()
	if ri.Subresource != "" || (ri.Namespace != "" && !c.Namespaced) {
		s.writeError(w, r, errNotFoundGeneric)
		return
	}
	switch ri.Verb {
	case "get":
		obj, err := c.Get(r.Context(), ri.Namespace, ri.Name)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		s.writeComputed(w, r, c, obj)
	case "list":
		q := r.URL.Query()
		ls, err := labels.Parse(q.Get("labelSelector"))
		if err != nil {
			s.writeError(w, r, apierrors.NewBadRequest(fmt.Sprintf("unable to parse requirement: %v", err)))
			return
		}
		fs, err := fields.ParseSelector(q.Get("fieldSelector"))
		if err != nil {
			s.writeError(w, r, apierrors.NewBadRequest(fmt.Sprintf("invalid field selector: %v", err)))
			return
		}
		for _, req := range fs.Requirements() {
			if req.Field != "metadata.name" && req.Field != "metadata.namespace" {
				s.writeError(w, r, apierrors.NewBadRequest(fmt.Sprintf("field label not supported: %s", req.Field)))
				return
			}
		}
		list, err := c.List(r.Context(), ri.Namespace)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		if err := filterList(list, ls, fs); err != nil {
			s.writeError(w, r, apierrors.NewInternalError(err))
			return
		}
		s.writeComputed(w, r, c, list)
	default:
		s.writeError(w, r, apierrors.NewMethodNotSupported(gr, ri.Verb))
	}
}

// filterList keeps the items of list that match both selectors.
func filterList(list runtime.Object, ls labels.Selector, fs fields.Selector) error {
	if ls.Empty() && fs.Empty() {
		return nil
	}
	items, err := meta.ExtractList(list)
	if err != nil {
		return err
	}
	kept := items[:0]
	for _, item := range items {
		m, err := meta.Accessor(item)
		if err != nil {
			return err
		}
		if ls.Matches(labels.Set(m.GetLabels())) &&
			fs.Matches(fields.Set{"metadata.name": m.GetName(), "metadata.namespace": m.GetNamespace()}) {
			kept = append(kept, item)
		}
	}
	return meta.SetList(list, kept)
}

// writeComputed answers with obj in JSON, as a Table when asked, or YAML
// when asked first: the computed kinds are not in the scheme, so they have
// no protobuf form, and clients asking for protobuf read the JSON by its
// Content-Type, as they do from aggregated API servers without protobuf.
func (s *Server) writeComputed(w http.ResponseWriter, r *http.Request, c *ComputedResource, obj runtime.Object) {
	mt, _ := negotiate(r)
	if mt.As == "Table" {
		objs := []runtime.Object{obj}
		if meta.IsListType(obj) {
			var err error
			if objs, err = meta.ExtractList(obj); err != nil {
				s.writeError(w, r, apierrors.NewInternalError(err))
				return
			}
		}
		table, err := s.toTable(r, &registry.Resource{Columns: c.Columns, Row: c.Row}, objs)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		data, err := json.Marshal(table)
		if err != nil {
			s.writeError(w, r, apierrors.NewInternalError(err))
			return
		}
		writeRaw(w, http.StatusOK, mt.contentType(), data)
		return
	}
	data, err := json.Marshal(obj)
	if err != nil {
		s.writeError(w, r, apierrors.NewInternalError(fmt.Errorf("encode %T: %w", obj, err)))
		return
	}
	if mt.Type == mediaYAML && mt.As == "" {
		if y, err := yaml.JSONToYAML(data); err == nil {
			writeRaw(w, http.StatusOK, mediaYAML, y)
			return
		}
	}
	writeRaw(w, http.StatusOK, mediaJSON, data)
}

// computedDiscovery is what discovery says about a computed resource, in
// the classic and the aggregated form.
func computedDiscovery(c ComputedResource) (metav1.APIResource, apidiscoveryv2.APIResourceDiscovery) {
	scope := apidiscoveryv2.ScopeCluster
	if c.Namespaced {
		scope = apidiscoveryv2.ScopeNamespace
	}
	kind := metav1.GroupVersionKind{Group: c.GroupVersion.Group, Version: c.GroupVersion.Version, Kind: c.Kind}
	return metav1.APIResource{Name: c.Name, SingularName: c.SingularName, Namespaced: c.Namespaced, Kind: c.Kind, Verbs: computedVerbs},
		apidiscoveryv2.APIResourceDiscovery{Resource: c.Name, ResponseKind: &kind, Scope: scope, SingularResource: c.SingularName, Verbs: computedVerbs}
}
