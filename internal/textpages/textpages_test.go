package textpages

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestMappingsOf(t *testing.T) {
	maps := `00400000-00e1c000 r-xp 00000000 fd:01 1234 /usr/local/bin/orch
00e1c000-02000000 r--p 00a1c000 fd:01 1234 /usr/local/bin/orch
02000000-02100000 rw-p 01c00000 fd:01 1234 /usr/local/bin/orch
02100000-02200000 rw-p 00000000 00:00 0 [heap]
7f0000000000-7f0000100000 r--p 00000000 fd:01 99 /usr/lib/locale/C.utf8/LC_CTYPE
7f0000200000-7f0000300000 r--p 00000000 08:02 1234 /mnt/other-disk/same-inode
`
	path := filepath.Join(t.TempDir(), "maps")
	if err := os.WriteFile(path, []byte(maps), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := mappingsOf(path, unix.Mkdev(0xfd, 1), 1234)
	if err != nil {
		t.Fatal(err)
	}
	want := []addrRange{{0x400000, 0xe1c000}, {0xe1c000, 0x2000000}, {0x2000000, 0x2100000}}
	if len(got) != len(want) {
		t.Fatalf("got %x, want %x", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %x, want %x", got, want)
		}
	}
}

// rssFile is the process's resident file-backed memory in kB.
func rssFile(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "RssFile:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no RssFile in /proc/self/status")
	return 0
}

// The test binary releases its own text: it keeps running (the pages come
// back as it needs them) and holds fewer of them resident than before.
func TestRelease(t *testing.T) {
	before := rssFile(t)
	advised, err := Release()
	if errors.Is(err, errors.ErrUnsupported) {
		t.Skip("this kernel has no MADV_PAGEOUT")
	}
	if err != nil {
		t.Fatal(err)
	}
	if advised == 0 {
		t.Fatal("no mapping of the executable found")
	}
	after := rssFile(t)
	t.Logf("RssFile %d kB → %d kB (%d bytes advised)", before, after, advised)
	if after >= before {
		t.Errorf("RssFile %d kB after release, %d kB before: nothing was reclaimed", after, before)
	}
}
