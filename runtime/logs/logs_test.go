package logs

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func fixedClock() time.Time { return time.Date(2016, 10, 6, 0, 17, 9, 669794202, time.UTC) }

func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

func TestCopy(t *testing.T) {
	long := strings.Repeat("x", MaxLineSize+10)
	tests := []struct {
		name  string
		input string
		want  []string
	}{
		{"lines", "a\nbc\n", []string{"stdout F a", "stdout F bc"}},
		{"no trailing newline", "a\nb", []string{"stdout F a", "stdout F b"}},
		{"empty line", "\n", []string{"stdout F "}},
		{"long line split", long + "\n", []string{"stdout P " + long[:MaxLineSize], "stdout F " + long[MaxLineSize:]}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "0.log")
			f, err := Open(path, Options{Now: fixedClock})
			if err != nil {
				t.Fatal(err)
			}
			if err := f.Copy(Stdout, strings.NewReader(tt.input)); err != nil {
				t.Fatal(err)
			}
			f.Close()
			got := readLines(t, path)
			if len(got) != len(tt.want) {
				t.Fatalf("got %d lines, want %d: %q", len(got), len(tt.want), got)
			}
			for i := range got {
				want := "2016-10-06T00:17:09.669794202Z " + tt.want[i]
				if got[i] != want {
					t.Errorf("line %d = %.80q, want %.80q", i, got[i], want)
				}
				l, err := ParseLine([]byte(got[i]))
				if err != nil {
					t.Fatalf("ParseLine: %v", err)
				}
				if !l.Time.Equal(fixedClock()) || l.Stream != Stdout {
					t.Errorf("ParseLine = %+v", l)
				}
			}
		})
	}
}

func TestRotate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	f, err := Open(path, Options{MaxSize: 100, MaxFiles: 3, Now: fixedClock})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// Each line is 31+len(msg)+1 bytes: two 40-byte messages overflow 100.
	for i := 0; i < 10; i++ {
		if err := f.WriteLine(Stderr, []byte(strings.Repeat(string(rune('a'+i)), 40)), false); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{path, path + ".1", path + ".2"} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatalf("want %s: %v", p, err)
		}
		if st.Size() > 100 {
			t.Errorf("%s is %d bytes, over MaxSize", p, st.Size())
		}
	}
	if _, err := os.Stat(path + ".3"); err == nil {
		t.Errorf("%s.3 kept beyond MaxFiles", path)
	}
	last := readLines(t, path)
	if !strings.HasSuffix(last[len(last)-1], strings.Repeat("j", 40)) {
		t.Errorf("live file does not end with the last line: %q", last)
	}
}

func TestParseLineRejects(t *testing.T) {
	for _, in := range []string{"", "garbage", "2016-10-06T00:17:09Z stdin F x", "2016-10-06T00:17:09Z stdout X x", "yesterday stdout F x"} {
		if _, err := ParseLine([]byte(in)); err == nil {
			t.Errorf("ParseLine(%q) succeeded", in)
		}
	}
}
