package openapi

import (
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/kube-openapi/pkg/validation/spec"
)

// Resource is one served REST resource, as the documents describe it.
type Resource struct {
	GroupVersion schema.GroupVersion
	Name         string // plural, e.g. "deployments"
	Kind         string
	Namespaced   bool
	Object       reflect.Type // struct type of Kind
	List         reflect.Type // struct type of the list kind
	// Subresources with a body: status (the object's own type) and scale
	// (autoscaling/v1 Scale). Others are not described.
	Subresources []Subresource
}

// Subresource is a subresource that reads and writes an object.
type Subresource struct {
	Name string
	Type reflect.Type
	GVK  schema.GroupVersionKind
}

// Builder builds and caches the documents of one set of resources. It is
// safe for concurrent use. Documents are built on demand and not kept
// (only their hashes are), so an idle server holds no OpenAPI in memory.
type Builder struct {
	resources []Resource

	mu     sync.Mutex
	hashes map[string]string // v3 group-version path → document hash
}

// NewBuilder returns a Builder for resources; it builds nothing yet.
func NewBuilder(resources []Resource) *Builder {
	return &Builder{resources: resources}
}

// metaKinds are the meta.k8s.io kinds every document's operations use.
func metaKinds() []Kind {
	v1 := schema.GroupVersion{Version: "v1"}
	meta := schema.GroupVersion{Group: "meta.k8s.io", Version: "v1"}
	return []Kind{
		{Type: reflect.TypeOf(metav1.Status{}), GVKs: []schema.GroupVersionKind{v1.WithKind("Status")}},
		{Type: reflect.TypeOf(metav1.DeleteOptions{}), GVKs: []schema.GroupVersionKind{v1.WithKind("DeleteOptions"), meta.WithKind("DeleteOptions")}},
		{Type: reflect.TypeOf(metav1.WatchEvent{}), GVKs: []schema.GroupVersionKind{v1.WithKind("WatchEvent"), meta.WithKind("WatchEvent")}},
		{Type: reflect.TypeOf(metav1.Patch{})},
	}
}

// kinds lists every Go type with the GVKs it is served as.
func (b *Builder) kinds() []Kind {
	kinds := metaKinds()
	for _, r := range b.resources {
		kinds = append(kinds, Kind{Type: r.Object, GVKs: []schema.GroupVersionKind{r.GroupVersion.WithKind(r.Kind)}})
		if r.List != nil {
			kinds = append(kinds, Kind{Type: r.List, GVKs: []schema.GroupVersionKind{r.GroupVersion.WithKind(r.List.Name())}})
		}
		for _, sub := range r.Subresources {
			if sub.Type != r.Object {
				kinds = append(kinds, Kind{Type: sub.Type, GVKs: []schema.GroupVersionKind{sub.GVK}})
			}
		}
	}
	return kinds
}

// Definitions returns the Swagger 2.0 definitions of every served kind
// and what they reference, keyed by definition name. It is what
// managedfields.NewTypeConverter takes. Each call builds a fresh map.
func (b *Builder) Definitions() map[string]*spec.Schema {
	kinds := b.kinds()
	g := newGenerator(refPrefixV2, kinds)
	for _, k := range kinds {
		g.ref(k.Type)
	}
	return g.defs
}

// GroupVersionPath is the OpenAPI v3 path of a group version: "api/v1" or
// "apis/apps/v1".
func GroupVersionPath(gv schema.GroupVersion) string {
	if gv.Group == "" {
		return "api/" + gv.Version
	}
	return "apis/" + gv.Group + "/" + gv.Version
}

// V2 returns the Swagger 2.0 document of the whole API as JSON.
func (b *Builder) V2() ([]byte, error) {
	kinds := b.kinds()
	g := newGenerator(refPrefixV2, kinds)
	for _, k := range kinds {
		g.ref(k.Type)
	}
	paths := map[string]interface{}{}
	for _, r := range b.resources {
		addPaths(paths, g, r)
	}
	doc := map[string]interface{}{
		"swagger":     "2.0",
		"info":        map[string]string{"title": "Kubernetes", "version": "v1.33.1+orch"},
		"paths":       paths,
		"definitions": g.defs,
	}
	data, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("encode openapi v2: %w", err)
	}
	return data, nil
}

// V2Proto returns the Swagger 2.0 document in the gnostic protobuf form
// client-go's OpenAPISchema asks for (see v2proto.go).
func (b *Builder) V2Proto() ([]byte, error) {
	data, err := b.V2()
	if err != nil {
		return nil, err
	}
	return swaggerToProto(data)
}

// GroupVersionPaths lists the v3 documents, sorted.
func (b *Builder) GroupVersionPaths() []string {
	seen := map[string]bool{}
	var out []string
	for _, r := range b.resources {
		p := GroupVersionPath(r.GroupVersion)
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}

// V3 returns the OpenAPI 3 document of one group version (a path from
// GroupVersionPaths) as JSON, with its hash; ok is false for an unknown path.
func (b *Builder) V3(gvPath string) (data []byte, hash string, ok bool, err error) {
	var kinds []Kind
	var served []Resource
	for _, r := range b.resources {
		if GroupVersionPath(r.GroupVersion) == gvPath {
			served = append(served, r)
		}
	}
	if len(served) == 0 {
		return nil, "", false, nil
	}
	all := b.kinds()
	g := newGenerator(refPrefixV3, all)
	for _, k := range metaKinds() {
		g.ref(k.Type)
	}
	paths := map[string]interface{}{}
	for _, r := range served {
		kinds = append(kinds, Kind{Type: r.Object})
		if r.List != nil {
			kinds = append(kinds, Kind{Type: r.List})
		}
		for _, sub := range r.Subresources {
			kinds = append(kinds, Kind{Type: sub.Type})
		}
		addPaths(paths, g, r)
	}
	for _, k := range kinds {
		g.ref(k.Type)
	}
	doc := map[string]interface{}{
		"openapi":    "3.0.0",
		"info":       map[string]string{"title": "Kubernetes", "version": "v1.33.1+orch"},
		"paths":      paths,
		"components": map[string]interface{}{"schemas": g.defs},
	}
	data, err = json.Marshal(doc)
	if err != nil {
		return nil, "", false, fmt.Errorf("encode openapi v3 %s: %w", gvPath, err)
	}
	sum := sha512.Sum512(data)
	return data, strings.ToUpper(hex.EncodeToString(sum[:])), true, nil
}

// V3Index returns the /openapi/v3 discovery document: every group
// version's document URL carrying its hash, so clients can cache them.
// The hashes are computed once.
func (b *Builder) V3Index() ([]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.hashes == nil {
		hashes := map[string]string{}
		for _, p := range b.GroupVersionPaths() {
			_, hash, _, err := b.V3(p)
			if err != nil {
				return nil, err
			}
			hashes[p] = hash
		}
		b.hashes = hashes
	}
	type entry struct {
		ServerRelativeURL string `json:"serverRelativeURL"`
	}
	paths := map[string]entry{}
	for p, h := range b.hashes {
		paths[p] = entry{ServerRelativeURL: "/openapi/v3/" + p + "?hash=" + h}
	}
	return json.Marshal(map[string]interface{}{"paths": paths})
}
