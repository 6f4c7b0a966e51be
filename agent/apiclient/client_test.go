package apiclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

func TestURLs(t *testing.T) {
	c, err := New("https://h:6443/prefix", http.DefaultClient, "")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		res           Resource
		ns, name, sub string
		want          string
	}{
		{Nodes, "", "", "", "https://h:6443/prefix/api/v1/nodes"},
		{Nodes, "ignored", "n1", "status", "https://h:6443/prefix/api/v1/nodes/n1/status"},
		{Pods, "", "", "", "https://h:6443/prefix/api/v1/pods"},
		{Pods, "ns", "p", "status", "https://h:6443/prefix/api/v1/namespaces/ns/pods/p/status"},
		{Leases, "kube-node-lease", "n1", "", "https://h:6443/prefix/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1"},
	}
	for _, tt := range tests {
		if got := c.urlFor(tt.res, tt.ns, tt.name, tt.sub, nil); got != tt.want {
			t.Errorf("urlFor(%s %q %q %q) = %s, want %s", tt.res.Name, tt.ns, tt.name, tt.sub, got, tt.want)
		}
	}
	if _, err := New("ftp://h", http.DefaultClient, ""); err == nil {
		t.Error("ftp URL accepted")
	}
	if _, err := New("https://h", nil, ""); err == nil {
		t.Error("nil client accepted")
	}
}

func TestRequestsAndErrors(t *testing.T) {
	var last *http.Request
	var lastBody string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		last = r
		b, _ := io.ReadAll(r.Body)
		lastBody = string(b)
		switch {
		case r.URL.Path == "/api/v1/namespaces/ns/pods/missing":
			w.WriteHeader(http.StatusNotFound)
			_ = json.NewEncoder(w).Encode(metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: "Failure",
				Reason: metav1.StatusReasonNotFound, Code: 404, Message: `pods "missing" not found`})
		case r.URL.Path == "/api/v1/namespaces/ns/pods/plain":
			http.Error(w, "upstream broke", http.StatusBadGateway)
		case r.URL.Query().Get("watch") == "true":
			fmt.Fprintln(w, `{"type":"ADDED","object":{"kind":"Pod","metadata":{"name":"a","resourceVersion":"5"}}}`)
			fmt.Fprintln(w, `{"type":"ERROR","object":{"kind":"Status","code":410,"reason":"Expired","message":"too old"}}`)
		default:
			_ = json.NewEncoder(w).Encode(v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns"}})
		}
	}))
	defer srv.Close()
	c, err := New(srv.URL, srv.Client(), "orch-test")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	var pod v1.Pod
	if err := c.Get(ctx, Pods, "ns", "p", &pod); err != nil || pod.Name != "p" {
		t.Fatalf("get: %v %+v", err, pod)
	}
	if ua := last.Header.Get("User-Agent"); ua != "orch-test" {
		t.Errorf("user agent %q", ua)
	}
	err = c.Get(ctx, Pods, "ns", "missing", &pod)
	if !apierrors.IsNotFound(err) {
		t.Errorf("missing pod: %v, want NotFound", err)
	}
	err = c.Get(ctx, Pods, "ns", "plain", &pod)
	var se *apierrors.StatusError
	if !errors.As(err, &se) || se.ErrStatus.Code != http.StatusBadGateway {
		t.Errorf("plain error: %#v", err)
	}

	if err := c.Patch(ctx, Pods, "ns", "p", "status", types.MergePatchType, []byte(`{"status":{}}`), nil); err != nil {
		t.Fatal(err)
	}
	if last.Method != http.MethodPatch || last.Header.Get("Content-Type") != string(types.MergePatchType) || last.URL.Path != "/api/v1/namespaces/ns/pods/p/status" || lastBody != `{"status":{}}` {
		t.Errorf("patch request: %s %s %s %q", last.Method, last.URL.Path, last.Header.Get("Content-Type"), lastBody)
	}
	zero := int64(0)
	if err := c.Delete(ctx, Pods, "ns", "p", &metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	if last.Method != http.MethodDelete || lastBody != `{"gracePeriodSeconds":0}` {
		t.Errorf("delete request: %s %q", last.Method, lastBody)
	}
	if err := c.List(ctx, Pods, "", ListOptions{FieldSelector: "spec.nodeName=n1"}, &v1.PodList{}); err != nil {
		t.Fatal(err)
	}
	if got := last.URL.Query().Get("fieldSelector"); got != "spec.nodeName=n1" {
		t.Errorf("fieldSelector %q", got)
	}

	w, err := c.Watch(ctx, Pods, "", ListOptions{ResourceVersion: "4"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if last.URL.Query().Get("resourceVersion") != "4" || last.URL.Query().Get("allowWatchBookmarks") != "true" {
		t.Errorf("watch query %s", last.URL.RawQuery)
	}
	ev, err := w.Next()
	if err != nil || ev.Type != "ADDED" {
		t.Fatalf("first event: %+v %v", ev, err)
	}
	if _, err := w.Next(); !apierrors.IsResourceExpired(err) && !apierrors.IsGone(err) {
		t.Errorf("error event: %v, want 410", err)
	}
	if _, err := w.Next(); !errors.Is(err, io.EOF) {
		t.Errorf("end of stream: %v, want EOF", err)
	}
}
