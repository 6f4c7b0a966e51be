package metrics

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestParseRequestInfo(t *testing.T) {
	tests := []struct {
		method, url, contentType string
		want                     RequestInfo
	}{
		{"GET", "/api/v1/namespaces/default/pods", "", RequestInfo{Verb: "LIST", Version: "v1", Resource: "pods"}},
		{"GET", "/api/v1/namespaces/default/pods/web-0", "", RequestInfo{Verb: "GET", Version: "v1", Resource: "pods"}},
		{"GET", "/api/v1/pods?watch=true&resourceVersion=5", "", RequestInfo{Verb: "WATCH", Version: "v1", Resource: "pods", LongRunning: true}},
		{"GET", "/api/v1/watch/namespaces/default/pods", "", RequestInfo{Verb: "WATCH", Version: "v1", Resource: "pods", LongRunning: true}},
		{"GET", "/apis/apps/v1/namespaces/ns/deployments/d/scale", "", RequestInfo{Verb: "GET", Group: "apps", Version: "v1", Resource: "deployments", Subresource: "scale"}},
		{"PUT", "/apis/apps/v1/namespaces/ns/deployments/d/status", "", RequestInfo{Verb: "UPDATE", Group: "apps", Version: "v1", Resource: "deployments", Subresource: "status"}},
		{"POST", "/api/v1/namespaces/ns/configmaps", "", RequestInfo{Verb: "CREATE", Version: "v1", Resource: "configmaps"}},
		{"POST", "/api/v1/namespaces/ns/pods/p/eviction", "", RequestInfo{Verb: "CREATE", Version: "v1", Resource: "pods", Subresource: "eviction"}},
		{"POST", "/api/v1/namespaces/ns/pods/p/exec?command=sh", "", RequestInfo{Verb: "CONNECT", Version: "v1", Resource: "pods", Subresource: "exec", LongRunning: true}},
		{"GET", "/api/v1/namespaces/ns/pods/p/log?follow=true", "", RequestInfo{Verb: "GET", Version: "v1", Resource: "pods", Subresource: "log", LongRunning: true}},
		{"GET", "/api/v1/namespaces/ns/pods/p/log", "", RequestInfo{Verb: "GET", Version: "v1", Resource: "pods", Subresource: "log"}},
		{"PATCH", "/api/v1/nodes/n1/status", "application/strategic-merge-patch+json", RequestInfo{Verb: "PATCH", Version: "v1", Resource: "nodes", Subresource: "status"}},
		{"PATCH", "/api/v1/namespaces/ns/configmaps/c?fieldManager=kubectl", "application/apply-patch+yaml", RequestInfo{Verb: "APPLY", Version: "v1", Resource: "configmaps"}},
		{"DELETE", "/api/v1/namespaces/ns/pods/p", "", RequestInfo{Verb: "DELETE", Version: "v1", Resource: "pods"}},
		{"DELETE", "/api/v1/namespaces/ns/pods", "", RequestInfo{Verb: "DELETECOLLECTION", Version: "v1", Resource: "pods"}},
		// The namespaces resource itself and its subresources.
		{"GET", "/api/v1/namespaces", "", RequestInfo{Verb: "LIST", Version: "v1", Resource: "namespaces"}},
		{"GET", "/api/v1/namespaces/kube-system", "", RequestInfo{Verb: "GET", Version: "v1", Resource: "namespaces"}},
		{"PUT", "/api/v1/namespaces/kube-system/finalize", "", RequestInfo{Verb: "UPDATE", Version: "v1", Resource: "namespaces", Subresource: "finalize"}},
		{"PUT", "/api/v1/namespaces/kube-system/status", "", RequestInfo{Verb: "UPDATE", Version: "v1", Resource: "namespaces", Subresource: "status"}},
		// Discovery and non-resource paths: the method is the verb.
		{"GET", "/api/v1", "", RequestInfo{Verb: "GET", Version: "v1"}},
		{"GET", "/apis/apps/v1/", "", RequestInfo{Verb: "GET", Group: "apps", Version: "v1"}},
		{"GET", "/apis/apps", "", RequestInfo{Verb: "GET"}},
		{"GET", "/version", "", RequestInfo{Verb: "GET"}},
		{"GET", "/openapi/v3/apis/apps/v1", "", RequestInfo{Verb: "GET"}},
		{"GET", "/", "", RequestInfo{Verb: "GET"}},
		{"GET", "//api//v1///pods", "", RequestInfo{Verb: "LIST", Version: "v1", Resource: "pods"}},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.url, func(t *testing.T) {
			r := httptest.NewRequest(tc.method, tc.url, nil)
			if tc.contentType != "" {
				r.Header.Set("Content-Type", tc.contentType)
			}
			if got := ParseRequestInfo(r); got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestInstrumentHandler(t *testing.T) {
	reg := NewRegistry()
	watchStarted := make(chan struct{})
	releaseWatch := make(chan struct{})
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Query().Get("watch") == "true":
			w.(http.Flusher).Flush() // watches must keep flushing through the wrapper
			close(watchStarted)
			<-releaseWatch
		case strings.HasSuffix(r.URL.Path, "/missing"):
			http.Error(w, "not found", http.StatusNotFound)
		case strings.HasSuffix(r.URL.Path, "/panics"):
			panic(http.ErrAbortHandler)
		case r.Method == http.MethodPost:
			w.WriteHeader(http.StatusCreated)
		default:
			io.WriteString(w, "ok")
		}
	})
	srv := httptest.NewServer(InstrumentHandler(reg, next))
	defer srv.Close()
	do := func(method, path string) {
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}

	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		do("GET", "/api/v1/pods?watch=true")
	}()
	<-watchStarted
	if got := scrapeLine(t, reg, `apiserver_longrunning_requests{verb="WATCH",group="",version="v1",resource="pods",subresource=""}`); got != "1" {
		t.Errorf("long-running gauge during the watch = %q, want 1", got)
	}
	close(releaseWatch)
	<-watchDone

	do("GET", "/api/v1/namespaces/default/pods")
	do("GET", "/api/v1/namespaces/default/pods")
	do("GET", "/api/v1/namespaces/default/pods/missing")
	do("POST", "/apis/apps/v1/namespaces/default/deployments")
	// POST: the client retries an idempotent request on a dropped connection.
	do("POST", "/api/v1/namespaces/default/pods/panics")

	for line, want := range map[string]string{
		`apiserver_request_total{verb="LIST",group="",version="v1",resource="pods",subresource="",code="200"}`:              "2",
		`apiserver_request_total{verb="GET",group="",version="v1",resource="pods",subresource="",code="404"}`:               "1",
		`apiserver_request_total{verb="CREATE",group="",version="v1",resource="pods",subresource="",code="500"}`:            "1",
		`apiserver_request_total{verb="CREATE",group="apps",version="v1",resource="deployments",subresource="",code="201"}`: "1",
		`apiserver_request_total{verb="WATCH",group="",version="v1",resource="pods",subresource="",code="200"}`:             "1",
		`apiserver_request_duration_seconds_count{verb="LIST",group="",version="v1",resource="pods",subresource=""}`:        "2",
		`apiserver_longrunning_requests{verb="WATCH",group="",version="v1",resource="pods",subresource=""}`:                 "0",
	} {
		if got := scrapeLine(t, reg, line); got != want {
			t.Errorf("%s = %q, want %q", line, got, want)
		}
	}
	if out := output(t, reg); strings.Contains(out, `apiserver_request_duration_seconds_count{verb="WATCH"`) {
		t.Errorf("a watch went into the latency histogram:\n%s", out)
	}
}

// scrapeLine returns the value of the series named by its line prefix.
func scrapeLine(t *testing.T, reg *Registry, series string) string {
	t.Helper()
	for _, l := range strings.Split(output(t, reg), "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			return v
		}
	}
	return ""
}

func TestInstrumentHandlerHijack(t *testing.T) {
	reg := NewRegistry()
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, ok := w.(http.Hijacker)
		if !ok {
			t.Error("the wrapper hides http.Hijacker on HTTP/1.1")
			return
		}
		conn, brw, err := h.Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n")
		brw.Flush()
	})
	srv := httptest.NewServer(InstrumentHandler(reg, next))
	defer srv.Close()
	req, _ := http.NewRequest("POST", srv.URL+"/api/v1/namespaces/ns/pods/p/exec", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "test")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// The handler's deferred bookkeeping runs after the response is sent.
	series := `apiserver_request_total{verb="CONNECT",group="",version="v1",resource="pods",subresource="exec",code="101"}`
	deadline := time.Now().Add(5 * time.Second)
	for scrapeLine(t, reg, series) != "1" {
		if time.Now().After(deadline) {
			t.Fatalf("%s missing:\n%s", series, output(t, reg))
		}
		time.Sleep(10 * time.Millisecond)
	}

	// An HTTP/2-like writer that cannot hijack must not claim to.
	rec := httptest.NewRecorder()
	InstrumentHandler(reg, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := w.(http.Hijacker); ok {
			t.Error("the wrapper claims http.Hijacker over a writer without it")
		}
		if http.NewResponseController(w).Flush() != nil {
			t.Error("http.ResponseController cannot flush through the wrapper")
		}
	})).ServeHTTP(rec, httptest.NewRequest("GET", "/version", nil))
}
