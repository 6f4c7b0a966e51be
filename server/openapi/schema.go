// Package openapi builds the OpenAPI documents of the served API (the
// Swagger 2.0 document of /openapi/v2 and the per group-version OpenAPI 3
// documents of /openapi/v3) by reflecting over the Go types of the served
// kinds: json tags give property names, SwaggerDoc() gives descriptions,
// patchStrategy/patchMergeKey tags give the strategic-merge and
// server-side-apply list semantics.
//
// The same definitions feed server-side apply: Definitions returns the
// models that k8s.io/apimachinery/pkg/util/managedfields.NewTypeConverter
// takes, so orch needs no generated OpenAPI code and no client-go.
//
// The package does no I/O and holds no global state; serving, caching and
// content negotiation belong to server/apiserver.
package openapi

import (
	"encoding/json"
	"reflect"
	"strings"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/kube-openapi/pkg/validation/spec"
)

// Refs point at definitions: "#/definitions/" in Swagger 2.0,
// "#/components/schemas/" in OpenAPI 3.
const (
	refPrefixV2 = "#/definitions/"
	refPrefixV3 = "#/components/schemas/"
)

// Extension names Kubernetes clients read.
const (
	extGVK           = "x-kubernetes-group-version-kind"
	extPatchStrategy = "x-kubernetes-patch-strategy"
	extPatchMergeKey = "x-kubernetes-patch-merge-key"
	extListType      = "x-kubernetes-list-type"
	extListMapKeys   = "x-kubernetes-list-map-keys"
	extIntOrString   = "x-kubernetes-int-or-string"
)

// listOverride corrects list semantics that the struct tags do not carry:
// Kubernetes declares them with +listType/+listMapKey comment markers,
// which reflection cannot see. Keyed by "DefinitionName.property".
type listOverride struct {
	listType string   // "atomic", "set" or "map"
	keys     []string // for "map"
}

var listOverrides = map[string]listOverride{
	// A container may expose the same port number over TCP and UDP.
	"io.k8s.api.core.v1.Container.ports":          {"map", []string{"containerPort", "protocol"}},
	"io.k8s.api.core.v1.EphemeralContainer.ports": {"map", []string{"containerPort", "protocol"}},
	"io.k8s.api.core.v1.ServiceSpec.ports":        {"map", []string{"port", "protocol"}},
	"io.k8s.api.core.v1.PodSpec.topologySpreadConstraints": {"map",
		[]string{"topologyKey", "whenUnsatisfiable"}},
	// Several addresses of one type are normal (dual-stack nodes).
	"io.k8s.api.core.v1.NodeStatus.addresses": {"atomic", nil},
}

// propertyDefaults are the defaults of list-map keys that clients may omit
// (server-side apply fills them in to find the list entry).
var propertyDefaults = map[string]interface{}{
	"io.k8s.api.core.v1.ContainerPort.protocol": "TCP",
	"io.k8s.api.core.v1.ServicePort.protocol":   "TCP",
}

// Kind is one Go type with the group/version/kinds it is served as.
type Kind struct {
	Type reflect.Type // a struct type, e.g. reflect.TypeOf(appsv1.Deployment{})
	GVKs []schema.GroupVersionKind
}

// generator collects definitions reachable from some roots.
type generator struct {
	refPrefix string
	v3        bool
	defs      map[string]*spec.Schema
	gvks      map[reflect.Type][]schema.GroupVersionKind
}

func newGenerator(refPrefix string, kinds []Kind) *generator {
	g := &generator{
		refPrefix: refPrefix,
		v3:        refPrefix == refPrefixV3,
		defs:      map[string]*spec.Schema{},
		gvks:      map[reflect.Type][]schema.GroupVersionKind{},
	}
	for _, k := range kinds {
		g.gvks[k.Type] = appendUniqueGVKs(g.gvks[k.Type], k.GVKs...)
	}
	return g
}

func appendUniqueGVKs(list []schema.GroupVersionKind, add ...schema.GroupVersionKind) []schema.GroupVersionKind {
	for _, gvk := range add {
		dup := false
		for _, have := range list {
			dup = dup || have == gvk
		}
		if !dup {
			list = append(list, gvk)
		}
	}
	return list
}

// DefinitionName is the name Kubernetes gives a Go type's definition:
// the package path with its domain reversed, then the type name
// (k8s.io/api/apps/v1.Deployment is io.k8s.api.apps.v1.Deployment).
func DefinitionName(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	parts := strings.Split(t.PkgPath(), "/")
	domain := strings.Split(parts[0], ".")
	for i, j := 0, len(domain)-1; i < j; i, j = i+1, j-1 {
		domain[i], domain[j] = domain[j], domain[i]
	}
	parts[0] = strings.Join(domain, ".")
	return strings.Join(parts, ".") + "." + t.Name()
}

// ref adds t's definition (once) and returns its name.
func (g *generator) ref(t reflect.Type) string {
	name := DefinitionName(t)
	if _, done := g.defs[name]; done {
		return name
	}
	s := &spec.Schema{}
	g.defs[name] = s // before walking: types may be recursive
	*s = g.definition(t, name)
	return name
}

var (
	jsonMarshaler = reflect.TypeOf((*json.Marshaler)(nil)).Elem()
)

// Types that marshal as scalars say so (metav1.Time, resource.Quantity,
// intstr.IntOrString, metav1.Duration, metav1.MicroTime).
type openAPISchemaTyper interface {
	OpenAPISchemaType() []string
	OpenAPISchemaFormat() string
}

type openAPIV3OneOfTyper interface {
	OpenAPIV3OneOfTypes() []string
}

type swaggerDocer interface {
	SwaggerDoc() map[string]string
}

func swaggerDoc(t reflect.Type) map[string]string {
	if d, ok := reflect.Zero(t).Interface().(swaggerDocer); ok {
		return d.SwaggerDoc()
	}
	return nil
}

// definition is the schema of a named struct type.
func (g *generator) definition(t reflect.Type, name string) spec.Schema {
	doc := swaggerDoc(t)
	s := spec.Schema{}
	s.Description = doc[""]
	zero := reflect.Zero(t).Interface()
	switch typer := zero.(type) {
	case openAPISchemaTyper:
		if oneOf, ok := zero.(openAPIV3OneOfTyper); ok && g.v3 {
			for _, typ := range oneOf.OpenAPIV3OneOfTypes() {
				s.OneOf = append(s.OneOf, spec.Schema{SchemaProps: spec.SchemaProps{Type: spec.StringOrArray{typ}}})
			}
		} else {
			s.Type = typer.OpenAPISchemaType()
		}
		s.Format = typer.OpenAPISchemaFormat()
		if s.Format == "int-or-string" && g.v3 {
			s.AddExtension(extIntOrString, true)
		}
		return s
	}
	if t.Implements(jsonMarshaler) || reflect.PointerTo(t).Implements(jsonMarshaler) {
		// Opaque JSON (runtime.RawExtension, metav1.FieldsV1).
		s.Type = spec.StringOrArray{"object"}
		return s
	}
	s.Type = spec.StringOrArray{"object"}
	s.Properties = map[string]spec.Schema{}
	g.addFields(&s, t, name, doc)
	if gvks := g.gvks[t]; len(gvks) > 0 {
		var ext []interface{}
		for _, gvk := range gvks {
			ext = append(ext, map[string]interface{}{"group": gvk.Group, "version": gvk.Version, "kind": gvk.Kind})
		}
		s.AddExtension(extGVK, ext)
	}
	return s
}

// addFields adds t's json fields to s, flattening embedded (inline) structs.
func (g *generator) addFields(s *spec.Schema, t reflect.Type, defName string, doc map[string]string) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		jsonName, opts, _ := strings.Cut(tag, ",")
		if jsonName == "-" || (!f.IsExported() && !f.Anonymous) {
			continue
		}
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if f.Anonymous && (jsonName == "" || strings.Contains(","+opts+",", ",inline,")) && ft.Kind() == reflect.Struct {
			g.addFields(s, ft, defName, swaggerDoc(ft))
			continue
		}
		if !f.IsExported() {
			continue
		}
		if jsonName == "" {
			jsonName = f.Name
		}
		prop := g.property(f.Type, doc[jsonName])
		key := defName + "." + jsonName
		if strategy := f.Tag.Get("patchStrategy"); strategy != "" {
			prop.AddExtension(extPatchStrategy, strategy)
			mergeKey := f.Tag.Get("patchMergeKey")
			if mergeKey != "" {
				prop.AddExtension(extPatchMergeKey, mergeKey)
			}
			if prop.Items != nil && strings.Contains(strategy, "merge") {
				if mergeKey != "" {
					prop.AddExtension(extListType, "map")
					prop.AddExtension(extListMapKeys, []interface{}{mergeKey})
				} else {
					prop.AddExtension(extListType, "set")
				}
			}
		}
		if o, ok := listOverrides[key]; ok && prop.Items != nil {
			prop.AddExtension(extListType, o.listType)
			delete(prop.Extensions, extListMapKeys)
			if len(o.keys) > 0 {
				keys := make([]interface{}, len(o.keys))
				for i, k := range o.keys {
					keys[i] = k
				}
				prop.AddExtension(extListMapKeys, keys)
			}
		}
		if d, ok := propertyDefaults[key]; ok {
			prop.Default = d
		}
		s.Properties[jsonName] = prop
	}
}

// property is the schema of a field of type t.
func (g *generator) property(t reflect.Type, description string) spec.Schema {
	s := g.typeSchema(t)
	if description == "" {
		return s
	}
	if s.Ref.String() != "" && g.v3 {
		// OpenAPI 3 ignores siblings of $ref; Kubernetes wraps it.
		return spec.Schema{SchemaProps: spec.SchemaProps{Description: description, AllOf: []spec.Schema{s}}}
	}
	s.Description = description
	return s
}

// typeSchema is the schema of a value of type t.
func (g *generator) typeSchema(t reflect.Type) spec.Schema {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	simple := func(typ, format string) spec.Schema {
		return spec.Schema{SchemaProps: spec.SchemaProps{Type: spec.StringOrArray{typ}, Format: format}}
	}
	switch t.Kind() {
	case reflect.Struct:
		return spec.Schema{SchemaProps: spec.SchemaProps{Ref: spec.MustCreateRef(g.refPrefix + g.ref(t))}}
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return simple("string", "byte")
		}
		item := g.typeSchema(t.Elem())
		s := simple("array", "")
		s.Items = &spec.SchemaOrArray{Schema: &item}
		return s
	case reflect.Map:
		val := g.typeSchema(t.Elem())
		s := simple("object", "")
		s.AdditionalProperties = &spec.SchemaOrBool{Allows: true, Schema: &val}
		return s
	case reflect.String:
		return simple("string", "")
	case reflect.Bool:
		return simple("boolean", "")
	case reflect.Int32, reflect.Int16, reflect.Int8, reflect.Uint16, reflect.Uint8:
		return simple("integer", "int32")
	case reflect.Int, reflect.Int64, reflect.Uint, reflect.Uint32, reflect.Uint64:
		return simple("integer", "int64")
	case reflect.Float64:
		return simple("number", "double")
	case reflect.Float32:
		return simple("number", "float")
	}
	// interface{} and anything else: any JSON value.
	return spec.Schema{}
}
