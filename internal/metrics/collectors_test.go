package metrics

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

type fakeStore struct{ rev, compact int64 }

func (f *fakeStore) Revision() int64        { return f.rev }
func (f *fakeStore) CompactRevision() int64 { return f.compact }

func TestRegisterStore(t *testing.T) {
	db := filepath.Join(t.TempDir(), "state.db")
	if err := os.WriteFile(db, make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	reg := NewRegistry()
	st := &fakeStore{rev: 10, compact: 3}
	RegisterStore(reg, st, db)
	st.rev = 12 // read at scrape time
	want := `# HELP orch_store_compact_revision Revision below which the store no longer serves history.
# TYPE orch_store_compact_revision gauge
orch_store_compact_revision 3
# HELP orch_store_db_size_bytes Size of the store's database file in bytes.
# TYPE orch_store_db_size_bytes gauge
orch_store_db_size_bytes 4096
# HELP orch_store_revision Current revision of the store (the newest resourceVersion).
# TYPE orch_store_revision gauge
orch_store_revision 12
`
	if got := output(t, reg); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
	os.Remove(db)
	if got := output(t, reg); strings.Contains(got, "\norch_store_db_size_bytes ") {
		t.Errorf("a missing file still has a size:\n%s", got)
	}
}

func TestRegisterProcess(t *testing.T) {
	reg := NewRegistry()
	RegisterProcess(reg)
	RegisterProcess(reg) // idempotent
	out := output(t, reg)
	for _, name := range []string{"go_goroutines", "go_memstats_heap_alloc_bytes", "go_memstats_sys_bytes",
		"process_resident_memory_bytes", "process_cpu_seconds_total"} {
		v := scrapeLine(t, reg, name)
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 {
			t.Errorf("%s = %q, want a positive number\n%s", name, v, out)
		}
	}
}
