package openapi

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	openapiv2 "github.com/google/gnostic-models/openapiv2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	openapiproto "k8s.io/kube-openapi/pkg/util/proto"
	"sigs.k8s.io/yaml"

	"github.com/orch-dev/orch/server/registry"
)

// servedResources describes every kind the server serves, so the
// protobuf encoder sees every schema shape the generator produces.
func servedResources(t testing.TB) []Resource {
	t.Helper()
	table, err := registry.NewTable()
	if err != nil {
		t.Fatal(err)
	}
	var out []Resource
	for _, r := range table.Resources() {
		out = append(out, Resource{GroupVersion: r.GroupVersion, Name: r.Name, Kind: r.Kind, Namespaced: r.Namespaced,
			Object: reflect.TypeOf(r.New()).Elem(), List: reflect.TypeOf(r.NewList()).Elem()})
	}
	return append(out, testResources()...) // with status and scale subresources
}

// normalizeAny rewrites every Any's text as JSON: gnostic writes block
// YAML, the encoder JSON, and both must mean the same value.
func normalizeAny(t *testing.T, m protoreflect.Message) {
	if a, ok := m.Interface().(*openapiv2.Any); ok {
		j, err := yaml.YAMLToJSON([]byte(a.Yaml))
		if err != nil {
			t.Fatalf("Any %q: %v", a.Yaml, err)
		}
		a.Yaml = string(j)
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.Message() == nil || fd.IsMap():
		case fd.IsList():
			for i := 0; i < v.List().Len(); i++ {
				normalizeAny(t, v.List().Get(i).Message())
			}
		default:
			normalizeAny(t, v.Message())
		}
		return true
	})
}

func decodeV2Proto(t *testing.T, data []byte) *openapiv2.Document {
	t.Helper()
	doc := &openapiv2.Document{}
	if err := proto.Unmarshal(data, doc); err != nil {
		t.Fatal(err)
	}
	normalizeAny(t, doc.ProtoReflect())
	return doc
}

// The hand encoding must decode to what gnostic's own conversion of the
// JSON document gives, for every served kind.
func TestV2ProtoMatchesGnostic(t *testing.T) {
	b := NewBuilder(servedResources(t))
	data, err := b.V2()
	if err != nil {
		t.Fatal(err)
	}
	want, err := openapiv2.ParseDocument(data)
	if err != nil {
		t.Fatal(err)
	}
	wantBytes, err := proto.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	gotBytes, err := b.V2Proto()
	if err != nil {
		t.Fatal(err)
	}
	got, wantDoc := decodeV2Proto(t, gotBytes), decodeV2Proto(t, wantBytes)
	if proto.Equal(got, wantDoc) {
		return
	}
	// Name what differs rather than printing megabytes.
	if !proto.Equal(got.Info, wantDoc.Info) || got.Swagger != wantDoc.Swagger {
		t.Errorf("info: got %v %v, want %v %v", got.Swagger, got.Info, wantDoc.Swagger, wantDoc.Info)
	}
	if g, w := len(got.GetDefinitions().GetAdditionalProperties()), len(wantDoc.GetDefinitions().GetAdditionalProperties()); g != w {
		t.Fatalf("%d definitions, want %d", g, w)
	}
	for i, w := range wantDoc.GetDefinitions().GetAdditionalProperties() {
		if g := got.Definitions.AdditionalProperties[i]; !proto.Equal(g, w) {
			t.Errorf("definition %s:\ngot  %v\nwant %v", w.Name, g, w)
		}
	}
	if g, w := len(got.GetPaths().GetPath()), len(wantDoc.GetPaths().GetPath()); g != w {
		t.Fatalf("%d paths, want %d", g, w)
	}
	for i, w := range wantDoc.GetPaths().GetPath() {
		if g := got.Paths.Path[i]; !proto.Equal(g, w) {
			t.Errorf("path %s:\ngot  %v\nwant %v", w.Name, g, w)
		}
	}
}

// kubectl reads the protobuf document through kube-openapi's models: the
// kinds' group-version-kind and the patch strategies of lists.
func TestV2ProtoAsKubectlReadsIt(t *testing.T) {
	data, err := NewBuilder(testResources()).V2Proto()
	if err != nil {
		t.Fatal(err)
	}
	doc := &openapiv2.Document{}
	if err := proto.Unmarshal(data, doc); err != nil {
		t.Fatal(err)
	}
	models, err := openapiproto.NewOpenAPIData(doc)
	if err != nil {
		t.Fatal(err)
	}
	pod := models.LookupModel("io.k8s.api.core.v1.Pod")
	if pod == nil {
		t.Fatal("no Pod model")
	}
	gvks, _ := pod.GetExtensions()[extGVK].([]interface{})
	if len(gvks) != 1 || !strings.Contains(fmt.Sprint(gvks[0]), "kind:Pod") {
		t.Errorf("Pod's %s: %#v", extGVK, pod.GetExtensions()[extGVK])
	}
	_, meta, err := strategicpatch.NewPatchMetaFromOpenAPI(models.LookupModel("io.k8s.api.core.v1.PodSpec")).LookupPatchMetadataForSlice("containers")
	if err != nil {
		t.Fatal(err)
	}
	if strategies := meta.GetPatchStrategies(); len(strategies) != 1 || strategies[0] != "merge" || meta.GetPatchMergeKey() != "name" {
		t.Errorf("containers patch meta: %v %q", meta.GetPatchStrategies(), meta.GetPatchMergeKey())
	}
}

func TestV2ProtoRefusesUnknownFields(t *testing.T) {
	for _, tc := range []struct{ name, doc, want string }{
		{"not an object", `[]`, "want a JSON object"},
		{"bad JSON", `{"swagger":`, "Document"},
		{"unknown document field", `{"swagger":"2.0","webhooks":{}}`, `Document: field "webhooks"`},
		{"unknown schema field", `{"definitions":{"a":{"oneOf":[]}}}`, `Schema: field "oneOf"`},
		{"header parameter", `{"paths":{"/p":{"parameters":[{"in":"header","name":"h"}]}}}`, `parameter in "header"`},
		{"wrong type", `{"definitions":{"a":{"type":3}}}`, "type is neither"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := swaggerToProto([]byte(tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error with %q", err, tc.want)
			}
		})
	}
}

// BenchmarkV2Proto compares the hand encoding with gnostic's conversion
// of the same JSON document (what V2Proto did before).
func BenchmarkV2Proto(b *testing.B) {
	data, err := NewBuilder(servedResources(b)).V2()
	if err != nil {
		b.Fatal(err)
	}
	b.Run("protowire", func(b *testing.B) {
		for b.Loop() {
			if _, err := swaggerToProto(data); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("gnostic", func(b *testing.B) {
		for b.Loop() {
			doc, err := openapiv2.ParseDocument(data)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := proto.Marshal(doc); err != nil {
				b.Fatal(err)
			}
		}
	})
}
