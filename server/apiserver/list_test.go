package apiserver_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/orch-dev/orch/server/apiserver"
	"github.com/orch-dev/orch/store"
)

// createConfigMaps creates n ConfigMaps cm-0000… in namespace default over
// the API, every third labelled third=yes.
func createConfigMaps(t *testing.T, ts *testServer, n int) {
	t.Helper()
	var wg sync.WaitGroup
	var failed atomic.Value
	next := make(chan int)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				labels := ""
				if i%3 == 0 {
					labels = `,"labels":{"third":"yes"}`
				}
				body := fmt.Sprintf(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cm-%04d"%s},"data":{"i":"%d"}}`, i, labels, i)
				resp, err := http.Post(ts.URL+"/api/v1/namespaces/default/configmaps", "application/json", strings.NewReader(body))
				if err != nil {
					failed.Store(err)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusCreated {
					failed.Store(fmt.Errorf("create cm-%04d: %s", i, resp.Status))
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		t.Fatal(err)
	}
}

func getConfigMapList(t *testing.T, ts *testServer, query string) (*corev1.ConfigMapList, error) {
	t.Helper()
	resp, err := http.Get(ts.URL + "/api/v1/namespaces/default/configmaps" + query)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s %s", query, resp.Status, data)
	}
	list := &corev1.ConfigMapList{}
	if err := json.Unmarshal(data, list); err != nil {
		return nil, fmt.Errorf("GET %s: %w", query, err)
	}
	return list, nil
}

// TestListLargerThanOneChunk: a LIST without limit is read from the store
// in chunks; the chunks together are one consistent list, at the revision
// asked for, with selectors applied across chunk boundaries.
func TestListLargerThanOneChunk(t *testing.T) {
	ts := startServer(t)
	const n = 1234 // two full chunks and a partial one
	createConfigMaps(t, ts, n)

	names := func(list *corev1.ConfigMapList) []string {
		var out []string
		for _, cm := range list.Items {
			if strings.HasPrefix(cm.Name, "cm-") {
				out = append(out, cm.Name)
			}
		}
		return out
	}
	before, err := getConfigMapList(t, ts, "")
	if err != nil {
		t.Fatal(err)
	}
	if got := names(before); len(got) != n || got[0] != "cm-0000" || got[n-1] != fmt.Sprintf("cm-%04d", n-1) {
		t.Fatalf("list has %d ConfigMaps (%v…), want %d in name order", len(got), got[:min(3, len(got))], n)
	}
	for _, cm := range before.Items {
		if cm.ResourceVersion == "" || cm.UID == "" {
			t.Fatalf("%s served without resourceVersion or uid", cm.Name)
		}
	}

	// Change objects in the first and the last chunk, then read the list
	// as it was: every chunk must show the old state.
	for _, name := range []string{"cm-0001", "cm-1200"} {
		req, _ := http.NewRequest(http.MethodDelete, ts.URL+"/api/v1/namespaces/default/configmaps/"+name, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	after, err := getConfigMapList(t, ts, "")
	if err != nil {
		t.Fatal(err)
	}
	if got := len(names(after)); got != n-2 {
		t.Errorf("after two deletes the list has %d ConfigMaps, want %d", got, n-2)
	}
	exact, err := getConfigMapList(t, ts, "?resourceVersionMatch=Exact&resourceVersion="+before.ResourceVersion)
	if err != nil {
		t.Fatal(err)
	}
	if exact.ResourceVersion != before.ResourceVersion || strings.Join(names(exact), ",") != strings.Join(names(before), ",") {
		t.Errorf("list at revision %s: rv %s, %d ConfigMaps; want the %d read then", before.ResourceVersion, exact.ResourceVersion, len(names(exact)), n)
	}

	third, err := getConfigMapList(t, ts, "?labelSelector=third%3Dyes")
	if err != nil {
		t.Fatal(err)
	}
	want := 0
	for i := 0; i < n; i++ {
		if i%3 == 0 && i != 1200 {
			want++
		}
	}
	if got := len(third.Items); got != want {
		t.Errorf("labelSelector third=yes: %d ConfigMaps, want %d", got, want)
	}
	fields, err := getConfigMapList(t, ts, "?fieldSelector=metadata.name%3Dcm-1233")
	if err != nil {
		t.Fatal(err)
	}
	if len(fields.Items) != 1 || fields.Items[0].Data["i"] != "1233" {
		t.Errorf("fieldSelector metadata.name=cm-1233: %+v", fields.Items)
	}
}

// compactingStore fails every List that continues a listing (Start set)
// with ErrCompacted, as the store does once its history no longer reaches
// back to the list's revision.
type compactingStore struct {
	store.Store
	armed atomic.Bool
}

func (s *compactingStore) List(ctx context.Context, prefix string, opts store.ListOptions) (*store.ListResult, error) {
	if s.armed.Load() && opts.Start != "" {
		return nil, store.ErrCompacted
	}
	return s.Store.List(ctx, prefix, opts)
}

// TestListCutOffWhenHistoryIsGone: a streamed LIST whose later chunk can no
// longer be read consistently ends with a broken response, never with a
// well-formed but incomplete list.
func TestListCutOffWhenHistoryIsGone(t *testing.T) {
	cs := &compactingStore{}
	ts := startServer(t, func(c *apiserver.Config) { cs.Store = c.Store; c.Store = cs })
	createConfigMaps(t, ts, 600)
	cs.armed.Store(true)
	if list, err := getConfigMapList(t, ts, ""); err == nil {
		t.Fatalf("got a list of %d items, want a broken response", len(list.Items))
	}
	// One chunk needs no history: a short list is still served.
	resp, err := http.Get(ts.URL + "/api/v1/namespaces")
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	var namespaces corev1.NamespaceList
	if err != nil || json.Unmarshal(data, &namespaces) != nil || len(namespaces.Items) < 4 {
		t.Fatalf("short list: %v %s", err, data)
	}
	if _, err := getConfigMapList(t, ts, "?limit=10"); err != nil {
		t.Fatalf("first page of a paged list: %v", err)
	}
}
