package registry

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"
)

// configResource returns one v1 entry of the whole table, so that the
// table's own checks (status subresource has a strategy, ...) ran.
func configResource(t *testing.T, name string) *Resource {
	t.Helper()
	tbl, err := NewTable()
	if err != nil {
		t.Fatalf("NewTable: %v", err)
	}
	r := tbl.Lookup(schema.GroupVersion{Version: "v1"}, name)
	if r == nil {
		t.Fatalf("v1 %s not in the table", name)
	}
	return r
}

// wantErrors compares errs, rendered "path: Type", with want in any order;
// no want means valid.
func wantErrors(t *testing.T, errs field.ErrorList, want ...string) {
	t.Helper()
	got := make([]string, 0, len(errs))
	for _, e := range errs {
		got = append(got, e.Field+": "+string(e.Type))
	}
	sort.Strings(got)
	want = slices.Clone(want)
	sort.Strings(want)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("errors:\n got  %q\n want %q\n (%v)", got, want, errs)
	}
}

// rowString renders table cells as fmt does, for comparison.
func rowString(cells []interface{}) string { return fmt.Sprintf("%v", cells) }

// wantDetail checks that some error's detail contains substr.
func wantDetail(t *testing.T, errs field.ErrorList, substr string) {
	t.Helper()
	for _, e := range errs {
		if strings.Contains(e.Detail, substr) {
			return
		}
	}
	t.Errorf("no error mentions %q: %v", substr, errs)
}

func TestConfigResourceEntries(t *testing.T) {
	tests := []struct {
		name         string
		kind         string
		namespaced   bool
		shortNames   []string
		subresources []string
		categories   []string
		columns      []string
	}{
		{"configmaps", "ConfigMap", true, []string{"cm"}, nil, nil, []string{"Name", "Data", "Age"}},
		{"secrets", "Secret", true, nil, nil, nil, []string{"Name", "Type", "Data", "Age"}},
		{"serviceaccounts", "ServiceAccount", true, []string{"sa"}, []string{"token"}, nil, []string{"Name", "Secrets", "Age"}},
		{"persistentvolumes", "PersistentVolume", false, []string{"pv"}, []string{"status"}, nil,
			[]string{"Name", "Capacity", "Access Modes", "Reclaim Policy", "Status", "Claim", "StorageClass", "VolumeAttributesClass", "Reason", "Age", "VolumeMode"}},
		{"persistentvolumeclaims", "PersistentVolumeClaim", true, []string{"pvc"}, []string{"status"}, nil,
			[]string{"Name", "Status", "Volume", "Capacity", "Access Modes", "StorageClass", "VolumeAttributesClass", "Age", "VolumeMode"}},
		{"resourcequotas", "ResourceQuota", true, []string{"quota"}, []string{"status"}, nil, []string{"Name", "Age", "Request", "Limit"}},
		{"limitranges", "LimitRange", true, []string{"limits"}, nil, nil, []string{"Name", "Created At"}},
		{"replicationcontrollers", "ReplicationController", true, []string{"rc"}, []string{"status", "scale"}, []string{"all"},
			[]string{"Name", "Desired", "Current", "Ready", "Age", "Containers", "Images", "Selector"}},
		{"podtemplates", "PodTemplate", true, nil, nil, nil, []string{"Name", "Containers", "Images", "Pod Labels"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := configResource(t, tt.name)
			if r.Kind != tt.kind || r.Namespaced != tt.namespaced || r.SingularName != strings.ToLower(tt.kind) {
				t.Errorf("kind %q namespaced %v singular %q", r.Kind, r.Namespaced, r.SingularName)
			}
			if !slices.Equal(r.ShortNames, tt.shortNames) || !slices.Equal(r.Subresources, tt.subresources) || !slices.Equal(r.Categories, tt.categories) {
				t.Errorf("short names %v subresources %v categories %v", r.ShortNames, r.Subresources, r.Categories)
			}
			var cols []string
			for _, c := range r.Columns {
				cols = append(cols, c.Name)
			}
			if !slices.Equal(cols, tt.columns) {
				t.Errorf("columns %q, want %q", cols, tt.columns)
			}
			// Every printer must give one cell per column, even for an
			// empty object.
			if cells := r.Row(r.New()); len(cells) != len(r.Columns) {
				t.Errorf("empty object: %d cells for %d columns", len(cells), len(r.Columns))
			}
		})
	}
}

func TestValidateConfigMap(t *testing.T) {
	big := strings.Repeat("x", maxConfigDataSize/2+1)
	tests := []struct {
		name string
		cm   corev1.ConfigMap
		want []string
	}{
		{"empty", corev1.ConfigMap{}, nil},
		{"valid keys", corev1.ConfigMap{Data: map[string]string{"a.conf": "x", "_b-c": "y"}, BinaryData: map[string][]byte{"bin": {0}}}, nil},
		{"invalid data key", corev1.ConfigMap{Data: map[string]string{"a/b": "x"}}, []string{"data[a/b]: FieldValueInvalid"}},
		{"invalid binary key", corev1.ConfigMap{BinaryData: map[string][]byte{"..": {1}}}, []string{"binaryData[..]: FieldValueInvalid"}},
		{"key in both", corev1.ConfigMap{Data: map[string]string{"k": "x"}, BinaryData: map[string][]byte{"k": {1}}},
			[]string{"data[k]: FieldValueInvalid"}},
		{"exactly 1 MiB", corev1.ConfigMap{Data: map[string]string{"a": strings.Repeat("x", maxConfigDataSize)}}, nil},
		{"too large across data and binaryData", corev1.ConfigMap{Data: map[string]string{"a": big}, BinaryData: map[string][]byte{"b": []byte(big)}},
			[]string{"[]: FieldValueTooLong"}},
	}
	r := configResource(t, "configmaps")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantErrors(t, r.Validate(&tt.cm), tt.want...)
		})
	}
}

func TestValidateConfigMapUpdate(t *testing.T) {
	immutable := corev1.ConfigMap{Immutable: ptr.To(true), Data: map[string]string{"a": "1"}}
	tests := []struct {
		name     string
		old, new corev1.ConfigMap
		want     []string
	}{
		{"mutable may change", corev1.ConfigMap{Data: map[string]string{"a": "1"}}, corev1.ConfigMap{Data: map[string]string{"a": "2"}}, nil},
		{"may become immutable", corev1.ConfigMap{}, corev1.ConfigMap{Immutable: ptr.To(true)}, nil},
		{"immutable unchanged", immutable, immutable, nil},
		{"immutable data changed", immutable, corev1.ConfigMap{Immutable: ptr.To(true), Data: map[string]string{"a": "2"}},
			[]string{"data: FieldValueForbidden"}},
		{"immutable binaryData added", immutable, corev1.ConfigMap{Immutable: ptr.To(true), Data: map[string]string{"a": "1"}, BinaryData: map[string][]byte{"b": nil}},
			[]string{"binaryData: FieldValueForbidden"}},
		{"immutable unset", immutable, corev1.ConfigMap{Data: map[string]string{"a": "1"}}, []string{"immutable: FieldValueForbidden"}},
		{"immutable set false", immutable, corev1.ConfigMap{Immutable: ptr.To(false), Data: map[string]string{"a": "1"}}, []string{"immutable: FieldValueForbidden"}},
	}
	r := configResource(t, "configmaps")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := r.ValidateUpdate(&tt.new, &tt.old)
			wantErrors(t, errs, tt.want...)
			if len(tt.want) > 0 {
				wantDetail(t, errs, "field is immutable when `immutable` is set")
			}
		})
	}
}

func TestConfigMapAndServiceAccountRows(t *testing.T) {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cfg"},
		Data: map[string]string{"a": "1", "b": "2"}, BinaryData: map[string][]byte{"c": nil}}
	if got := rowString(configResource(t, "configmaps").Row(cm)); got != "[cfg 3 <unknown>]" {
		t.Errorf("configmap row %s", got)
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}, Secrets: []corev1.ObjectReference{{Name: "tok"}}}
	if got := rowString(configResource(t, "serviceaccounts").Row(sa)); got != "[default 1 <unknown>]" {
		t.Errorf("serviceaccount row %s", got)
	}
}

func TestServiceAccountSecretReferences(t *testing.T) {
	r := configResource(t, "serviceaccounts")
	sa := &corev1.ServiceAccount{Secrets: []corev1.ObjectReference{{Name: "tok", Namespace: "other", Kind: "Secret", FieldPath: "x"}}}
	r.PrepareForCreate(sa)
	if want := []corev1.ObjectReference{{Name: "tok"}}; !slices.Equal(sa.Secrets, want) {
		t.Errorf("create: secrets %v, want %v", sa.Secrets, want)
	}
	upd := &corev1.ServiceAccount{Secrets: []corev1.ObjectReference{{Name: "b", UID: "u"}}}
	r.PrepareForUpdate(upd, sa)
	if want := []corev1.ObjectReference{{Name: "b"}}; !slices.Equal(upd.Secrets, want) {
		t.Errorf("update: secrets %v, want %v", upd.Secrets, want)
	}
}
