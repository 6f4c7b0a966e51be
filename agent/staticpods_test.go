package agent

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

const staticWeb = `apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web}
spec:
  hostNetwork: true
  containers:
  - name: httpd
    image: busybox:1.36
    command: ["httpd", "-f"]
`

func TestDecodeStaticPod(t *testing.T) {
	for _, tc := range []struct {
		name, data string
		wantErr    string
	}{
		{name: "yaml", data: staticWeb},
		{name: "json", data: `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web","namespace":"kube-system"},"spec":{"containers":[{"name":"c","image":"busybox"}]}}`},
		{name: "not yaml", data: "apiVersion: v1\nkind: Pod\n  bad: [", wantErr: "couldn't parse as pod"},
		{name: "a deployment", data: "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n", wantErr: `Object 'Kind' is "Deployment"`},
		{name: "wrong field type", data: "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec: {containers: 3}\n", wantErr: "couldn't parse as pod"},
		{name: "no containers", data: "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec: {}\n", wantErr: "spec.containers: Required value"},
		{name: "no name", data: "apiVersion: v1\nkind: Pod\nspec: {containers: [{name: c, image: busybox}]}\n", wantErr: "metadata.name: Required value"},
		{name: "bad name", data: "apiVersion: v1\nkind: Pod\nmetadata: {name: Web_1}\nspec: {containers: [{name: c, image: busybox}]}\n", wantErr: "metadata.name: Invalid value"},
		{name: "duplicate container", data: "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec: {containers: [{name: c, image: busybox}, {name: c, image: busybox}]}\n", wantErr: `spec.containers[1].name: Duplicate value: "c"`},
		{name: "no image", data: "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec: {containers: [{name: c}]}\n", wantErr: "spec.containers[0].image: Required value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod, err := decodeStaticPod([]byte(tc.data), "/m/web.yaml", "Node-1")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "/m/web.yaml") {
					t.Fatalf("error = %v, want one naming the file and containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if pod.Name != "web-node-1" || pod.Spec.NodeName != "Node-1" || len(pod.UID) != 32 {
				t.Errorf("name %q node %q uid %q", pod.Name, pod.Spec.NodeName, pod.UID)
			}
			if pod.Annotations[annotationConfigHash] != string(pod.UID) || pod.Annotations[annotationConfigSource] != "file" || !isStaticPod(pod) || isMirrorPod(pod) {
				t.Errorf("annotations %v", pod.Annotations)
			}
			if pod.Namespace == "" || pod.Spec.RestartPolicy != v1.RestartPolicyAlways || pod.Spec.DNSPolicy != v1.DNSClusterFirst ||
				pod.Spec.TerminationGracePeriodSeconds == nil || pod.Spec.Containers[0].ImagePullPolicy == "" ||
				pod.Spec.Containers[0].TerminationMessagePath != v1.TerminationMessagePathDefault {
				t.Errorf("defaults not applied: %+v", pod.Spec)
			}
			if n := len(pod.Spec.Tolerations); n != 1 || pod.Spec.Tolerations[0].Effect != v1.TaintEffectNoExecute || pod.Spec.Tolerations[0].Operator != v1.TolerationOpExists {
				t.Errorf("tolerations %+v", pod.Spec.Tolerations)
			}
			again, err := decodeStaticPod([]byte(tc.data), "/m/web.yaml", "Node-1")
			if err != nil || again.UID != pod.UID {
				t.Errorf("UID not stable: %q then %q (%v)", pod.UID, again.UID, err)
			}
			for _, other := range []struct{ source, node string }{{"/m/other.yaml", "Node-1"}, {"/m/web.yaml", "node-2"}} {
				p, err := decodeStaticPod([]byte(tc.data), other.source, other.node)
				if err != nil || p.UID == pod.UID {
					t.Errorf("UID for %v is the same: %q (%v)", other, pod.UID, err)
				}
			}
		})
	}
}

// fakeWorkers records what the static pod source asks of the pod workers.
type fakeWorkers struct {
	mu      sync.Mutex
	updates []*v1.Pod
	resends []types.UID
}

func (f *fakeWorkers) update(_ context.Context, pod *v1.Pod) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.updates = append(f.updates, pod)
}

func (f *fakeWorkers) resendStatus(uid types.UID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.resends = append(f.resends, uid)
}

// take returns and forgets the updates so far.
func (f *fakeWorkers) take() []*v1.Pod {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.updates
	f.updates = nil
	return out
}

func newStaticTestAgent(t *testing.T, apiURL string, client *http.Client) *Agent {
	t.Helper()
	if apiURL == "" {
		apiURL, client = "https://127.0.0.1:1", http.DefaultClient
	}
	a, err := newAgent(Config{ServerURL: apiURL, HTTPClient: client, DataDir: t.TempDir(), NodeName: "n1",
		NodeIP: "127.0.0.1", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestStaticPodFiles(t *testing.T) {
	a := newStaticTestAgent(t, "", nil)
	workers := &fakeWorkers{}
	s := newStaticPods(a, workers)
	ctx := t.Context()
	write := func(name, data string) {
		t.Helper()
		if err := os.MkdirAll(s.src.dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(s.src.dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	podNet := strings.Replace(staticWeb, "  hostNetwork: true\n", "", 1)
	podNet = strings.Replace(podNet, "name: web\n", "name: db\n", 1)

	// No directory: nothing, no error.
	s.syncFiles(ctx)
	if got := workers.take(); len(got) != 0 {
		t.Fatalf("updates without a directory: %d", len(got))
	}

	// A hostNetwork pod starts at once; a pod-network one waits for the
	// network; a bad file and files of other kinds are skipped.
	write("web.yaml", staticWeb)
	write("db.json", mustYAMLToJSON(t, podNet))
	write("broken.yaml", "apiVersion: v1\nkind: Pod\nspec: {containers: 3}\n")
	write("notes.txt", "not a pod")
	write(".web.yaml.swp", "junk")
	s.syncFiles(ctx)
	got := workers.take()
	if len(got) != 1 || got[0].Name != "web-n1" || got[0].DeletionTimestamp != nil {
		t.Fatalf("updates = %v, want web-n1 only", podNames(got))
	}
	web := got[0]
	if !s.isStatic(web.UID) || s.failed[filepath.Join(s.src.dir, "broken.yaml")] == "" {
		t.Errorf("isStatic %v, failed files %v", s.isStatic(web.UID), s.failed)
	}
	seen := web.Annotations[annotationConfigSeen]
	if _, err := time.Parse(time.RFC3339Nano, seen); err != nil {
		t.Errorf("config.seen = %q: %v", seen, err)
	}
	s.networkReady(ctx)
	if got := workers.take(); len(got) != 1 || got[0].Name != "db-n1" {
		t.Fatalf("after the network is ready: %v, want db-n1", podNames(got))
	}

	// Nothing changed: no updates, the same seen time.
	s.syncFiles(ctx)
	if got := workers.take(); len(got) != 0 {
		t.Fatalf("unchanged files gave updates %v", podNames(got))
	}
	if s.pods[web.UID].Annotations[annotationConfigSeen] != seen {
		t.Errorf("config.seen changed on an unchanged file")
	}

	// A changed file stops the old pod (with its grace period) and starts
	// the new one.
	write("web.yaml", strings.Replace(staticWeb, "httpd\", \"-f\"", "httpd\", \"-f\", \"-v\"", 1))
	s.syncFiles(ctx)
	got = workers.take()
	if len(got) != 2 {
		t.Fatalf("after a change: %v, want the old web stopping and the new one", podNames(got))
	}
	old, fresh := got[0], got[1]
	if old.UID != web.UID || old.DeletionTimestamp == nil || old.DeletionGracePeriodSeconds == nil || *old.DeletionGracePeriodSeconds != 30 {
		t.Errorf("old pod update = %s %v %v", old.UID, old.DeletionTimestamp, old.DeletionGracePeriodSeconds)
	}
	if fresh.UID == web.UID || fresh.Name != "web-n1" || fresh.DeletionTimestamp != nil {
		t.Errorf("new pod = %s %s", fresh.Name, fresh.UID)
	}
	if !s.isStatic(web.UID) {
		t.Errorf("a stopping static pod must stay known until it has stopped")
	}
	s.terminated(ctx, old)
	if s.isStatic(web.UID) {
		t.Errorf("still known after it stopped")
	}

	// A removed file stops its pod; fixing the bad file starts it.
	if err := os.Remove(filepath.Join(s.src.dir, "db.json")); err != nil {
		t.Fatal(err)
	}
	write("broken.yaml", strings.Replace(staticWeb, "name: web\n", "name: fixed\n", 1))
	s.syncFiles(ctx)
	got = workers.take()
	if len(got) != 2 {
		t.Fatalf("after remove and fix: %v", podNames(got))
	}
	if got[0].Name != "db-n1" || got[0].DeletionTimestamp == nil || got[1].Name != "fixed-n1" || len(s.failed) != 0 {
		t.Errorf("updates %v (deleting %v), failed %v", podNames(got), got[0].DeletionTimestamp, s.failed)
	}

	// Two files defining the same pod: the second in name order is refused.
	write("zz-web.yaml", staticWeb)
	s.syncFiles(ctx)
	if got := workers.take(); len(got) != 0 {
		t.Errorf("duplicate gave updates %v", podNames(got))
	}
	if msg := s.failed[filepath.Join(s.src.dir, "zz-web.yaml")]; !strings.Contains(msg, "also defined in") {
		t.Errorf("duplicate file error = %q", msg)
	}
}

func mustYAMLToJSON(t *testing.T, y string) string {
	t.Helper()
	p, err := decodeStaticPod([]byte(y), "x", "x")
	if err != nil {
		t.Fatal(err)
	}
	// Back to what a user would write: no generated fields.
	p.Name = strings.TrimSuffix(p.Name, "-x")
	p.UID, p.Annotations, p.Spec.NodeName, p.Status = "", nil, "", v1.PodStatus{}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func podNames(pods []*v1.Pod) []string {
	var out []string
	for _, p := range pods {
		out = append(out, p.Namespace+"/"+p.Name)
	}
	return out
}

// mirrorAPI is the part of the API server mirror pods use: create and
// delete of pods, with UID preconditions.
type mirrorAPI struct {
	mu      sync.Mutex
	pods    map[string]*v1.Pod
	next    int
	deletes []string
}

func (f *mirrorAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/api/v1/namespaces/"), "/")
	if len(parts) < 2 || parts[1] != "pods" {
		http.NotFound(w, r)
		return
	}
	ns := parts[0]
	status := func(code int, reason metav1.StatusReason) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: "Failure", Code: int32(code), Reason: reason})
	}
	switch {
	case r.Method == http.MethodPost && len(parts) == 2:
		var p v1.Pod
		body, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(body, &p); err != nil {
			status(http.StatusBadRequest, metav1.StatusReasonBadRequest)
			return
		}
		key := ns + "/" + p.Name
		if f.pods[key] != nil {
			status(http.StatusConflict, metav1.StatusReasonAlreadyExists)
			return
		}
		f.next++
		p.UID = types.UID("mirror-" + string(rune('0'+f.next)))
		f.pods[key] = &p
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(&p)
	case r.Method == http.MethodDelete && len(parts) == 3:
		key := ns + "/" + parts[2]
		var opts metav1.DeleteOptions
		body, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(body, &opts)
		p := f.pods[key]
		switch {
		case p == nil:
			status(http.StatusNotFound, metav1.StatusReasonNotFound)
		case opts.Preconditions != nil && opts.Preconditions.UID != nil && *opts.Preconditions.UID != p.UID:
			status(http.StatusConflict, metav1.StatusReasonConflict)
		default:
			delete(f.pods, key)
			f.deletes = append(f.deletes, key)
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(metav1.Status{Status: "Success"})
		}
	default:
		http.NotFound(w, r)
	}
}

func (f *mirrorAPI) get(key string) *v1.Pod {
	f.mu.Lock()
	defer f.mu.Unlock()
	if p := f.pods[key]; p != nil {
		return p.DeepCopy()
	}
	return nil
}

func TestStaticPodMirrors(t *testing.T) {
	api := &mirrorAPI{pods: map[string]*v1.Pod{}}
	ts := httptest.NewServer(api)
	defer ts.Close()
	a := newStaticTestAgent(t, ts.URL, ts.Client())
	workers := &fakeWorkers{}
	s := newStaticPods(a, workers)
	ctx := t.Context()
	if err := os.MkdirAll(s.src.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.src.dir, "web.yaml"), []byte(staticWeb), 0o600); err != nil {
		t.Fatal(err)
	}
	s.syncFiles(ctx)
	web := workers.take()[0]

	// No mirror before the node is registered and the pods listed.
	s.syncMirrors(ctx)
	s.replaceMirrors(nil)
	s.syncMirrors(ctx)
	if api.get("default/web-n1") != nil {
		t.Fatal("mirror created before the node was registered")
	}
	s.setNode("node-uid")
	s.syncMirrors(ctx)
	m := api.get("default/web-n1")
	if m == nil {
		t.Fatal("no mirror pod created")
	}
	ref := m.OwnerReferences
	if m.Annotations[annotationConfigMirror] != string(web.UID) || m.Annotations[annotationConfigSource] != "file" ||
		m.Labels["app"] != "web" || m.Spec.NodeName != "n1" || len(ref) != 1 || ref[0].Kind != "Node" || ref[0].Name != "n1" ||
		ref[0].UID != "node-uid" || ref[0].Controller == nil || !*ref[0].Controller || ref[0].BlockOwnerDeletion != nil {
		t.Errorf("mirror pod = %+v", m.ObjectMeta)
	}
	if !s.mirrorOf(web) || len(workers.resends) != 1 || workers.resends[0] != web.UID {
		t.Errorf("mirrorOf %v, status resends %v", s.mirrorOf(web), workers.resends)
	}

	// Deleted through the API: created again.
	s.observeMirror(m, true)
	api.mu.Lock()
	delete(api.pods, "default/web-n1")
	api.mu.Unlock()
	s.syncMirrors(ctx)
	m2 := api.get("default/web-n1")
	if m2 == nil || m2.UID == m.UID {
		t.Fatalf("mirror not recreated: %v", m2)
	}

	// Being deleted gracefully (deletionTimestamp): replaced at once.
	dying := m2.DeepCopy()
	now := metav1.Now()
	dying.DeletionTimestamp = &now
	s.observeMirror(dying, false)
	if s.mirrorOf(web) {
		t.Errorf("a mirror being deleted takes no status")
	}
	s.syncMirrors(ctx)
	if m3 := api.get("default/web-n1"); m3 == nil || m3.UID == m2.UID {
		t.Fatalf("mirror being deleted was not replaced: %v", m3)
	}

	// An orphan mirror (its file went while the agent was down) is deleted.
	orphan := s.mirrorPod(web)
	orphan.Name, orphan.Annotations[annotationConfigMirror] = "gone-n1", "0123"
	api.mu.Lock()
	orphan.UID = "orphan-uid"
	api.pods["default/gone-n1"] = orphan
	api.mu.Unlock()
	s.observeMirror(orphan, false)
	s.syncMirrors(ctx)
	if api.get("default/gone-n1") != nil {
		t.Errorf("orphan mirror kept")
	}
}

// TestStaticPodsWatchDirectory: run makes the manifest directory and picks
// up files dropped into it or removed from it through its inotify watch.
// The poll is set far beyond the test's deadline, so only the watch can
// deliver them.
func TestStaticPodsWatchDirectory(t *testing.T) {
	a := newStaticTestAgent(t, "", nil)
	workers := &fakeWorkers{}
	s := newStaticPods(a, workers)
	s.interval = time.Hour
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { s.run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("no %s within 30s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor("manifest directory", func() bool { _, err := os.Stat(s.src.dir); return err == nil })
	path := filepath.Join(s.src.dir, "web.yaml")
	if err := os.WriteFile(path, []byte(staticWeb), 0o600); err != nil {
		t.Fatal(err)
	}
	var got []*v1.Pod
	waitFor("update for web-n1", func() bool {
		got = append(got, workers.take()...)
		return len(got) > 0
	})
	if got[0].Name != "web-n1" || got[0].DeletionTimestamp != nil {
		t.Fatalf("updates = %v, want web-n1 to run", podNames(got))
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	waitFor("web-n1 stopped", func() bool {
		for _, p := range workers.take() {
			if p.Name == "web-n1" && p.DeletionTimestamp != nil {
				return true
			}
		}
		return false
	})
}
