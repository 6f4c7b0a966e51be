package registry

import (
	"encoding/json"
	"reflect"

	corev1 "k8s.io/api/core/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// secretsResource is core/v1 secrets (pkg/registry/core/secret).
func secretsResource() *Resource {
	return &Resource{
		GroupVersion: schema.GroupVersion{Version: "v1"},
		Name:         "secrets",
		Kind:         "Secret",
		SingularName: "secret",
		Namespaced:   true,
		New:          func() runtime.Object { return &corev1.Secret{} },
		NewList:      func() runtime.Object { return &corev1.SecretList{} },
		Default:      func(obj runtime.Object) { defaultSecret(obj.(*corev1.Secret)) },
		Validate:     func(obj runtime.Object) field.ErrorList { return validateSecret(obj.(*corev1.Secret)) },
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			return validateSecretUpdate(obj.(*corev1.Secret), old.(*corev1.Secret))
		},
		Columns: []metav1.TableColumnDefinition{
			nameColumn(),
			column("Type", "string", corev1.Secret{}.SwaggerDoc()["type"], 0),
			column("Data", "string", corev1.Secret{}.SwaggerDoc()["data"], 0),
			ageColumn(),
		},
		Row: func(obj runtime.Object) []interface{} {
			s := obj.(*corev1.Secret)
			return []interface{}{s.Name, string(s.Type), int64(len(s.Data)), translateTimestampSince(s.CreationTimestamp)}
		},
		Fields: func(obj runtime.Object) fields.Set {
			return fields.Set{"type": string(obj.(*corev1.Secret).Type)}
		},
	}
}

// defaultSecret is SetDefaults_Secret plus the v1 conversion of stringData:
// Kubernetes' internal Secret has no stringData, its values overwrite
// data's, and so stringData is never stored nor returned.
func defaultSecret(s *corev1.Secret) {
	if s.Type == "" {
		s.Type = corev1.SecretTypeOpaque
	}
	if len(s.StringData) > 0 {
		if s.Data == nil {
			s.Data = make(map[string][]byte, len(s.StringData))
		}
		for k, v := range s.StringData {
			s.Data[k] = []byte(v)
		}
	}
	s.StringData = nil
}

// validateSecret is ValidateSecret: valid keys, at most 1 MiB of data, and
// what each well-known type requires.
func validateSecret(s *corev1.Secret) field.ErrorList {
	var allErrs field.ErrorList
	dataPath := field.NewPath("data")
	total := 0
	for _, key := range configKeys(s.Data) {
		for _, msg := range validation.IsConfigMapKey(key) {
			allErrs = append(allErrs, field.Invalid(dataPath.Key(key), key, msg))
		}
		total += len(s.Data[key])
	}
	if total > maxConfigDataSize {
		allErrs = append(allErrs, field.TooLong(dataPath, "", maxConfigDataSize))
	}

	requireKey := func(key string) bool {
		if _, ok := s.Data[key]; !ok {
			allErrs = append(allErrs, field.Required(dataPath.Key(key), ""))
			return false
		}
		return true
	}
	// requireJSON: docker config secrets must hold a JSON object, checked
	// without echoing the secret back in the error.
	requireJSON := func(key string) {
		if !requireKey(key) {
			return
		}
		if err := json.Unmarshal(s.Data[key], &map[string]interface{}{}); err != nil {
			allErrs = append(allErrs, field.Invalid(dataPath.Key(key), "<secret contents redacted>", err.Error()))
		}
	}

	switch s.Type {
	case corev1.SecretTypeServiceAccountToken:
		// Only the account name is required; the token controller adds
		// the uid annotation and the token later.
		if s.Annotations[corev1.ServiceAccountNameKey] == "" {
			allErrs = append(allErrs, field.Required(field.NewPath("metadata", "annotations").Key(corev1.ServiceAccountNameKey), ""))
		}
	case corev1.SecretTypeDockercfg:
		requireJSON(corev1.DockerConfigKey)
	case corev1.SecretTypeDockerConfigJson:
		requireJSON(corev1.DockerConfigJsonKey)
	case corev1.SecretTypeBasicAuth:
		// Either may be empty, but one of them must be present.
		_, hasUser := s.Data[corev1.BasicAuthUsernameKey]
		_, hasPassword := s.Data[corev1.BasicAuthPasswordKey]
		if !hasUser && !hasPassword {
			allErrs = append(allErrs,
				field.Required(dataPath.Key(corev1.BasicAuthUsernameKey), ""),
				field.Required(dataPath.Key(corev1.BasicAuthPasswordKey), ""))
		}
	case corev1.SecretTypeSSHAuth:
		if len(s.Data[corev1.SSHAuthPrivateKey]) == 0 {
			allErrs = append(allErrs, field.Required(dataPath.Key(corev1.SSHAuthPrivateKey), ""))
		}
	case corev1.SecretTypeTLS:
		requireKey(corev1.TLSCertKey)
		requireKey(corev1.TLSPrivateKeyKey)
	}
	return allErrs
}

// validateSecretUpdate: the type never changes; an immutable secret keeps
// its data and stays immutable.
func validateSecretUpdate(s, old *corev1.Secret) field.ErrorList {
	allErrs := apivalidation.ValidateImmutableField(s.Type, old.Type, field.NewPath("type"))
	if configImmutable(old.Immutable) {
		if !configImmutable(s.Immutable) {
			allErrs = append(allErrs, field.Forbidden(field.NewPath("immutable"), immutableWhenSetMsg))
		}
		if !reflect.DeepEqual(s.Data, old.Data) {
			allErrs = append(allErrs, field.Forbidden(field.NewPath("data"), immutableWhenSetMsg))
		}
	}
	return allErrs
}
