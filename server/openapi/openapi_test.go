package openapi

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/managedfields"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"k8s.io/kube-openapi/pkg/spec3"
	"k8s.io/kube-openapi/pkg/validation/spec"
)

func testResources() []Resource {
	return []Resource{
		{GroupVersion: appsv1.SchemeGroupVersion, Name: "deployments", Kind: "Deployment", Namespaced: true,
			Object: reflect.TypeOf(appsv1.Deployment{}), List: reflect.TypeOf(appsv1.DeploymentList{}),
			Subresources: []Subresource{
				{Name: "status", Type: reflect.TypeOf(appsv1.Deployment{}), GVK: appsv1.SchemeGroupVersion.WithKind("Deployment")},
				{Name: "scale", Type: reflect.TypeOf(autoscalingv1.Scale{}), GVK: autoscalingv1.SchemeGroupVersion.WithKind("Scale")},
			}},
		{GroupVersion: corev1.SchemeGroupVersion, Name: "pods", Kind: "Pod", Namespaced: true,
			Object: reflect.TypeOf(corev1.Pod{}), List: reflect.TypeOf(corev1.PodList{})},
		{GroupVersion: corev1.SchemeGroupVersion, Name: "services", Kind: "Service", Namespaced: true,
			Object: reflect.TypeOf(corev1.Service{}), List: reflect.TypeOf(corev1.ServiceList{})},
		{GroupVersion: corev1.SchemeGroupVersion, Name: "secrets", Kind: "Secret", Namespaced: true,
			Object: reflect.TypeOf(corev1.Secret{}), List: reflect.TypeOf(corev1.SecretList{})},
		{GroupVersion: corev1.SchemeGroupVersion, Name: "nodes", Kind: "Node",
			Object: reflect.TypeOf(corev1.Node{}), List: reflect.TypeOf(corev1.NodeList{})},
	}
}

func TestDefinitionName(t *testing.T) {
	tests := []struct {
		v    interface{}
		want string
	}{
		{appsv1.Deployment{}, "io.k8s.api.apps.v1.Deployment"},
		{&corev1.Pod{}, "io.k8s.api.core.v1.Pod"},
		{metav1.ObjectMeta{}, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"},
		{resource.Quantity{}, "io.k8s.apimachinery.pkg.api.resource.Quantity"},
		{intstr.IntOrString{}, "io.k8s.apimachinery.pkg.util.intstr.IntOrString"},
	}
	for _, tc := range tests {
		if got := DefinitionName(reflect.TypeOf(tc.v)); got != tc.want {
			t.Errorf("DefinitionName(%T) = %q, want %q", tc.v, got, tc.want)
		}
	}
}

func TestDefinitions(t *testing.T) {
	defs := NewBuilder(testResources()).Definitions()
	get := func(name string) *spec.Schema {
		t.Helper()
		s := defs[name]
		if s == nil {
			t.Fatalf("no definition %s", name)
		}
		return s
	}
	dep := get("io.k8s.api.apps.v1.Deployment")
	if !strings.Contains(dep.Description, "Deployment enables declarative updates") {
		t.Errorf("Deployment description = %q", dep.Description)
	}
	gvks, _ := dep.Extensions[extGVK].([]interface{})
	if len(gvks) != 1 || !reflect.DeepEqual(gvks[0], map[string]interface{}{"group": "apps", "version": "v1", "kind": "Deployment"}) {
		t.Errorf("Deployment GVK extension = %#v", dep.Extensions[extGVK])
	}
	for _, p := range []string{"apiVersion", "kind", "metadata", "spec", "status"} {
		if _, ok := dep.Properties[p]; !ok {
			t.Errorf("Deployment lacks property %s", p)
		}
	}
	if spec := dep.Properties["spec"]; spec.Ref.String() != "#/definitions/io.k8s.api.apps.v1.DeploymentSpec" {
		t.Errorf("spec ref = %q", spec.Ref.String())
	}
	replicas := get("io.k8s.api.apps.v1.DeploymentSpec").Properties["replicas"]
	if replicas.Type[0] != "integer" || replicas.Format != "int32" || !strings.Contains(replicas.Description, "desired pods") {
		t.Errorf("replicas = %+v", replicas)
	}

	containers := get("io.k8s.api.core.v1.PodSpec").Properties["containers"]
	wantExt := map[string]interface{}{
		extPatchStrategy: "merge", extPatchMergeKey: "name", extListType: "map", extListMapKeys: []interface{}{"name"},
	}
	for k, v := range wantExt {
		if !reflect.DeepEqual(containers.Extensions[k], v) {
			t.Errorf("containers %s = %#v, want %#v", k, containers.Extensions[k], v)
		}
	}
	ports := get("io.k8s.api.core.v1.Container").Properties["ports"]
	if !reflect.DeepEqual(ports.Extensions[extListMapKeys], []interface{}{"containerPort", "protocol"}) ||
		ports.Extensions[extPatchMergeKey] != "containerPort" {
		t.Errorf("container ports extensions = %#v", ports.Extensions)
	}
	if d := get("io.k8s.api.core.v1.ContainerPort").Properties["protocol"].Default; d != "TCP" {
		t.Errorf("protocol default = %v", d)
	}
	if lt := get("io.k8s.api.core.v1.NodeStatus").Properties["addresses"].Extensions[extListType]; lt != "atomic" {
		t.Errorf("node addresses list type = %v", lt)
	}
	if lt := get("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta").Properties["finalizers"].Extensions[extListType]; lt != "set" {
		t.Errorf("finalizers list type = %v", lt)
	}

	scalars := map[string][2]string{
		"io.k8s.apimachinery.pkg.apis.meta.v1.Time":       {"string", "date-time"},
		"io.k8s.apimachinery.pkg.api.resource.Quantity":   {"string", ""},
		"io.k8s.apimachinery.pkg.util.intstr.IntOrString": {"string", "int-or-string"},
	}
	for name, want := range scalars {
		s := get(name)
		if len(s.Type) != 1 || s.Type[0] != want[0] || s.Format != want[1] {
			t.Errorf("%s = type %v format %q, want %v", name, s.Type, s.Format, want)
		}
	}
	if s := get("io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1"); s.Type[0] != "object" || len(s.Properties) != 0 {
		t.Errorf("FieldsV1 = %+v", s)
	}
	data := get("io.k8s.api.core.v1.Secret").Properties["data"]
	if data.AdditionalProperties == nil || data.AdditionalProperties.Schema.Format != "byte" {
		t.Errorf("secret data = %+v", data)
	}
	// Embedded TypeMeta is flattened.
	if _, ok := get("io.k8s.api.core.v1.Pod").Properties["TypeMeta"]; ok {
		t.Error("TypeMeta not inlined")
	}
	if _, ok := defs["io.k8s.api.autoscaling.v1.Scale"]; !ok {
		t.Error("scale subresource kind missing")
	}
}

// TestTypeConverter: the definitions are a valid structured-merge-diff
// schema covering the served kinds.
func TestTypeConverter(t *testing.T) {
	tc, err := managedfields.NewTypeConverter(NewBuilder(testResources()).Definitions(), false)
	if err != nil {
		t.Fatal(err)
	}
	d := &appsv1.Deployment{TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"}}
	d.Spec.Template.Spec.Containers = []corev1.Container{{Name: "a", Ports: []corev1.ContainerPort{{ContainerPort: 1, Protocol: "TCP"}, {ContainerPort: 1, Protocol: "UDP"}}}}
	d.Spec.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{MaxSurge: &intstr.IntOrString{Type: intstr.String, StrVal: "25%"}}
	if _, err := tc.ObjectToTyped(d); err != nil {
		t.Errorf("typed deployment: %v", err)
	}
}

func TestV3(t *testing.T) {
	b := NewBuilder(testResources())
	if got := b.GroupVersionPaths(); !reflect.DeepEqual(got, []string{"api/v1", "apis/apps/v1"}) {
		t.Fatalf("paths = %v", got)
	}
	data, hash, ok, err := b.V3("apis/apps/v1")
	if err != nil || !ok || hash == "" {
		t.Fatalf("V3: ok=%v err=%v", ok, err)
	}
	var doc spec3.OpenAPI
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("v3 document does not parse: %v", err)
	}
	dep := doc.Components.Schemas["io.k8s.api.apps.v1.Deployment"]
	if dep == nil {
		t.Fatal("no Deployment schema")
	}
	if _, ok := doc.Components.Schemas["io.k8s.api.core.v1.Pod"]; ok {
		t.Error("apps/v1 document carries core/v1 Pod")
	}
	// Documented refs are wrapped in allOf, as Kubernetes does.
	if meta := dep.Properties["metadata"]; len(meta.AllOf) != 1 || meta.AllOf[0].Ref.String() != "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta" {
		t.Errorf("metadata property = %+v", meta)
	}
	// kubectl checks the fieldValidation parameter of the kind's PATCH.
	item := doc.Paths.Paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]
	if item == nil || item.Patch == nil {
		t.Fatal("no PATCH on the deployment path")
	}
	gvk, _ := item.Patch.Extensions["x-kubernetes-group-version-kind"].(map[string]interface{})
	if gvk["kind"] != "Deployment" || gvk["group"] != "apps" || gvk["version"] != "v1" {
		t.Errorf("patch gvk = %v", item.Patch.Extensions)
	}
	found := false
	for _, p := range item.Patch.Parameters {
		found = found || (p.Name == "fieldValidation" && p.In == "query")
	}
	if !found {
		t.Error("PATCH lacks the fieldValidation query parameter")
	}
	if item.Patch.RequestBody == nil || item.Patch.RequestBody.Content["application/apply-patch+yaml"] == nil {
		t.Error("PATCH lacks the apply content type")
	}
	if doc.Paths.Paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"] == nil {
		t.Error("no scale path")
	}

	// kubectl apply builds strategic-merge metadata from v3 schemas.
	meta := strategicpatch.PatchMetaFromOpenAPIV3{SchemaList: doc.Components.Schemas, Schema: dep}
	var lookup strategicpatch.LookupPatchMeta = meta
	for _, key := range []string{"spec", "template", "spec"} {
		if lookup, _, err = lookup.LookupPatchMetadataForStruct(key); err != nil {
			t.Fatalf("lookup %s: %v", key, err)
		}
	}
	_, pmeta, err := lookup.LookupPatchMetadataForSlice("containers")
	if err != nil {
		t.Fatal(err)
	}
	if pmeta.GetPatchMergeKey() != "name" || len(pmeta.GetPatchStrategies()) != 1 || pmeta.GetPatchStrategies()[0] != "merge" {
		t.Errorf("containers patch meta = %+v", pmeta)
	}

	if _, _, ok, _ := b.V3("apis/nothere/v1"); ok {
		t.Error("unknown group version served")
	}
	again, hash2, _, _ := b.V3("apis/apps/v1")
	if hash2 != hash || string(again) != string(data) {
		t.Error("documents are not deterministic")
	}
}

func TestV3Index(t *testing.T) {
	b := NewBuilder(testResources())
	data, err := b.V3Index()
	if err != nil {
		t.Fatal(err)
	}
	var index struct {
		Paths map[string]struct {
			ServerRelativeURL string `json:"serverRelativeURL"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(data, &index); err != nil {
		t.Fatal(err)
	}
	_, hash, _, _ := b.V3("api/v1")
	if got := index.Paths["api/v1"].ServerRelativeURL; got != "/openapi/v3/api/v1?hash="+hash {
		t.Errorf("api/v1 url = %q", got)
	}
	if !strings.HasPrefix(index.Paths["apis/apps/v1"].ServerRelativeURL, "/openapi/v3/apis/apps/v1?hash=") {
		t.Errorf("index = %s", data)
	}
}

func TestV2(t *testing.T) {
	data, err := NewBuilder(testResources()).V2()
	if err != nil {
		t.Fatal(err)
	}
	var doc spec.Swagger
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Swagger != "2.0" || doc.Definitions["io.k8s.api.core.v1.Pod"].Properties == nil {
		t.Error("v2 document lacks Pod")
	}
	patch := doc.Paths.Paths["/api/v1/namespaces/{namespace}/pods/{name}"].Patch
	if patch == nil {
		t.Fatal("no v2 pod patch")
	}
	var body bool
	for _, p := range patch.Parameters {
		body = body || (p.In == "body" && p.Schema.Ref.String() == "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.Patch")
	}
	if !body {
		t.Error("v2 patch has no body parameter")
	}
}

func TestGroupVersionPath(t *testing.T) {
	if p := GroupVersionPath(schema.GroupVersion{Version: "v1"}); p != "api/v1" {
		t.Error(p)
	}
	if p := GroupVersionPath(schema.GroupVersion{Group: "networking.k8s.io", Version: "v1"}); p != "apis/networking.k8s.io/v1" {
		t.Error(p)
	}
}
