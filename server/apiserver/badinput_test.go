package apiserver_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestBadInput sends malformed and hostile requests: each gets a
// metav1.Status with the right code and reason, and nothing stored changes.
func TestBadInput(t *testing.T) {
	ts := startServer(t)
	do(t, ts, "POST", "/api/v1/namespaces/default/configmaps", "application/json",
		`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"keep"},"data":{"a":"1"}}`, 201)
	before := do(t, ts, "GET", "/api/v1/namespaces/default/configmaps/keep", "", "", 200)

	huge := `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"huge"},"data":{"a":"` + strings.Repeat("x", 4<<20) + `"}}`
	cases := []struct {
		name, method, path, contentType, body string
		code                                  int
		reason                                metav1.StatusReason
		message                               string
	}{
		{"malformed json", "POST", "/api/v1/namespaces/default/configmaps", "application/json", `{"apiVersion":"v1",`, 400, metav1.StatusReasonBadRequest, "cannot be handled as a ConfigMap"},
		{"malformed yaml", "POST", "/api/v1/namespaces/default/configmaps", "application/yaml", "apiVersion: v1\nkind: [", 400, metav1.StatusReasonBadRequest, "cannot be handled as a ConfigMap"},
		{"malformed protobuf", "POST", "/api/v1/namespaces/default/configmaps", "application/vnd.kubernetes.protobuf", "k8s\x00\x0a\x99garbage", 400, metav1.StatusReasonBadRequest, "cannot be handled as a ConfigMap"},
		{"unknown field strict", "POST", "/api/v1/namespaces/default/configmaps?fieldValidation=Strict", "application/json", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"},"bogus":1}`, 400, metav1.StatusReasonBadRequest, `unknown field "bogus"`},
		{"wrong kind", "POST", "/api/v1/namespaces/default/configmaps", "application/json", `{"apiVersion":"v1","kind":"Secret","metadata":{"name":"x"}}`, 400, metav1.StatusReasonBadRequest, "does not match the expected kind"},
		{"wrong version", "POST", "/api/v1/namespaces/default/configmaps", "application/json", `{"apiVersion":"apps/v1","kind":"ConfigMap","metadata":{"name":"x"}}`, 400, metav1.StatusReasonBadRequest, "does not match the expected API version"},
		{"huge body", "POST", "/api/v1/namespaces/default/configmaps", "application/json", huge, 413, metav1.StatusReasonRequestEntityTooLarge, "limit is"},
		{"bad name", "POST", "/api/v1/namespaces/default/configmaps", "application/json", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"Not_A_Name"}}`, 422, metav1.StatusReasonInvalid, "metadata.name"},
		{"no name", "POST", "/api/v1/namespaces/default/configmaps", "application/json", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{}}`, 422, metav1.StatusReasonInvalid, "name or generateName is required"},
		{"bad label selector", "GET", "/api/v1/namespaces/default/configmaps?labelSelector=a%3D%3D%3Db", "", "", 400, metav1.StatusReasonBadRequest, "unable to parse requirement"},
		{"bad field selector", "GET", "/api/v1/namespaces/default/configmaps?fieldSelector=spec.nope%3Dx", "", "", 400, metav1.StatusReasonBadRequest, "field label not supported"},
		{"bad continue", "GET", "/api/v1/namespaces/default/configmaps?limit=1&continue=garbage", "", "", 400, metav1.StatusReasonBadRequest, "continue"},
		{"unsupported media type", "POST", "/api/v1/namespaces/default/configmaps", "text/html", `<html>`, 415, metav1.StatusReasonUnsupportedMediaType, "unknown format"},
		{"unknown resource", "GET", "/api/v1/namespaces/default/nothings", "", "", 404, metav1.StatusReasonNotFound, "could not find the requested resource"},
		{"missing namespace", "POST", "/api/v1/namespaces/nowhere/configmaps", "application/json", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"}}`, 404, metav1.StatusReasonNotFound, `namespaces "nowhere" not found`},
		{"namespace mismatch", "POST", "/api/v1/namespaces/default/configmaps", "application/json", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x","namespace":"kube-system"}}`, 400, metav1.StatusReasonBadRequest, "does not match the namespace"},
		{"duplicate", "POST", "/api/v1/namespaces/default/configmaps", "application/json", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"keep"}}`, 409, metav1.StatusReasonAlreadyExists, `configmaps "keep" already exists`},
		{"stale update", "PUT", "/api/v1/namespaces/default/configmaps/keep", "application/json", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"keep","resourceVersion":"1"},"data":{"a":"lost"}}`, 409, metav1.StatusReasonConflict, "the object has been modified"},
		{"bad json patch", "PATCH", "/api/v1/namespaces/default/configmaps/keep", "application/json-patch+json", `[{"op":"explode"}]`, 0, "", ""},
		{"bad merge patch", "PATCH", "/api/v1/namespaces/default/configmaps/keep", "application/merge-patch+json", `{`, 0, "", ""},
		{"bad patch type", "PATCH", "/api/v1/namespaces/default/configmaps/keep", "application/x-nope", `{}`, 415, metav1.StatusReasonUnsupportedMediaType, ""},
		{"bad dryRun", "POST", "/api/v1/namespaces/default/configmaps?dryRun=Some", "application/json", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"}}`, 400, metav1.StatusReasonBadRequest, "dryRun"},
		{"bad fieldValidation", "POST", "/api/v1/namespaces/default/configmaps?fieldValidation=Maybe", "application/json", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"}}`, 400, metav1.StatusReasonBadRequest, "fieldValidation"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body := do(t, ts, tc.method, tc.path, tc.contentType, tc.body, tc.code)
			var st metav1.Status
			if err := json.Unmarshal(body, &st); err != nil || st.Kind != "Status" {
				t.Fatalf("not a Status: %v %s", err, body)
			}
			if tc.code == 0 {
				if st.Code < 400 || st.Code >= 500 {
					t.Errorf("code %d, want a 4xx: %s", st.Code, st.Message)
				}
				return
			}
			if tc.reason != "" && st.Reason != tc.reason {
				t.Errorf("reason %q, want %q (%s)", st.Reason, tc.reason, st.Message)
			}
			if !strings.Contains(st.Message, tc.message) {
				t.Errorf("message %q does not contain %q", st.Message, tc.message)
			}
		})
	}
	after := do(t, ts, "GET", "/api/v1/namespaces/default/configmaps/keep", "", "", 200)
	if !bytes.Equal(before, after) {
		t.Errorf("stored object changed:\nbefore %s\nafter  %s", before, after)
	}
	do(t, ts, "GET", "/readyz", "", "", 200)
}

// do sends a request and checks the status code (0: any 4xx).
func do(t *testing.T, ts *testServer, method, path, contentType, body string, code int) []byte {
	t.Helper()
	req, err := http.NewRequest(method, ts.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if code != 0 && resp.StatusCode != code {
		t.Errorf("%s %s: status %d, want %d: %s", method, path, resp.StatusCode, code, data)
	}
	if code == 0 && (resp.StatusCode < 400 || resp.StatusCode >= 500) {
		t.Errorf("%s %s: status %d, want 4xx: %s", method, path, resp.StatusCode, data)
	}
	return data
}
