package nodeapi

import (
	"net/url"
	"reflect"
	"testing"
	"time"
)

func ptr[T any](v T) *T { return &v }

func TestLogOptionsRoundTrip(t *testing.T) {
	since := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, o := range []LogOptions{
		{},
		{Follow: true, Previous: true, Timestamps: true, SinceSeconds: ptr(int64(30)), TailLines: ptr(int64(0)), LimitBytes: ptr(int64(1))},
		{SinceTime: &since, TailLines: ptr(int64(10))},
	} {
		got, err := ParseLogOptions(o.Query())
		if err != nil {
			t.Fatalf("ParseLogOptions(%v): %v", o.Query(), err)
		}
		if !reflect.DeepEqual(got, o) {
			t.Errorf("round trip of %+v gave %+v", o, got)
		}
	}
}

func TestParseLogOptionsErrors(t *testing.T) {
	for _, q := range []string{
		"follow=yes please",
		"tailLines=-1",
		"tailLines=ten",
		"sinceSeconds=0",
		"limitBytes=0",
		"sinceTime=yesterday",
		"sinceSeconds=5&sinceTime=2026-01-01T00:00:00Z",
	} {
		v, _ := url.ParseQuery(q)
		if _, err := ParseLogOptions(v); err == nil {
			t.Errorf("ParseLogOptions(%q) accepted", q)
		}
	}
}

func TestContainerLogsPathEscapes(t *testing.T) {
	if got, want := ContainerLogsPath("ns", "a b", "c/d"), "/containerLogs/ns/a%20b/c%2Fd"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
