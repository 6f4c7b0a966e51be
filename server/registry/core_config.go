package registry

import (
	"reflect"
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// coreConfigResources: configmaps, secrets, serviceaccounts,
// persistentvolumes, persistentvolumeclaims, resourcequotas, limitranges,
// replicationcontrollers, podtemplates.
func coreConfigResources() []*Resource {
	return []*Resource{
		configMapsResource(),
		secretsResource(),
		serviceAccountsResource(),
		persistentVolumesResource(),
		persistentVolumeClaimsResource(),
		resourceQuotasResource(),
		limitRangesResource(),
		replicationControllersResource(),
		podTemplatesResource(),
	}
}

// maxConfigDataSize is core.MaxSecretSize: the total bytes of a ConfigMap's
// or Secret's values, well under etcd's request limit.
const maxConfigDataSize = 1 * 1024 * 1024

// immutableWhenSetMsg is Kubernetes' message for changes to an immutable
// ConfigMap or Secret.
const immutableWhenSetMsg = "field is immutable when `immutable` is set"

// configMapsResource is core/v1 configmaps (pkg/registry/core/configmap).
func configMapsResource() *Resource {
	return &Resource{
		GroupVersion: schema.GroupVersion{Version: "v1"},
		Name:         "configmaps",
		Kind:         "ConfigMap",
		SingularName: "configmap",
		Namespaced:   true,
		ShortNames:   []string{"cm"},
		New:          func() runtime.Object { return &corev1.ConfigMap{} },
		NewList:      func() runtime.Object { return &corev1.ConfigMapList{} },
		Validate:     func(obj runtime.Object) field.ErrorList { return validateConfigMap(obj.(*corev1.ConfigMap)) },
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			return validateConfigMapUpdate(obj.(*corev1.ConfigMap), old.(*corev1.ConfigMap))
		},
		Columns: []metav1.TableColumnDefinition{
			nameColumn(),
			column("Data", "string", corev1.ConfigMap{}.SwaggerDoc()["data"], 0),
			ageColumn(),
		},
		Row: func(obj runtime.Object) []interface{} {
			cm := obj.(*corev1.ConfigMap)
			return []interface{}{cm.Name, int64(len(cm.Data) + len(cm.BinaryData)), translateTimestampSince(cm.CreationTimestamp)}
		},
	}
}

// validateConfigMap: keys are config map keys, no key is in both data and
// binaryData, and all values together stay within 1 MiB.
func validateConfigMap(cm *corev1.ConfigMap) field.ErrorList {
	var allErrs field.ErrorList
	dataPath, binaryPath := field.NewPath("data"), field.NewPath("binaryData")
	total := 0
	for _, key := range configKeys(cm.Data) {
		for _, msg := range validation.IsConfigMapKey(key) {
			allErrs = append(allErrs, field.Invalid(dataPath.Key(key), key, msg))
		}
		if _, dup := cm.BinaryData[key]; dup {
			allErrs = append(allErrs, field.Invalid(dataPath.Key(key), key, "duplicate of key present in binaryData"))
		}
		total += len(cm.Data[key])
	}
	for _, key := range configKeys(cm.BinaryData) {
		for _, msg := range validation.IsConfigMapKey(key) {
			allErrs = append(allErrs, field.Invalid(binaryPath.Key(key), key, msg))
		}
		total += len(cm.BinaryData[key])
	}
	if total > maxConfigDataSize {
		// Kubernetes reports the size against the whole object (empty path).
		allErrs = append(allErrs, field.TooLong(field.NewPath(""), "", maxConfigDataSize))
	}
	return allErrs
}

// validateConfigMapUpdate: an immutable ConfigMap keeps its data and stays
// immutable.
func validateConfigMapUpdate(cm, old *corev1.ConfigMap) field.ErrorList {
	if !configImmutable(old.Immutable) {
		return nil
	}
	var allErrs field.ErrorList
	if !configImmutable(cm.Immutable) {
		allErrs = append(allErrs, field.Forbidden(field.NewPath("immutable"), immutableWhenSetMsg))
	}
	if !reflect.DeepEqual(cm.Data, old.Data) {
		allErrs = append(allErrs, field.Forbidden(field.NewPath("data"), immutableWhenSetMsg))
	}
	if !reflect.DeepEqual(cm.BinaryData, old.BinaryData) {
		allErrs = append(allErrs, field.Forbidden(field.NewPath("binaryData"), immutableWhenSetMsg))
	}
	return allErrs
}

// serviceAccountsResource is core/v1 serviceaccounts. Its metadata is all
// Kubernetes validates; secret references keep only their names.
func serviceAccountsResource() *Resource {
	return &Resource{
		GroupVersion: schema.GroupVersion{Version: "v1"},
		Name:         "serviceaccounts",
		Kind:         "ServiceAccount",
		SingularName: "serviceaccount",
		Namespaced:   true,
		ShortNames:   []string{"sa"},
		// token (TokenRequest) is answered by a hook the server attaches.
		Subresources: []string{"token"},
		New:          func() runtime.Object { return &corev1.ServiceAccount{} },
		NewList:      func() runtime.Object { return &corev1.ServiceAccountList{} },
		PrepareForCreate: func(obj runtime.Object) {
			cleanSecretReferences(obj.(*corev1.ServiceAccount))
		},
		PrepareForUpdate: func(obj, _ runtime.Object) {
			cleanSecretReferences(obj.(*corev1.ServiceAccount))
		},
		Columns: []metav1.TableColumnDefinition{
			nameColumn(),
			column("Secrets", "string", corev1.ServiceAccount{}.SwaggerDoc()["secrets"], 0),
			ageColumn(),
		},
		Row: func(obj runtime.Object) []interface{} {
			sa := obj.(*corev1.ServiceAccount)
			return []interface{}{sa.Name, int64(len(sa.Secrets)), translateTimestampSince(sa.CreationTimestamp)}
		},
	}
}

// cleanSecretReferences keeps only the name of each referenced secret, as
// the serviceaccount strategy does: the other fields of an ObjectReference
// are meaningless there and were misused to smuggle data.
func cleanSecretReferences(sa *corev1.ServiceAccount) {
	for i, ref := range sa.Secrets {
		sa.Secrets[i] = corev1.ObjectReference{Name: ref.Name}
	}
}

// configImmutable reports whether an `immutable` field is set and true.
func configImmutable(b *bool) bool { return b != nil && *b }

// configKeys returns the keys of a data map in order, so that errors come
// out in a stable order.
func configKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
