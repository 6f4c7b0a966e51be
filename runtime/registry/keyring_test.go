package registry

import (
	"encoding/base64"
	"encoding/json"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func dockerConfigSecret(name string, auths map[string]dockerConfigEntry) v1.Secret {
	b, _ := json.Marshal(map[string]any{"auths": auths})
	return v1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}, Type: v1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{v1.DockerConfigJsonKey: b}}
}

func TestKeyringLookup(t *testing.T) {
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	cfgOld, _ := json.Marshal(map[string]dockerConfigEntry{"old.example.com": {Auth: b64("olduser:oldpass")}})
	secrets := []v1.Secret{
		dockerConfigSecret("hub", map[string]dockerConfigEntry{"https://index.docker.io/v1/": {Username: "hubuser", Password: "p"}}),
		dockerConfigSecret("wild", map[string]dockerConfigEntry{"*.example.com": {Username: "wild", Password: "p"}}),
		dockerConfigSecret("team", map[string]dockerConfigEntry{"registry.example.com/team": {Auth: b64("team:p")}}),
		dockerConfigSecret("port", map[string]dockerConfigEntry{"127.0.0.1:5000": {Username: "local", Password: "p"}}),
		{ObjectMeta: metav1.ObjectMeta{Name: "dockercfg"}, Type: v1.SecretTypeDockercfg, Data: map[string][]byte{v1.DockerConfigKey: cfgOld}},
		{ObjectMeta: metav1.ObjectMeta{Name: "opaque"}, Type: v1.SecretTypeOpaque, Data: map[string][]byte{v1.DockerConfigJsonKey: []byte(`{"auths":{"evil.example.com":{"username":"x"}}}`)}},
		dockerConfigSecret("badauth", map[string]dockerConfigEntry{"bad.example.com": {Auth: "!!!"}}),
	}
	k := newKeyring(secrets)
	tests := []struct {
		image string
		want  []string // usernames, in order
	}{
		{"busybox", []string{"hubuser"}},
		{"docker.io/library/busybox:1.36", []string{"hubuser"}},
		{"registry.example.com/team/app", []string{"team", "wild"}},
		{"registry.example.com/other/app", []string{"wild"}},
		{"a.b.example.com/app", nil}, // a glob label matches one label only
		{"old.example.com/app", []string{"olduser", "wild"}},
		{"127.0.0.1:5000/test/busybox:1", []string{"local"}},
		{"127.0.0.1:5001/test/busybox:1", nil}, // ports must be equal
		{"evil.example.com/app", []string{"wild"}},
		{"bad.example.com/app", []string{"wild"}},
		{"quay.io/app", nil},
	}
	for _, tt := range tests {
		t.Run(tt.image, func(t *testing.T) {
			r, err := ParseReference(tt.image)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, c := range k.lookup(r) {
				got = append(got, c.username)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("lookup(%s) = %v, want %v", tt.image, got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("lookup(%s) = %v, want %v", tt.image, got, tt.want)
				}
			}
		})
	}
}
