package agent

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/orch-dev/orch/internal/nodeapi"
	"github.com/orch-dev/orch/runtime/logs"
)

var logEpoch = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// writeLog writes lines to dir/<restart>.log, one second apart from
// logEpoch, and returns the open file for appending more.
func writeLog(t *testing.T, dir string, restart int, lines ...string) *logs.File {
	t.Helper()
	var n atomic.Int64
	f, err := logs.Open(filepath.Join(dir, strconv.Itoa(restart)+".log"), logs.Options{Now: func() time.Time {
		return logEpoch.Add(time.Duration(n.Add(1)-1) * time.Second)
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	for _, l := range lines {
		if err := f.WriteLine(logs.Stdout, []byte(l), false); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

type fakeLogs struct {
	dir     string
	restart int
	running atomic.Bool
}

func (f *fakeLogs) locate(ns, pod, c string) (containerLog, error) {
	if ns != "default" || pod != "web" {
		return containerLog{}, &logRequestError{code: http.StatusNotFound, msg: `pod "` + pod + `" does not exist`}
	}
	if c != "app" {
		return containerLog{}, &logRequestError{code: http.StatusNotFound, msg: `container "` + c + `" not found in pod "` + pod + `"`}
	}
	return containerLog{dir: f.dir, restartCount: f.restart, running: f.running.Load}, nil
}

func newTestLogServer(t *testing.T, restart int) (*fakeLogs, *httptest.Server) {
	fl := &fakeLogs{dir: t.TempDir(), restart: restart}
	s := newLogServer(fl.locate)
	s.now = func() time.Time { return logEpoch.Add(10 * time.Second) }
	s.poll = 10 * time.Millisecond
	srv := httptest.NewServer(s.handler())
	t.Cleanup(srv.Close)
	return fl, srv
}

func getLogs(t *testing.T, srv *httptest.Server, path string, q string) (int, string) {
	t.Helper()
	resp, err := http.Get(srv.URL + path + "?" + q)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestContainerLogs(t *testing.T) {
	fl, srv := newTestLogServer(t, 1)
	writeLog(t, fl.dir, 0, "old 1", "old 2")
	cur := writeLog(t, fl.dir, 1, "one", "two", "three")
	// A long line split in two fragments (at 3 s), then a last full line.
	if err := cur.WriteLine(logs.Stdout, []byte("fo"), true); err != nil {
		t.Fatal(err)
	}
	if err := cur.WriteLine(logs.Stderr, []byte("ur"), false); err != nil {
		t.Fatal(err)
	}
	if err := cur.WriteLine(logs.Stdout, []byte("five"), false); err != nil {
		t.Fatal(err)
	}
	app := nodeapi.ContainerLogsPath("default", "web", "app")
	ts := func(sec int) string { return logEpoch.Add(time.Duration(sec) * time.Second).Format(timeFormatOut) }
	tests := []struct {
		name, path, query string
		code              int
		want              string
	}{
		{"all", app, "", 200, "one\ntwo\nthree\nfour\nfive\n"},
		{"tail", app, "tailLines=2", 200, "ur\nfive\n"},
		{"tail zero", app, "tailLines=0", 200, ""},
		{"tail more than there is", app, "tailLines=100", 200, "one\ntwo\nthree\nfour\nfive\n"},
		// now is epoch+10s; lines are at +0..+5 s.
		{"since", app, "sinceSeconds=8", 200, "three\nfour\nfive\n"},
		{"since time", app, "sinceTime=" + logEpoch.Add(4*time.Second).Format(time.RFC3339), 200, "ur\nfive\n"},
		{"timestamps", app, "timestamps=true&tailLines=3", 200, ts(3) + " four\n" + ts(5) + " five\n"},
		{"limit bytes", app, "limitBytes=6", 200, "one\ntw"},
		{"limit bytes exact", app, "limitBytes=4", 200, "one\n"},
		{"previous", app, "previous=true", 200, "old 1\nold 2\n"},
		{"previous with follow ends", app, "previous=true&follow=true", 200, "old 1\nold 2\n"},
		{"bad tail", app, "tailLines=-1", 400, "tailLines: must be greater than or equal to 0\n"},
		{"bad follow", app, "follow=maybe", 400, "follow: invalid value \"maybe\": want true or false\n"},
		{"since both", app, "sinceSeconds=1&sinceTime=2026-01-01T00:00:00Z", 400, "sinceSeconds and sinceTime: at most one of them may be specified\n"},
		{"no pod", nodeapi.ContainerLogsPath("default", "nope", "app"), "", 404, "pod \"nope\" does not exist\n"},
		{"no container", nodeapi.ContainerLogsPath("default", "web", "x"), "", 404, "container \"x\" not found in pod \"web\"\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, got := getLogs(t, srv, tc.path, tc.query)
			if code != tc.code || got != tc.want {
				t.Errorf("GET %s?%s = %d %q, want %d %q", tc.path, tc.query, code, got, tc.code, tc.want)
			}
		})
	}
}

func TestContainerLogsMissing(t *testing.T) {
	app := nodeapi.ContainerLogsPath("default", "web", "app")
	tests := []struct {
		name    string
		restart int
		files   []int
		query   string
		want    string
	}{
		{"previous of first instance", 0, []int{0}, "previous=true", `previous terminated container "app" in pod "web" not found`},
		{"previous file gone", 2, []int{2}, "previous=true", `previous terminated container "app" in pod "web" not found`},
		{"current not started", 1, []int{0}, "", `container "app" in pod "web" is waiting to start: ContainerCreating`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fl, srv := newTestLogServer(t, tc.restart)
			for _, r := range tc.files {
				writeLog(t, fl.dir, r, "x")
			}
			code, got := getLogs(t, srv, app, tc.query)
			if code != http.StatusBadRequest || got != tc.want+"\n" {
				t.Errorf("got %d %q, want 400 %q", code, got, tc.want)
			}
		})
	}
}

// readLines reads n lines from r within a deadline.
func readLines(t *testing.T, r *bufio.Reader, n int) []string {
	t.Helper()
	var out []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		for len(out) < n {
			l, err := r.ReadString('\n')
			if err != nil {
				return
			}
			out = append(out, strings.TrimSuffix(l, "\n"))
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out after reading %q", out)
	}
	return out
}

func TestContainerLogsFollow(t *testing.T) {
	fl, srv := newTestLogServer(t, 0)
	fl.running.Store(true)
	f := writeLog(t, fl.dir, 0, "a", "b")

	ctx, cancel := context.WithCancel(t.Context())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+nodeapi.ContainerLogsPath("default", "web", "app")+"?follow=true&tailLines=1", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	if got := readLines(t, br, 1); got[0] != "b" {
		t.Fatalf("first line %q, want b", got)
	}
	// Lines appended while following arrive as they are written.
	for _, l := range []string{"c", "d"} {
		if err := f.WriteLine(logs.Stdout, []byte(l), false); err != nil {
			t.Fatal(err)
		}
		if got := readLines(t, br, 1); got[0] != l {
			t.Fatalf("followed line %q, want %q", got, l)
		}
	}
	// The client going away ends the stream on the server.
	cancel()
	if _, err := io.ReadAll(br); err == nil {
		t.Fatal("stream still open after cancel")
	}
}

func TestContainerLogsFollowEndsWhenContainerStops(t *testing.T) {
	fl, srv := newTestLogServer(t, 0)
	fl.running.Store(true)
	f := writeLog(t, fl.dir, 0, "a")
	resp, err := http.Get(srv.URL + nodeapi.ContainerLogsPath("default", "web", "app") + "?follow=true")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	readLines(t, br, 1)
	if err := f.WriteLine(logs.Stdout, []byte("last"), false); err != nil {
		t.Fatal(err)
	}
	fl.running.Store(false)
	done := make(chan string)
	go func() { b, _ := io.ReadAll(br); done <- string(b) }()
	select {
	case rest := <-done:
		if rest != "last\n" {
			t.Errorf("after stop read %q, want %q", rest, "last\n")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("follow did not end after the container stopped")
	}
}

func TestContainerLogsFollowRotation(t *testing.T) {
	fl, srv := newTestLogServer(t, 0)
	fl.running.Store(true)
	path := filepath.Join(fl.dir, "0.log")
	// Rotate after every line or so: MaxSize is tiny.
	f, err := logs.Open(path, logs.Options{MaxSize: 40, MaxFiles: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.WriteLine(logs.Stdout, []byte("first"), false); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(srv.URL + nodeapi.ContainerLogsPath("default", "web", "app") + "?follow=true")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	readLines(t, br, 1)
	for _, l := range []string{"second", "third"} {
		if err := f.WriteLine(logs.Stdout, []byte(l), false); err != nil {
			t.Fatal(err)
		}
		if got := readLines(t, br, 1); got[0] != l {
			t.Fatalf("after rotation read %q, want %q", got, l)
		}
	}
	if _, err := os.Stat(path + ".1"); err != nil {
		t.Fatalf("log was not rotated: %v", err)
	}
}

func TestTailStart(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, []byte("a\nbb\nccc\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for n, want := range map[int64]int64{0: 9, 1: 5, 2: 2, 3: 0, 4: 0} {
		if got, err := tailStart(f, n); err != nil || got != want {
			t.Errorf("tailStart(%d) = %d, %v; want %d", n, got, err, want)
		}
	}
}
