package apiserver_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/orch-dev/orch/server/apiserver"
	"github.com/orch-dev/orch/server/registry"
	"github.com/orch-dev/orch/store/bolt"
)

// benchServer is an API server on a real bbolt store, driven in-process
// through its handler (no sockets), for CPU and allocation profiles.
type benchServer struct {
	h http.Handler
}

func startBenchServer(b *testing.B) *benchServer {
	b.Helper()
	st, err := bolt.Open(filepath.Join(b.TempDir(), "state.db"), bolt.Options{})
	if err != nil {
		b.Fatal(err)
	}
	table, err := registry.NewTable()
	if err != nil {
		b.Fatal(err)
	}
	api, err := apiserver.New(apiserver.Config{Store: st, Table: table,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- api.Run(ctx) }()
	<-api.Ready()
	b.Cleanup(func() {
		cancel()
		<-done
		_ = st.Close()
	})
	bs := &benchServer{h: api.Handler()}
	bs.must(b, "POST", "/api/v1/namespaces", "application/json", []byte(`{"metadata":{"name":"bench"}}`), "", http.StatusCreated)
	return bs
}

func (bs *benchServer) do(method, path, contentType string, body []byte, accept string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	rec := httptest.NewRecorder()
	bs.h.ServeHTTP(rec, req)
	return rec
}

func (bs *benchServer) must(b testing.TB, method, path, contentType string, body []byte, accept string, code int) *httptest.ResponseRecorder {
	rec := bs.do(method, path, contentType, body, accept)
	if rec.Code != code {
		b.Fatalf("%s %s: %d %s", method, path, rec.Code, rec.Body.String())
	}
	return rec
}

var benchValue = strings.Repeat("x", 1024)

func configMapJSON(name string) []byte {
	return []byte(fmt.Sprintf(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":%q},"data":{"v":%q}}`, name, benchValue))
}

func configMapProto(b testing.TB, name string) []byte {
	cm := &corev1.ConfigMap{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"v": benchValue}}
	var buf bytes.Buffer
	if err := protobuf.NewSerializer(scheme.Scheme, scheme.Scheme).Encode(cm, &buf); err != nil {
		b.Fatal(err)
	}
	return buf.Bytes()
}

func BenchmarkCreateConfigMapJSON(b *testing.B) {
	bs := startBenchServer(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		bs.must(b, "POST", "/api/v1/namespaces/bench/configmaps", "application/json", configMapJSON(fmt.Sprintf("cm-%d", i)), "", http.StatusCreated)
	}
}

func BenchmarkCreateConfigMapJSONParallel(b *testing.B) {
	bs := startBenchServer(b)
	var n atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(8) // 16 clients on 2 cores
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			bs.must(b, "POST", "/api/v1/namespaces/bench/configmaps", "application/json", configMapJSON(fmt.Sprintf("cm-%d", i)), "", http.StatusCreated)
		}
	})
}

func BenchmarkCreateConfigMapProtobuf(b *testing.B) {
	bs := startBenchServer(b)
	bodies := make([][]byte, b.N)
	for i := range bodies {
		bodies[i] = configMapProto(b, fmt.Sprintf("cm-%d", i))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		bs.must(b, "POST", "/api/v1/namespaces/bench/configmaps", "application/vnd.kubernetes.protobuf", bodies[i], "application/vnd.kubernetes.protobuf", http.StatusCreated)
	}
}

// listServer is shared by the LIST benchmarks: filling 10k objects takes
// longer than the measurement.
func fillConfigMaps(b *testing.B, n int) *benchServer {
	bs := startBenchServer(b)
	for i := 0; i < n; i++ {
		bs.must(b, "POST", "/api/v1/namespaces/bench/configmaps", "application/json", configMapJSON(fmt.Sprintf("cm-%05d", i)), "", http.StatusCreated)
	}
	return bs
}

func BenchmarkList10k(b *testing.B) {
	bs := fillConfigMaps(b, 10000)
	for _, c := range []struct{ name, accept, query string }{
		{"JSON", "application/json", ""},
		{"Table", "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json", "?limit=500"},
		{"TableAll", "application/json;as=Table;v=v1;g=meta.k8s.io,application/json", ""},
		{"TableObjects", "application/json;as=Table;v=v1;g=meta.k8s.io,application/json", "?limit=500&includeObject=Object"},
		{"Metadata", "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io,application/json", ""},
		{"Protobuf", "application/vnd.kubernetes.protobuf", ""},
		{"ProtobufLimit500", "application/vnd.kubernetes.protobuf", "?limit=500"},
		{"LabelSelector", "application/json", "?labelSelector=a%3Db"},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				b.SetBytes(bs.discard(b, "/api/v1/namespaces/bench/configmaps"+c.query, c.accept))
			}
		})
	}
}

// countingWriter is a ResponseWriter that keeps only the status and the
// size, so that a benchmark measures the server, not a growing buffer.
type countingWriter struct {
	h    http.Header
	code int
	n    int64
}

func (c *countingWriter) Header() http.Header { return c.h }
func (c *countingWriter) WriteHeader(code int) {
	if c.code == 0 {
		c.code = code
	}
}
func (c *countingWriter) Write(p []byte) (int, error) {
	if c.code == 0 {
		c.code = http.StatusOK
	}
	c.n += int64(len(p))
	return len(p), nil
}

func (bs *benchServer) discard(b testing.TB, path, accept string) int64 {
	req := httptest.NewRequest("GET", path, nil)
	req.Header.Set("Accept", accept)
	cw := &countingWriter{h: http.Header{}}
	bs.h.ServeHTTP(cw, req)
	if cw.code != http.StatusOK {
		b.Fatalf("GET %s: %d", path, cw.code)
	}
	return cw.n
}

func BenchmarkGetConfigMap(b *testing.B) {
	bs := fillConfigMaps(b, 100)
	for _, c := range []struct{ name, accept string }{
		{"JSON", "application/json"},
		{"Protobuf", "application/vnd.kubernetes.protobuf"},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				bs.must(b, "GET", fmt.Sprintf("/api/v1/namespaces/bench/configmaps/cm-%05d", i%100), "", nil, c.accept, http.StatusOK)
			}
		})
	}
}

func BenchmarkUpdateConfigMap(b *testing.B) {
	bs := fillConfigMaps(b, 1)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		body := []byte(fmt.Sprintf(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cm-00000"},"data":{"v":%q,"i":"%d"}}`, benchValue, i))
		bs.must(b, "PUT", "/api/v1/namespaces/bench/configmaps/cm-00000", "application/json", body, "", http.StatusOK)
	}
}

// BenchmarkCreateConfigMapDryRun is the CPU of the create path without
// the disk: decode, namespace check, validation, managed fields, response.
func BenchmarkCreateConfigMapDryRun(b *testing.B) {
	bs := startBenchServer(b)
	body := configMapJSON("cm")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		bs.must(b, "POST", "/api/v1/namespaces/bench/configmaps?dryRun=All", "application/json", body, "", http.StatusCreated)
	}
}
