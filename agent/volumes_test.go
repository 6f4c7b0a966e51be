package agent

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	authenticationv1 "k8s.io/api/authentication/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// tokenServer answers TokenRequests with numbered tokens and serves the
// kube-root-ca.crt ConfigMap.
type tokenServer struct {
	mu       sync.Mutex
	now      func() time.Time
	requests []authenticationv1.TokenRequest
}

func (s *tokenServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/api/v1/namespaces/ns/serviceaccounts/builder/token":
		var tr authenticationv1.TokenRequest
		body, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(body, &tr); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.requests = append(s.requests, tr)
		tr.Status.Token = "token-" + strconv.Itoa(len(s.requests))
		tr.Status.ExpirationTimestamp = metav1.NewTime(s.now().Add(time.Duration(*tr.Spec.ExpirationSeconds) * time.Second))
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(&tr)
	case r.Method == http.MethodGet && r.URL.Path == "/api/v1/namespaces/ns/configmaps/kube-root-ca.crt":
		_ = json.NewEncoder(w).Encode(&v1.ConfigMap{Data: map[string]string{"ca.crt": "CA PEM"}})
	default:
		http.NotFound(w, r)
	}
}

func (s *tokenServer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.requests)
}

func apiAccessVolume() v1.Volume {
	exp := int64(3607)
	mode := int32(0o644)
	return v1.Volume{Name: "kube-api-access-abcde", VolumeSource: v1.VolumeSource{Projected: &v1.ProjectedVolumeSource{
		Sources: []v1.VolumeProjection{
			{ServiceAccountToken: &v1.ServiceAccountTokenProjection{ExpirationSeconds: &exp, Path: "token"}},
			{ConfigMap: &v1.ConfigMapProjection{LocalObjectReference: v1.LocalObjectReference{Name: "kube-root-ca.crt"},
				Items: []v1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}}},
			{DownwardAPI: &v1.DownwardAPIProjection{Items: []v1.DownwardAPIVolumeFile{{Path: "namespace",
				FieldRef: &v1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.namespace"}}}}},
		},
		DefaultMode: &mode,
	}}}
}

func TestProjectedServiceAccountToken(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("projected volumes are tmpfs mounts: needs root")
	}
	clock := time.Unix(1_000_000, 0)
	srv := &tokenServer{now: func() time.Time { return clock }}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	dataDir := t.TempDir()
	newTestAgent := func() *Agent {
		a, err := newAgent(Config{ServerURL: ts.URL, DataDir: dataDir, NodeName: "n", NodeIP: "127.0.0.1",
			HTTPClient: ts.Client(), Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		a.events = newEventRecorder(nil, "n", a.log)
		a.now = func() time.Time { return clock }
		return a
	}
	a := newTestAgent()

	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns", UID: "pod-uid"},
		Spec: v1.PodSpec{ServiceAccountName: "builder", Volumes: []v1.Volume{apiAccessVolume()}}}
	dir := filepath.Join(a.podDir(pod.UID), "volumes", "kube-api-access-abcde")
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })

	read := func(name string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if _, err := a.setupVolumes(t.Context(), pod, "10.42.0.5"); err != nil {
		t.Fatal(err)
	}
	if read("token") != "token-1" || read("ca.crt") != "CA PEM" || read("namespace") != "ns" {
		t.Errorf("files: token %q ca.crt %q namespace %q", read("token"), read("ca.crt"), read("namespace"))
	}
	if fi, err := os.Stat(filepath.Join(dir, "token")); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("token file mode: %v %v", fi.Mode(), err)
	}
	req := srv.requests[0]
	if ref := req.Spec.BoundObjectRef; ref == nil || ref.Kind != "Pod" || ref.Name != "web" || ref.UID != "pod-uid" ||
		*req.Spec.ExpirationSeconds != 3607 || len(req.Spec.Audiences) != 0 {
		t.Errorf("token request = %+v", req.Spec)
	}

	// A container (re)start reuses the token while it is fresh.
	clock = clock.Add(10 * time.Minute)
	if _, err := a.setupVolumes(t.Context(), pod, "10.42.0.5"); err != nil {
		t.Fatal(err)
	}
	if srv.count() != 1 || read("token") != "token-1" {
		t.Errorf("after a restart: %d requests, token %q", srv.count(), read("token"))
	}

	// Refreshed once 80% of its lifetime has passed, not before.
	steps := []struct {
		at       time.Duration // since the token was issued
		requests int
		token    string
	}{
		{at: 2885 * time.Second, requests: 1, token: "token-1"}, // 79.98%
		{at: 2886 * time.Second, requests: 2, token: "token-2"}, // 80.01%
		{at: 2900 * time.Second, requests: 2, token: "token-2"},
		{at: 2886*time.Second + 2886*time.Second, requests: 3, token: "token-3"},
	}
	issued := time.Unix(1_000_000, 0)
	for _, s := range steps {
		clock = issued.Add(s.at)
		if err := a.refreshTokens(t.Context(), pod, "10.42.0.5"); err != nil {
			t.Fatal(err)
		}
		if srv.count() != s.requests || read("token") != s.token {
			t.Errorf("at %v: %d requests, token %q; want %d, %q", s.at, srv.count(), read("token"), s.requests, s.token)
		}
	}
	if read("ca.crt") != "CA PEM" || read("namespace") != "ns" {
		t.Error("a refresh lost the volume's other files")
	}

	// An agent restart (new Agent, same data dir) keeps using the token.
	if err := newTestAgent().refreshTokens(t.Context(), pod, "10.42.0.5"); err != nil || srv.count() != 3 {
		t.Errorf("after an agent restart: %d requests, err %v", srv.count(), err)
	}
}

func TestTokenStateRefreshAt(t *testing.T) {
	exp := time.Unix(10_000, 0)
	tests := []struct {
		seconds int64
		want    time.Time
	}{
		{3600, exp.Add(-720 * time.Second)},
		{3607, exp.Add(-721*time.Second - 400*time.Millisecond)},
		// Long-lived tokens are renewed after a day at most.
		{7 * 24 * 3600, exp.Add(-6 * 24 * time.Hour)},
	}
	for _, tt := range tests {
		if got := (tokenState{ExpirationSeconds: tt.seconds, Expires: exp}).refreshAt(); !got.Equal(tt.want) {
			t.Errorf("%d s: refresh at %v, want %v", tt.seconds, got, tt.want)
		}
	}
}
