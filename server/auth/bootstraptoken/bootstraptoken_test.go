package bootstraptoken

import (
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

func TestSecretRoundTrip(t *testing.T) {
	exp := time.Date(2026, 11, 24, 15, 0, 0, 0, time.FixedZone("CET", 3600))
	info := Info{ID: "abcdef", Secret: "0123456789abcdef", Expiration: exp, Description: "for the shed",
		Usages: []string{UsageAuthentication, UsageSigning}, ExtraGroups: []string{DefaultExtraGroup, "system:bootstrappers:edge"}}
	s, err := NewSecret(info)
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "bootstrap-token-abcdef" || s.Namespace != "kube-system" || s.Type != "bootstrap.kubernetes.io/token" {
		t.Errorf("secret %s/%s type %s", s.Namespace, s.Name, s.Type)
	}
	want := map[string]string{
		"token-id": "abcdef", "token-secret": "0123456789abcdef", "expiration": "2026-11-24T14:00:00Z",
		"description": "for the shed", "usage-bootstrap-authentication": "true", "usage-bootstrap-signing": "true",
		"auth-extra-groups": DefaultExtraGroup + ",system:bootstrappers:edge",
	}
	got := map[string]string{}
	for k, v := range s.Data {
		got[k] = string(v)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("data = %v\nwant %v", got, want)
	}
	back, err := FromSecret(s)
	if err != nil {
		t.Fatal(err)
	}
	info.Expiration = exp.UTC()
	if !reflect.DeepEqual(back, info) {
		t.Errorf("FromSecret = %+v\nwant %+v", back, info)
	}
	if back.Expired(exp.Add(-time.Second)) || !back.Expired(exp) || (Info{}).Expired(exp) {
		t.Error("Expired is wrong")
	}
	groups, err := back.Groups()
	if err != nil || !reflect.DeepEqual(groups, []string{Group, DefaultExtraGroup, "system:bootstrappers:edge"}) {
		t.Errorf("Groups = %v, %v", groups, err)
	}
}

func TestNewSecretRejects(t *testing.T) {
	for _, tt := range []struct {
		info    Info
		wantErr string
	}{
		{Info{ID: "ABCDEF", Secret: "0123456789abcdef"}, "id \"ABCDEF\""},
		{Info{ID: "abc", Secret: "0123456789abcdef"}, "id \"abc\""},
		{Info{ID: "abcdef", Secret: "short"}, "the secret must be 16"},
		{Info{ID: "abcdef", Secret: "0123456789abcdef", Usages: []string{"everything"}}, "unknown bootstrap token usage"},
		{Info{ID: "abcdef", Secret: "0123456789abcdef", ExtraGroups: []string{"system:masters"}}, "must match"},
		{Info{ID: "abcdef", Secret: "0123456789abcdef", ExtraGroups: []string{"system:bootstrappers:"}}, "must match"},
	} {
		if _, err := NewSecret(tt.info); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("NewSecret(%+v) = %v, want %q", tt.info, err, tt.wantErr)
		}
	}
}

func TestFromSecretRejects(t *testing.T) {
	good, err := NewSecret(Info{ID: "abcdef", Secret: "0123456789abcdef"})
	if err != nil {
		t.Fatal(err)
	}
	for name, edit := range map[string]func(*corev1.Secret){
		"opaque":         func(s *corev1.Secret) { s.Type = corev1.SecretTypeOpaque },
		"other ns":       func(s *corev1.Secret) { s.Namespace = "default" },
		"other name":     func(s *corev1.Secret) { s.Name = "token-abcdef" },
		"id mismatch":    func(s *corev1.Secret) { s.Data[IDKey] = []byte("zzzzzz") },
		"bad expiration": func(s *corev1.Secret) { s.Data[ExpirationKey] = []byte("2026-11-24") },
	} {
		s := good.DeepCopy()
		edit(s)
		if _, err := FromSecret(s); err == nil {
			t.Errorf("%s: FromSecret accepted %+v", name, s)
		}
	}
}
