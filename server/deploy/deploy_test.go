package deploy

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// fakeAPI stores what was applied, keyed "resource/ns/name". Apply replaces
// the object with the patch: merging is the API server's business.
type fakeAPI struct {
	mu      sync.Mutex
	objects map[string]*unstructured.Unstructured
	applies []string // keys, in order
	failing map[string]error
}

func newFakeAPI() *fakeAPI {
	return &fakeAPI{objects: map[string]*unstructured.Unstructured{}, failing: map[string]error{}}
}

func fakeKey(gvr schema.GroupVersionResource, ns, name string) string {
	return gvr.Resource + "/" + ns + "/" + name
}

func (f *fakeAPI) Get(_ context.Context, gvr schema.GroupVersionResource, ns, name string) (runtime.Object, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	obj, ok := f.objects[fakeKey(gvr, ns, name)]
	if !ok {
		return nil, apierrors.NewNotFound(gvr.GroupResource(), name)
	}
	return obj.DeepCopy(), nil
}

func (f *fakeAPI) Apply(_ context.Context, gvr schema.GroupVersionResource, ns, name string, patch []byte, manager string, force bool) (runtime.Object, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	key := fakeKey(gvr, ns, name)
	if err := f.failing[key]; err != nil {
		return nil, err
	}
	if manager != FieldManager || !force {
		return nil, apierrors.NewBadRequest("want a forced apply by " + FieldManager)
	}
	obj := &unstructured.Unstructured{}
	if err := json.Unmarshal(patch, &obj.Object); err != nil {
		return nil, apierrors.NewBadRequest(err.Error())
	}
	if obj.GetNamespace() != ns || obj.GetName() != name {
		return nil, apierrors.NewBadRequest("object does not match the request: " + obj.GetNamespace() + "/" + obj.GetName())
	}
	f.objects[key] = obj
	f.applies = append(f.applies, key)
	return obj.DeepCopy(), nil
}

func (f *fakeAPI) object(key string) *unstructured.Unstructured {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.objects[key]
}

func (f *fakeAPI) applied() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.applies...)
}

var (
	configMaps     = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
	storageClasses = schema.GroupVersionResource{Group: "storage.k8s.io", Version: "v1", Resource: "storageclasses"}
)

func fakeKinds(gvk schema.GroupVersionKind) (Kind, bool) {
	switch gvk {
	case schema.GroupVersionKind{Version: "v1", Kind: "ConfigMap"}:
		return Kind{Resource: configMaps, Namespaced: true}, true
	case schema.GroupVersionKind{Group: "storage.k8s.io", Version: "v1", Kind: "StorageClass"}:
		return Kind{Resource: storageClasses}, true
	}
	return Kind{}, false
}

// logBuffer collects log lines for assertions.
type logBuffer struct {
	mu    sync.Mutex
	lines []string
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.lines = append(b.lines, strings.TrimSpace(string(p)))
	return len(p), nil
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Join(b.lines, "\n")
}

func (b *logBuffer) count(substr string) int {
	return strings.Count(b.String(), substr)
}

type harness struct {
	api  *fakeAPI
	dir  string
	logs *logBuffer
	d    *Deployer
}

func newHarness(t *testing.T, builtIn fstest.MapFS, disable ...string) *harness {
	t.Helper()
	h := &harness{api: newFakeAPI(), dir: filepath.Join(t.TempDir(), "manifests"), logs: &logBuffer{}}
	opts := Options{Dir: h.dir, Disable: disable, Kinds: fakeKinds,
		Logger: slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	if builtIn != nil {
		opts.BuiltIn = builtIn
	}
	h.d = New(h.api, opts)
	return h
}

func (h *harness) write(t *testing.T, name, content string) {
	t.Helper()
	if err := os.MkdirAll(h.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(h.dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	// A rewrite within the file system's timestamp granularity must still
	// count as a change.
	future := time.Now().Add(time.Duration(len(h.api.applied())+1) * time.Second)
	if err := os.Chtimes(p, future, future); err != nil {
		t.Fatal(err)
	}
}

func configMap(name, ns, value string) string {
	s := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: " + name + "\n"
	if ns != "" {
		s += "  namespace: " + ns + "\n"
	}
	return s + "data:\n  k: \"" + value + "\"\n"
}

func TestApplyFile(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	manifest := configMap("a", "", "1") + "---\n" + configMap("b", "kube-system", "2") + "---\n" +
		"apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata:\n  name: fast\n  namespace: ignored\nprovisioner: x\n" +
		"---\napiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n---\nkind: [\n"
	err := h.d.applyFile(ctx, "apps.yaml", []byte(manifest))
	if err == nil {
		t.Fatal("applyFile succeeded despite two bad documents")
	}
	for _, want := range []string{
		`apps.yaml: document 4: Widget "w": no matches for kind "Widget" in version "example.com/v1"`,
		"apps.yaml: document 5: not valid YAML",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	// The good documents were applied anyway, with kubectl's defaults.
	a := h.api.object("configmaps/default/a")
	if a == nil {
		t.Fatalf("configmap a not applied; applied %v", h.api.applied())
	}
	if h.api.object("configmaps/kube-system/b") == nil || h.api.object("storageclasses//fast") == nil {
		t.Fatalf("applied %v", h.api.applied())
	}
	if got := a.GetLabels()[LabelManifest]; got != "apps" {
		t.Errorf("label %s = %q, want apps", LabelManifest, got)
	}
	if got := a.GetAnnotations()[AnnotationSource]; got != "apps.yaml" {
		t.Errorf("annotation %s = %q", AnnotationSource, got)
	}
	if got := a.GetAnnotations()[AnnotationApplied]; len(got) != 64 {
		t.Errorf("annotation %s = %q, want a sha256", AnnotationApplied, got)
	}

	// Unchanged documents are not applied again, so a user's later edit of
	// a field the manifest sets survives a restart.
	before := len(h.api.applied())
	if err := h.d.applyFile(ctx, "apps.yaml", []byte(configMap("a", "", "1"))); err != nil {
		t.Fatal(err)
	}
	if n := len(h.api.applied()); n != before {
		t.Errorf("unchanged document applied again (%d applies, want %d)", n, before)
	}
	// A changed document is applied.
	if err := h.d.applyFile(ctx, "apps.yaml", []byte(configMap("a", "", "2"))); err != nil {
		t.Fatal(err)
	}
	if v, _, _ := unstructured.NestedString(h.api.object("configmaps/default/a").Object, "data", "k"); v != "2" {
		t.Errorf("data.k = %q after the change, want 2", v)
	}
	// The same object from another file is applied, and says so.
	if err := h.d.applyFile(ctx, "moved.yaml", []byte(configMap("a", "", "2"))); err != nil {
		t.Fatal(err)
	}
	if got := h.api.object("configmaps/default/a").GetAnnotations()[AnnotationSource]; got != "moved.yaml" {
		t.Errorf("source after the move = %q", got)
	}
}

func TestApplyFileAPIError(t *testing.T) {
	h := newHarness(t, nil)
	h.api.failing["configmaps/default/a"] = apierrors.NewInvalid(schema.GroupKind{Kind: "ConfigMap"}, "a", nil)
	err := h.d.applyFile(context.Background(), "x.yaml", []byte(configMap("a", "", "1")+"---\n"+configMap("b", "", "1")))
	if err == nil || !strings.Contains(err.Error(), "x.yaml: document 1: apply configmaps default/a: ") {
		t.Errorf("error = %v", err)
	}
	if h.api.object("configmaps/default/b") == nil {
		t.Error("document 2 not applied after document 1 failed")
	}
}

func TestManifestLabel(t *testing.T) {
	tests := map[string]string{
		"local-storage.yaml":              "local-storage",
		"apps.v2.yml":                     "apps.v2",
		"x.json":                          "x",
		"my app.yaml":                     "", // not a label value: a hash
		strings.Repeat("a", 64) + ".yaml": "",
	}
	for file, want := range tests {
		got := manifestLabel(file)
		if want == "" {
			if len(got) != 40 || strings.Contains(got, " ") {
				t.Errorf("manifestLabel(%q) = %q, want 40 hex digits", file, got)
			}
			continue
		}
		if got != want {
			t.Errorf("manifestLabel(%q) = %q, want %q", file, got, want)
		}
	}
}

func TestSync(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	h.write(t, "a.yaml", configMap("a", "", "1"))
	h.write(t, "notes.txt", "not a manifest")
	h.write(t, ".a.yaml.swp", "kind: [")
	h.write(t, "skipped.yaml", configMap("skipped", "", "1"))
	h.write(t, "skipped.yaml.skip", "")
	h.write(t, "bad.yaml", "kind: [\n")
	if err := os.Mkdir(filepath.Join(h.dir, "dir.yaml"), 0o700); err != nil {
		t.Fatal(err)
	}

	h.d.syncDir(ctx)
	if got := h.api.applied(); strings.Join(got, ",") != "configmaps/default/a" {
		t.Fatalf("applied %v, want only a", got)
	}
	if h.logs.count("bad.yaml: document 1: not valid YAML") != 1 {
		t.Errorf("bad file not logged once:\n%s", h.logs)
	}

	// Nothing changed: nothing applied, the bad file retried quietly.
	h.d.syncDir(ctx)
	if n := len(h.api.applied()); n != 1 {
		t.Errorf("%d applies after an idle sync, want 1", n)
	}
	if n := h.logs.count("level=ERROR msg=\"manifest not fully applied"); n != 1 {
		t.Errorf("the same failure logged %d times at error level, want once:\n%s", n, h.logs)
	}

	// A changed file is applied again; a fixed file is applied.
	h.write(t, "a.yaml", configMap("a", "", "2"))
	h.write(t, "bad.yaml", configMap("fixed", "", "1"))
	h.d.syncDir(ctx)
	if got := h.api.applied(); strings.Join(got, ",") != "configmaps/default/a,configmaps/default/a,configmaps/default/fixed" {
		t.Errorf("applied %v", got)
	}

	// Deleting a file deletes nothing.
	if err := os.Remove(filepath.Join(h.dir, "a.yaml")); err != nil {
		t.Fatal(err)
	}
	h.d.syncDir(ctx)
	if h.api.object("configmaps/default/a") == nil {
		t.Error("object gone after its file was deleted")
	}
}

// TestSyncRetriesFailures: a file whose kind is not served yet (a custom
// resource whose definition comes later) is applied once it is.
func TestSyncRetriesFailures(t *testing.T) {
	h := newHarness(t, nil)
	h.api.failing["configmaps/default/a"] = apierrors.NewServiceUnavailable("not ready")
	h.write(t, "a.yaml", configMap("a", "", "1"))
	h.d.syncDir(context.Background())
	if h.api.object("configmaps/default/a") != nil {
		t.Fatal("applied despite the failure")
	}
	delete(h.api.failing, "configmaps/default/a")
	h.d.syncDir(context.Background())
	if h.api.object("configmaps/default/a") == nil {
		t.Error("not applied on the retry")
	}
}

func builtIns() fstest.MapFS {
	return fstest.MapFS{
		"local-storage.yaml": {Data: []byte("apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: local-path}\nprovisioner: orch.dev/local-path\n")},
		"extra.yaml":         {Data: []byte(configMap("extra", "kube-system", "1"))},
		"README.md":          {Data: []byte("not a manifest")},
	}
}

func TestRunWritesAndAppliesBuiltIns(t *testing.T) {
	h := newHarness(t, builtIns())
	runFor(t, h, func() bool {
		return h.api.object("storageclasses//local-path") != nil && h.api.object("configmaps/kube-system/extra") != nil
	})
	for name, f := range builtIns() {
		got, err := os.ReadFile(filepath.Join(h.dir, name))
		if name == "README.md" {
			if err == nil {
				t.Error("README.md copied")
			}
			continue
		}
		if err != nil || string(got) != string(f.Data) {
			t.Errorf("%s in the manifest dir = %q, %v", name, got, err)
		}
	}
	// A user's edit of a built-in copy is overwritten at the next start,
	// as k3s does: use a .skip file to keep one.
	h.write(t, "extra.yaml", configMap("extra", "kube-system", "edited"))
	h2 := newHarness(t, builtIns())
	h2.dir = h.dir
	h2.d.opts.Dir = h.dir
	h2.d.writeBuiltIns()
	if got, _ := os.ReadFile(filepath.Join(h.dir, "extra.yaml")); string(got) != configMap("extra", "kube-system", "1") {
		t.Errorf("built-in copy not restored: %q", got)
	}
}

func TestRunDisableAndSkip(t *testing.T) {
	h := newHarness(t, builtIns(), "local-storage", "traefik")
	// A copy written by an earlier start, unchanged: removed. And a .skip
	// file for the other built-in: neither written nor applied.
	h.write(t, "local-storage.yaml", string(builtIns()["local-storage.yaml"].Data))
	h.write(t, "extra.yaml.skip", "")
	h.write(t, "mine.yaml", configMap("mine", "", "1"))
	runFor(t, h, func() bool { return h.api.object("configmaps/default/mine") != nil })
	if got := h.api.applied(); len(got) != 1 {
		t.Errorf("applied %v, want only mine", got)
	}
	for _, name := range []string{"local-storage.yaml", "extra.yaml"} {
		if _, err := os.Stat(filepath.Join(h.dir, name)); err == nil {
			t.Errorf("%s is in the manifest dir", name)
		}
	}
	if !strings.Contains(h.logs.String(), `msg="--disable names no built-in manifest" name=traefik builtIn=extra,local-storage`) {
		t.Errorf("unknown --disable name not reported:\n%s", h.logs)
	}

	// An edited copy of a disabled built-in is the user's file: kept and
	// applied.
	h2 := newHarness(t, builtIns(), "local-storage")
	h2.write(t, "local-storage.yaml", "# mine now\n"+string(builtIns()["local-storage.yaml"].Data))
	runFor(t, h2, func() bool { return h2.api.object("storageclasses//local-path") != nil })
}

// runFor runs the deployer until done reports true, then stops it.
func runFor(t *testing.T, h *harness, done func() bool) {
	t.Helper()
	h.d.opts.PollInterval = 10 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	result := make(chan error, 1)
	go func() { result <- h.d.Run(ctx) }()
	deadline := time.Now().Add(20 * time.Second)
	for !done() {
		if time.Now().After(deadline) {
			cancel()
			<-result
			t.Fatalf("deployer did not get there; applied %v\nlogs:\n%s", h.api.applied(), h.logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-result; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func TestRunBadDirectory(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	d := New(newFakeAPI(), Options{Dir: filepath.Join(file, "manifests"), Kinds: fakeKinds})
	if err := d.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "deploy: manifest directory") {
		t.Errorf("Run = %v", err)
	}
}

// TestRunWatchesDirectory: files written after the start are applied
// through the directory's inotify watch. The re-read is set far beyond the
// test's deadline, so only the watch can deliver them.
func TestRunWatchesDirectory(t *testing.T) {
	h := newHarness(t, nil)
	h.d.opts.PollInterval = time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	result := make(chan error, 1)
	go func() { result <- h.d.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-result; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	waitUntil := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 30s; applied %v\nlogs:\n%s", what, h.api.applied(), h.logs)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	value := func() string {
		cm := h.api.object("configmaps/kube-system/watched")
		if cm == nil {
			return ""
		}
		v, _, _ := unstructured.NestedString(cm.Object, "data", "k")
		return v
	}
	waitUntil("the directory made", func() bool { _, err := os.Stat(h.dir); return err == nil })
	h.write(t, "watched.yaml", configMap("watched", "kube-system", "1"))
	waitUntil("new file applied", func() bool { return value() == "1" })
	h.write(t, "watched.yaml", configMap("watched", "kube-system", "2"))
	waitUntil("edited file applied", func() bool { return value() == "2" })
}
