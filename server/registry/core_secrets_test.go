package registry

import (
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func TestSecretDefaults(t *testing.T) {
	tests := []struct {
		name     string
		in       corev1.Secret
		wantType corev1.SecretType
		wantData map[string][]byte
	}{
		{"type defaults to Opaque", corev1.Secret{}, corev1.SecretTypeOpaque, nil},
		{"type kept", corev1.Secret{Type: corev1.SecretTypeTLS}, corev1.SecretTypeTLS, nil},
		{"stringData becomes data", corev1.Secret{StringData: map[string]string{"user": "admin"}},
			corev1.SecretTypeOpaque, map[string][]byte{"user": []byte("admin")}},
		{"stringData overwrites data", corev1.Secret{
			Data:       map[string][]byte{"user": []byte("old"), "keep": []byte("k")},
			StringData: map[string]string{"user": "new"},
		}, corev1.SecretTypeOpaque, map[string][]byte{"user": []byte("new"), "keep": []byte("k")}},
	}
	r := configResource(t, "secrets")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.in.DeepCopy()
			r.Default(s)
			if s.Type != tt.wantType {
				t.Errorf("type %q, want %q", s.Type, tt.wantType)
			}
			if !reflect.DeepEqual(s.Data, tt.wantData) {
				t.Errorf("data %q, want %q", s.Data, tt.wantData)
			}
			if s.StringData != nil {
				t.Errorf("stringData kept: %v", s.StringData)
			}
		})
	}
}

func TestValidateSecret(t *testing.T) {
	data := func(kv ...string) map[string][]byte {
		m := map[string][]byte{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = []byte(kv[i+1])
		}
		return m
	}
	saName := map[string]string{corev1.ServiceAccountNameKey: "builder"}
	tests := []struct {
		name string
		s    corev1.Secret
		want []string
	}{
		{"opaque", corev1.Secret{Type: corev1.SecretTypeOpaque, Data: data("a", "1")}, nil},
		{"unknown type accepted", corev1.Secret{Type: "example.com/custom"}, nil},
		{"invalid key", corev1.Secret{Type: corev1.SecretTypeOpaque, Data: data("a b", "1")}, []string{"data[a b]: FieldValueInvalid"}},
		{"too large", corev1.Secret{Type: corev1.SecretTypeOpaque, Data: data("a", strings.Repeat("x", maxConfigDataSize+1))},
			[]string{"data: FieldValueTooLong"}},
		{"sa token", corev1.Secret{ObjectMeta: metav1.ObjectMeta{Annotations: saName}, Type: corev1.SecretTypeServiceAccountToken}, nil},
		{"sa token without account", corev1.Secret{Type: corev1.SecretTypeServiceAccountToken},
			[]string{"metadata.annotations[kubernetes.io/service-account.name]: FieldValueRequired"}},
		{"dockerconfigjson", corev1.Secret{Type: corev1.SecretTypeDockerConfigJson, Data: data(".dockerconfigjson", `{"auths":{}}`)}, nil},
		{"dockerconfigjson missing", corev1.Secret{Type: corev1.SecretTypeDockerConfigJson},
			[]string{"data[.dockerconfigjson]: FieldValueRequired"}},
		{"dockerconfigjson not JSON", corev1.Secret{Type: corev1.SecretTypeDockerConfigJson, Data: data(".dockerconfigjson", "{")},
			[]string{"data[.dockerconfigjson]: FieldValueInvalid"}},
		{"dockerconfigjson not an object", corev1.Secret{Type: corev1.SecretTypeDockerConfigJson, Data: data(".dockerconfigjson", "[]")},
			[]string{"data[.dockerconfigjson]: FieldValueInvalid"}},
		{"dockercfg", corev1.Secret{Type: corev1.SecretTypeDockercfg, Data: data(".dockercfg", `{}`)}, nil},
		{"dockercfg missing", corev1.Secret{Type: corev1.SecretTypeDockercfg}, []string{"data[.dockercfg]: FieldValueRequired"}},
		{"basic auth user only", corev1.Secret{Type: corev1.SecretTypeBasicAuth, Data: data("username", "")}, nil},
		{"basic auth empty", corev1.Secret{Type: corev1.SecretTypeBasicAuth},
			[]string{"data[username]: FieldValueRequired", "data[password]: FieldValueRequired"}},
		{"ssh auth", corev1.Secret{Type: corev1.SecretTypeSSHAuth, Data: data("ssh-privatekey", "k")}, nil},
		{"ssh auth empty key", corev1.Secret{Type: corev1.SecretTypeSSHAuth, Data: data("ssh-privatekey", "")},
			[]string{"data[ssh-privatekey]: FieldValueRequired"}},
		{"tls", corev1.Secret{Type: corev1.SecretTypeTLS, Data: data("tls.crt", "", "tls.key", "")}, nil},
		{"tls missing both", corev1.Secret{Type: corev1.SecretTypeTLS},
			[]string{"data[tls.crt]: FieldValueRequired", "data[tls.key]: FieldValueRequired"}},
	}
	r := configResource(t, "secrets")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := r.Validate(&tt.s)
			wantErrors(t, errs, tt.want...)
			for _, e := range errs {
				if e.Type == "FieldValueInvalid" && strings.HasPrefix(e.Field, "data[.docker") && e.BadValue != "<secret contents redacted>" {
					t.Errorf("secret contents leaked in error: %v", e)
				}
			}
		})
	}
}

func TestValidateSecretUpdate(t *testing.T) {
	immutable := corev1.Secret{Type: corev1.SecretTypeOpaque, Immutable: ptr.To(true), Data: map[string][]byte{"a": []byte("1")}}
	tests := []struct {
		name     string
		old, new corev1.Secret
		want     []string
	}{
		{"data may change", corev1.Secret{Type: corev1.SecretTypeOpaque}, corev1.Secret{Type: corev1.SecretTypeOpaque, Data: map[string][]byte{"a": nil}}, nil},
		{"type immutable", corev1.Secret{Type: corev1.SecretTypeOpaque}, corev1.Secret{Type: corev1.SecretTypeTLS}, []string{"type: FieldValueInvalid"}},
		{"immutable unchanged", immutable, immutable, nil},
		{"immutable data changed", immutable, corev1.Secret{Type: corev1.SecretTypeOpaque, Immutable: ptr.To(true)}, []string{"data: FieldValueForbidden"}},
		{"immutable unset", immutable, corev1.Secret{Type: corev1.SecretTypeOpaque, Data: map[string][]byte{"a": []byte("1")}},
			[]string{"immutable: FieldValueForbidden"}},
	}
	r := configResource(t, "secrets")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantErrors(t, r.ValidateUpdate(&tt.new, &tt.old), tt.want...)
		})
	}
}

func TestSecretRowAndFields(t *testing.T) {
	r := configResource(t, "secrets")
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "tls"}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{"tls.crt": nil, "tls.key": nil}}
	if got := rowString(r.Row(s)); got != "[tls kubernetes.io/tls 2 <unknown>]" {
		t.Errorf("row %s", got)
	}
	if got := r.Fields(s)["type"]; got != "kubernetes.io/tls" {
		t.Errorf("type field %q", got)
	}
}
