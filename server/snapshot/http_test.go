package snapshot

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// bytesSnapshotter is a store whose snapshot is a fixed byte string.
type bytesSnapshotter string

func (b bytesSnapshotter) Snapshot(w io.Writer) (int64, error) {
	n, err := io.WriteString(w, string(b))
	return int64(n), err
}

func TestHandler(t *testing.T) {
	dataDir := t.TempDir()
	h := Handler(bytesSnapshotter("store"), dataDir, func() time.Time { return t0 })
	do := func(method, query string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(method, APIPath+query, nil))
		return rec
	}

	rec := do(http.MethodPost, "?name=online")
	if rec.Code != http.StatusCreated {
		t.Fatalf("POST: %d %s", rec.Code, rec.Body)
	}
	var got Info
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatalf("answer %q: %v", rec.Body, err)
	}
	want := Info{Name: "online", Path: filepath.Join(Dir(dataDir), "online-1800000000.db"), Size: 5, Time: t0, Checksum: "ok"}
	if !got.Time.Equal(want.Time) || got.Name != want.Name || got.Path != want.Path || got.Size != want.Size || got.Checksum != want.Checksum {
		t.Errorf("answer = %+v, want %+v", got, want)
	}
	if b, err := os.ReadFile(got.Path); err != nil || string(b) != "store" {
		t.Errorf("snapshot file = %q, %v", b, err)
	}

	for _, tc := range []struct {
		method, query string
		code          int
		reason        metav1.StatusReason
	}{
		{http.MethodPost, "?name=online", http.StatusConflict, metav1.StatusReasonAlreadyExists},
		{http.MethodPost, "?name=Bad/Name", http.StatusBadRequest, metav1.StatusReasonBadRequest},
		{http.MethodGet, "", http.StatusMethodNotAllowed, metav1.StatusReasonMethodNotAllowed},
	} {
		rec := do(tc.method, tc.query)
		var st metav1.Status
		if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil || rec.Code != tc.code || st.Reason != tc.reason {
			t.Errorf("%s %s = %d %q, want %d with reason %s", tc.method, tc.query, rec.Code, strings.TrimSpace(rec.Body.String()), tc.code, tc.reason)
		}
	}
}
