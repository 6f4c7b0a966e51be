package resourcemetrics

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestWriteParseRoundTrip(t *testing.T) {
	at := time.UnixMilli(1_700_000_000_123)
	in := Snapshot{
		Node: &Usage{CPUSeconds: 1234.5, MemoryBytes: 2 << 30, Time: at},
		Pods: []Pod{{Pod: PodRef{"default", "web-1"}, Usage: Usage{CPUSeconds: 3.25, MemoryBytes: 100 << 20, Time: at}}},
		Containers: []Container{
			{Pod: PodRef{"default", "web-1"}, Name: "app", Usage: Usage{CPUSeconds: 3, MemoryBytes: 90 << 20, Time: at}},
			{Pod: PodRef{"default", "web-1"}, Name: `odd"name`, Usage: Usage{CPUSeconds: 0.25, Time: at, MemoryUnread: true}},
		},
	}
	var buf bytes.Buffer
	if err := Write(&buf, in); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"# TYPE container_cpu_usage_seconds_total counter\n",
		`container_cpu_usage_seconds_total{container="app",namespace="default",pod="web-1"} 3 1700000000123` + "\n",
		"node_memory_working_set_bytes 2.147483648e+09 1700000000123\n",
		"scrape_error 0\n",
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, buf.String())
		}
	}
	out, err := Parse(&buf, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(out, in) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", out, in)
	}
}

func TestParseKubeletOutput(t *testing.T) {
	// As a kubelet 1.33 answers, with families Parse does not use.
	const text = `# HELP container_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the container in core-seconds
# TYPE container_cpu_usage_seconds_total counter
container_cpu_usage_seconds_total{container="coredns",namespace="kube-system",pod="coredns-7c65d6cfc9-x2"} 10.72 1732360000000
# HELP container_start_time_seconds [STABLE] Start time of the container since unix epoch in seconds
# TYPE container_start_time_seconds gauge
container_start_time_seconds{container="coredns",namespace="kube-system",pod="coredns-7c65d6cfc9-x2"} 1.73e+09 1732360000000
node_cpu_usage_seconds_total 100
resource_scrape_error 0
`
	now := time.UnixMilli(1_732_360_001_000)
	s, err := Parse(strings.NewReader(text), now)
	if err != nil {
		t.Fatal(err)
	}
	if s.Node == nil || s.Node.CPUSeconds != 100 || !s.Node.Time.Equal(now) || !s.Node.MemoryUnread {
		t.Errorf("node = %+v", s.Node)
	}
	if len(s.Containers) != 1 || s.Containers[0].Name != "coredns" || s.Containers[0].CPUSeconds != 10.72 {
		t.Errorf("containers = %+v", s.Containers)
	}
}

func TestParseBadInput(t *testing.T) {
	for name, text := range map[string]string{
		"no value":          "node_cpu_usage_seconds_total\n",
		"bad value":         "node_cpu_usage_seconds_total abc\n",
		"negative":          "node_memory_working_set_bytes -1\n",
		"NaN":               "node_cpu_usage_seconds_total NaN\n",
		"memory overflow":   "node_memory_working_set_bytes 1e30\n",
		"bad timestamp":     "node_cpu_usage_seconds_total 1 yesterday\n",
		"unterminated":      `pod_cpu_usage_seconds_total{namespace="a,pod="b} 1` + "\n",
		"missing pod label": `pod_cpu_usage_seconds_total{namespace="a"} 1` + "\n",
		"no container":      `container_cpu_usage_seconds_total{namespace="a",pod="b"} 1` + "\n",
		"too many fields":   "node_cpu_usage_seconds_total 1 2 3\n",
		"huge line":         "node_cpu_usage_seconds_total{a=\"" + strings.Repeat("x", maxLineBytes) + "\"} 1\n",
	} {
		if _, err := Parse(strings.NewReader(text), time.Now()); err == nil {
			t.Errorf("%s: Parse accepted %.60q", name, text)
		}
	}
}

// FuzzParse: whatever a node answers, Parse returns an error or a
// snapshot that Write encodes and Parse reads back the same.
func FuzzParse(f *testing.F) {
	f.Add("node_cpu_usage_seconds_total 1 1700000000000\n")
	f.Add(`container_memory_working_set_bytes{container="a",namespace="b",pod="c"} 1e3` + "\n")
	f.Add(`pod_cpu_usage_seconds_total{namespace="a\"b",pod="c\\d"} 2 3` + "\n# HELP x\n")
	f.Add("scrape_error 1\n{}\n")
	f.Fuzz(func(t *testing.T, text string) {
		now := time.UnixMilli(1_700_000_000_000)
		s, err := Parse(strings.NewReader(text), now)
		if err != nil {
			return
		}
		var buf bytes.Buffer
		if err := Write(&buf, s); err != nil {
			t.Fatal(err)
		}
		again, err := Parse(&buf, now)
		if err != nil {
			t.Fatalf("Parse of Write's output: %v\n%s", err, buf.String())
		}
		if len(again.Pods) != len(s.Pods) || len(again.Containers) != len(s.Containers) || (again.Node == nil) != (s.Node == nil) {
			t.Fatalf("round trip changed the snapshot:\n%+v\n%+v", s, again)
		}
	})
}
