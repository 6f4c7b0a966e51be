package apiserver_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// jsonListFixtures are objects whose Table rows and metadata exercise the
// JSON LIST writers: ConfigMaps and Secrets (rows from a copy without
// their values), ServiceAccounts, Pods and Deployments (rows from a copy
// without managedFields), v2 HorizontalPodAutoscalers listed as v1 and
// events.k8s.io Events (served in another version than stored).
var jsonListFixtures = []struct{ path, body string }{
	{"/api/v1/namespaces/default/configmaps", `{"metadata":{"name":"a-plain"},"data":{"k":"v"}}`},
	{"/api/v1/namespaces/default/configmaps", `{"metadata":{"name":"b-labelled","labels":{"tier":"web","x":"y"},"annotations":{"odd":"}\"{\\ \"metadata\":{ ]["}},"data":{"one":"1","two":"{\"nested\":[1,2]}","three":"\\\"q\\\""},"binaryData":{"bin":"AAEC"}}`},
	{"/api/v1/namespaces/default/configmaps", `{"metadata":{"name":"c-empty","labels":{"tier":"db"}}}`},
	{"/api/v1/namespaces/default/configmaps", `{"metadata":{"name":"d-binary","labels":{"tier":"web"}},"binaryData":{"a":"AA==","b":"AQ=="},"immutable":true}`},
	{"/api/v1/namespaces/other/configmaps", `{"metadata":{"name":"e-other","labels":{"tier":"web"}},"data":{"k":"v"}}`},
	{"/api/v1/namespaces/default/secrets", `{"metadata":{"name":"s-opaque","labels":{"tier":"web"}},"data":{"a":"YQ==","b":"Yg=="},"stringData":{"c":"see"}}`},
	{"/api/v1/namespaces/default/secrets", `{"metadata":{"name":"s-empty"},"type":"Opaque"}`},
	{"/api/v1/namespaces/default/secrets", `{"metadata":{"name":"s-docker"},"type":"kubernetes.io/dockerconfigjson","data":{".dockerconfigjson":"e30="}}`},
	{"/api/v1/namespaces/default/serviceaccounts", `{"metadata":{"name":"sa-one","labels":{"tier":"web"}},"secrets":[{"name":"x"}]}`},
	{"/api/v1/namespaces/default/pods", `{"metadata":{"name":"pod-a","labels":{"tier":"web"}},"spec":{"nodeName":"node-a","containers":[{"name":"c","image":"busybox:1.36"},{"name":"d","image":"busybox:1.36"}]}}`},
	{"/apis/apps/v1/namespaces/default/deployments", `{"metadata":{"name":"web","labels":{"tier":"web"}},"spec":{"replicas":2,"selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"c","image":"busybox:1.36"}]}}}}`},
	{"/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers", `{"metadata":{"name":"hpa","labels":{"tier":"web"}},"spec":{"scaleTargetRef":{"apiVersion":"apps/v1","kind":"Deployment","name":"web"},"maxReplicas":3,"metrics":[{"type":"Resource","resource":{"name":"cpu","target":{"type":"Utilization","averageUtilization":50}}}]}}`},
	{"/apis/events.k8s.io/v1/namespaces/default/events", `{"metadata":{"name":"ev"},"eventTime":"2026-01-02T03:04:05.000000Z","reportingController":"test","reportingInstance":"test-1","action":"Testing","reason":"Tested","type":"Normal","regarding":{"kind":"Pod","namespace":"default","name":"p"},"note":"hello"}`},
}

// TestJSONListsMatchDecodedPath: a LIST answered as a JSON Table or
// PartialObjectMetadataList is written from the stored bytes; the same
// LIST asked for in YAML is encoded from decoded objects (toTable,
// partialObjectMetadata). Both must carry the same document — rows,
// cells, metadata, list metadata and continue tokens — for every
// includeObject, selector and page.
func TestJSONListsMatchDecodedPath(t *testing.T) {
	ts := startServer(t)
	post(t, ts, "/api/v1/namespaces", `{"metadata":{"name":"other"}}`)
	for _, f := range jsonListFixtures {
		post(t, ts, f.path, f.body)
	}

	lists := []string{
		"/api/v1/namespaces/default/configmaps",
		"/api/v1/configmaps",
		"/api/v1/namespaces/default/secrets",
		"/api/v1/namespaces/default/serviceaccounts",
		"/api/v1/namespaces/default/pods",
		"/apis/apps/v1/deployments",
		"/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers",
		"/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers",
		"/apis/events.k8s.io/v1/namespaces/default/events",
		"/api/v1/events",
		"/api/v1/namespaces",
	}
	queries := []url.Values{
		{},
		{"includeObject": {"None"}},
		{"includeObject": {"Object"}},
		{"labelSelector": {"tier=web"}},
		{"labelSelector": {"tier in (web,db)"}, "includeObject": {"Object"}},
		{"fieldSelector": {"metadata.name=b-labelled"}},
		{"fieldSelector": {"metadata.namespace=other"}},
		{"fieldSelector": {"type=Opaque"}},
		{"limit": {"2"}},
		{"limit": {"1"}, "labelSelector": {"tier=web"}},
	}
	transforms := []string{"as=Table;g=meta.k8s.io;v=v1", "as=PartialObjectMetadataList;g=meta.k8s.io;v=v1", "as=PartialObjectMetadata;g=meta.k8s.io;v=v1"}
	compared := 0
	for _, path := range lists {
		for _, q := range queries {
			for _, as := range transforms {
				// Follow every page: the continue token of a page, and the
				// page it leads to, must be the same on both paths.
				for query := q.Encode(); ; {
					code, jsonDoc := getDoc(t, ts.URL+path+"?"+query, "application/json;"+as)
					yamlCode, yamlDoc := getDoc(t, ts.URL+path+"?"+query, "application/yaml;"+as)
					if code != yamlCode {
						t.Fatalf("GET %s?%s as %s: JSON %d, YAML %d", path, query, as, code, yamlCode)
					}
					if code != http.StatusOK {
						break // e.g. a field selector the kind does not support: same Status both ways
					}
					if !reflect.DeepEqual(jsonDoc, yamlDoc) {
						j, _ := json.MarshalIndent(jsonDoc, "", " ")
						y, _ := json.MarshalIndent(yamlDoc, "", " ")
						t.Fatalf("GET %s?%s as %s differs:\nJSON path: %s\ndecoded path: %s", path, query, as, j, y)
					}
					compared++
					cont, _ := jsonDoc["metadata"].(map[string]interface{})["continue"].(string)
					if cont == "" {
						break
					}
					next := url.Values{}
					for k, v := range q {
						next[k] = v
					}
					next.Set("continue", cont)
					query = next.Encode()
				}
			}
		}
	}
	t.Logf("%d responses compared", compared)

	// What the JSON path writes for a row, in full: the ConfigMap's cells
	// count data and binaryData keys, and its metadata is the stored one.
	_, doc := getDoc(t, ts.URL+"/api/v1/namespaces/default/configmaps?fieldSelector=metadata.name%3Db-labelled", "application/json;as=Table;g=meta.k8s.io;v=v1")
	rows := doc["rows"].([]interface{})
	if len(rows) != 1 {
		t.Fatalf("rows: %v", rows)
	}
	row := rows[0].(map[string]interface{})
	if cells := row["cells"].([]interface{}); cells[0] != "b-labelled" || cells[1] != float64(4) {
		t.Errorf("cells %v, want [b-labelled 4 <age>]", cells)
	}
	obj := row["object"].(map[string]interface{})
	md := obj["metadata"].(map[string]interface{})
	if obj["kind"] != "PartialObjectMetadata" || obj["apiVersion"] != "meta.k8s.io/v1" || md["resourceVersion"] == "" || md["uid"] == "" ||
		md["annotations"].(map[string]interface{})["odd"] != `}"{\ "metadata":{ ][` || md["managedFields"] == nil {
		t.Errorf("row object %v", obj)
	}
}

func post(t *testing.T, ts *testServer, path, body string) {
	t.Helper()
	resp, err := http.Post(ts.URL+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST %s: %s %s", path, resp.Status, data)
	}
}

// getDoc GETs u with the Accept header and returns the status and the
// body (JSON or YAML) as a generic document, with the cells of Age columns
// blanked: they are relative to the time of the request.
func getDoc(t *testing.T, u, accept string) (int, map[string]interface{}) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Accept", accept)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasPrefix(accept, "application/yaml") && resp.StatusCode == http.StatusOK {
		if data, err = yaml.YAMLToJSON(data); err != nil {
			t.Fatalf("GET %s: %v", u, err)
		}
	}
	var doc map[string]interface{}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("GET %s (%s): %v\n%s", u, accept, err, data)
	}
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, doc
	}
	// A transformed JSON answer names its transformation as it was asked.
	want := accept
	if strings.HasPrefix(accept, "application/yaml") {
		want = "application/yaml"
	} else if !strings.Contains(accept, ";as=") {
		want = "application/json"
	}
	if got := resp.Header.Get("Content-Type"); got != want {
		t.Errorf("GET %s: Content-Type %q, want %q", u, got, want)
	}
	cols, _ := doc["columnDefinitions"].([]interface{})
	rows, _ := doc["rows"].([]interface{})
	for i, c := range cols {
		if c.(map[string]interface{})["name"] != "Age" {
			continue
		}
		for _, r := range rows {
			r.(map[string]interface{})["cells"].([]interface{})[i] = fmt.Sprintf("<age of column %d>", i)
		}
	}
	return resp.StatusCode, doc
}

// TestListRemainingItemCount: a page cut by limit tells how many objects
// follow it, as upstream does, only when no selector filters them; the
// Table of the same page carries the same list metadata.
func TestListRemainingItemCount(t *testing.T) {
	ts := startServer(t)
	createConfigMaps(t, ts, 7) // cm-0000 … cm-0006, cm-0000/0003/0006 labelled third=yes
	for _, tc := range []struct {
		query     string
		items     int
		remaining interface{} // float64, or nil when absent
	}{
		{"limit=2", 2, float64(5)},
		{"limit=6", 6, float64(1)},
		{"limit=7", 7, nil},
		{"limit=1&labelSelector=third%3Dyes", 1, nil},
		{"limit=1&fieldSelector=metadata.name%21%3Dcm-0000", 1, nil},
	} {
		for _, accept := range []string{"application/json", "application/json;as=Table;g=meta.k8s.io;v=v1"} {
			_, doc := getDoc(t, ts.URL+"/api/v1/namespaces/default/configmaps?"+tc.query, accept)
			md := doc["metadata"].(map[string]interface{})
			items, _ := doc["items"].([]interface{})
			if rows, ok := doc["rows"].([]interface{}); ok {
				items = rows
			}
			if len(items) != tc.items || md["remainingItemCount"] != tc.remaining {
				t.Errorf("%s as %s: %d items, remainingItemCount %v; want %d, %v", tc.query, accept, len(items), md["remainingItemCount"], tc.items, tc.remaining)
			}
		}
	}
}
