package snapshot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/orch-dev/orch/store"
	"github.com/orch-dev/orch/store/bolt"
)

var t0 = time.Unix(1_800_000_000, 0)

func openStore(t *testing.T, dataDir string) *bolt.DB {
	t.Helper()
	d, err := bolt.Open(DBPath(dataDir), bolt.Options{NoSync: true, LockTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	return d
}

// writeKeys puts keys into the store of dataDir and returns the store's
// revision after a clean close.
func writeKeys(t *testing.T, dataDir string, keys ...string) int64 {
	t.Helper()
	d := openStore(t, dataDir)
	for _, k := range keys {
		if _, err := d.Create(context.Background(), k, []byte("value of "+k), store.WriteOptions{}); err != nil {
			t.Fatalf("create %s: %v", k, err)
		}
	}
	rev := d.Revision()
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	return rev
}

func keysOf(t *testing.T, dataDir string) []string {
	t.Helper()
	d := openStore(t, dataDir)
	defer d.Close()
	res, err := d.List(context.Background(), "/", store.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, kv := range res.KVs {
		keys = append(keys, kv.Key)
	}
	return keys
}

func TestSaveListRestoreRoundTrip(t *testing.T) {
	dataDir := t.TempDir()
	writeKeys(t, dataDir, "/a", "/b")

	saved, err := Save(dataDir, "", t0)
	if err != nil {
		t.Fatalf("Save: %v", err)
	}
	wantPath := filepath.Join(Dir(dataDir), fmt.Sprintf("on-demand-%d.db", t0.Unix()))
	if saved.Path != wantPath || saved.Size == 0 || saved.Checksum != "ok" {
		t.Errorf("Save = %+v, want path %s, a size and checksum ok", saved, wantPath)
	}
	sum, err := os.ReadFile(wantPath + ".sha256")
	if err != nil || !strings.HasSuffix(string(sum), "  "+filepath.Base(wantPath)+"\n") {
		t.Errorf("checksum file = %q, %v; want sha256sum format", sum, err)
	}
	if _, err := Save(dataDir, "", t0); err == nil {
		t.Error("a second save with the same name and time overwrote the first")
	}
	named, err := Save(dataDir, "before-upgrade", t0.Add(time.Minute))
	if err != nil {
		t.Fatalf("Save(named): %v", err)
	}

	list, err := List(Dir(dataDir))
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Path != saved.Path || list[1].Path != named.Path ||
		list[1].Name != "before-upgrade" || !list[1].Time.Equal(t0.Add(time.Minute)) ||
		list[0].Checksum != "ok" || list[1].Size != named.Size {
		t.Errorf("List = %+v", list)
	}

	// The store moves on; restoring brings back the saved keys only, and
	// revisions keep going forward.
	revAfter := writeKeys(t, dataDir, "/c", "/d", "/e")
	res, err := Restore(dataDir, filepath.Base(saved.Path), t0.Add(time.Hour))
	if err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if res.Warning != "" || res.Keys != 2 || res.Revision < revAfter {
		t.Errorf("Restore = %+v, want 2 keys, revision >= %d, no warning", res, revAfter)
	}
	if got := keysOf(t, dataDir); strings.Join(got, ",") != "/a,/b" {
		t.Errorf("keys after restore = %v, want [/a /b]", got)
	}
	d := openStore(t, dataDir)
	if d.Revision() < revAfter {
		t.Errorf("restored store starts at revision %d, before the replaced store's %d", d.Revision(), revAfter)
	}
	d.Close()
	wantBackup := fmt.Sprintf("%s.bak-%d", DBPath(dataDir), t0.Add(time.Hour).Unix())
	if res.Backup != wantBackup {
		t.Errorf("backup = %q, want %q", res.Backup, wantBackup)
	}
	backup, err := bolt.Inspect(wantBackup)
	if err != nil || backup.Keys != 5 {
		t.Errorf("backup = %+v, %v; want the replaced store with 5 keys", backup, err)
	}
	leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(DBPath(dataDir)), ".restore-*"))
	if len(leftovers) != 0 {
		t.Errorf("restore left temporary files: %v", leftovers)
	}
}

func TestRestoreIntoEmptyDataDir(t *testing.T) {
	src := t.TempDir()
	writeKeys(t, src, "/x")
	saved, err := Save(src, "move", t0)
	if err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	res, err := Restore(dst, saved.Path, t0)
	if err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if res.Backup != "" || res.Keys != 1 {
		t.Errorf("Restore = %+v, want no backup and 1 key", res)
	}
	if got := keysOf(t, dst); len(got) != 1 || got[0] != "/x" {
		t.Errorf("keys = %v", got)
	}
}

func TestRestoreRefusesBadSnapshots(t *testing.T) {
	tests := []struct {
		name   string
		damage func(t *testing.T, path string)
		want   string
	}{
		{"flipped byte", func(t *testing.T, p string) {
			b, _ := os.ReadFile(p)
			b[len(b)/2] ^= 0xff
			os.WriteFile(p, b, 0o600)
		}, "checksum mismatch"},
		{"truncated", func(t *testing.T, p string) {
			os.Truncate(p, 4096)
		}, "checksum mismatch"},
		{"no checksum file", func(t *testing.T, p string) {
			os.Remove(p + ".sha256")
		}, ".sha256 checksum file is missing"},
		{"garbage checksum file", func(t *testing.T, p string) {
			os.WriteFile(p+".sha256", []byte("hello\n"), 0o600)
		}, "not a sha256 checksum file"},
		{"not a database, consistent checksum", func(t *testing.T, p string) {
			os.WriteFile(p, bytes.Repeat([]byte("junk"), 4096), 0o600)
			os.WriteFile(p+".sha256", []byte("8c0b58f1c0c7c5e8d2b0d5d6c11b0c7cf1d4a2f0a1c2e3b4a5d6e7f8091a2b3c  x\n"), 0o600)
		}, "checksum mismatch"},
		{"missing snapshot", func(t *testing.T, p string) {
			os.Remove(p)
		}, "missing"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dataDir := t.TempDir()
			writeKeys(t, dataDir, "/keep")
			saved, err := Save(dataDir, "", t0)
			if err != nil {
				t.Fatal(err)
			}
			before, _ := os.ReadFile(DBPath(dataDir))
			tc.damage(t, saved.Path)
			_, err = Restore(dataDir, saved.Path, t0)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Restore = %v, want an error mentioning %q", err, tc.want)
			}
			after, _ := os.ReadFile(DBPath(dataDir))
			if !bytes.Equal(before, after) {
				t.Error("a refused restore changed the store")
			}
			entries, _ := os.ReadDir(filepath.Dir(DBPath(dataDir)))
			if len(entries) != 1 {
				t.Errorf("store directory has %d entries after a refused restore, want only state.db", len(entries))
			}
		})
	}
}

func TestRestoreRefusesNonDatabaseWithValidChecksum(t *testing.T) {
	dataDir := t.TempDir()
	dir := Dir(dataDir)
	info, err := write(dir, "fake", t0, func(w io.Writer) (int64, error) {
		n, err := w.Write(bytes.Repeat([]byte("not bolt"), 2048))
		return int64(n), err
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Restore(dataDir, info.Path, t0); err == nil || !strings.Contains(err.Error(), "not a usable orch database") {
		t.Errorf("Restore = %v, want it refused as not an orch database", err)
	}
	if _, err := os.Stat(DBPath(dataDir)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused restore created a store: %v", err)
	}
}

func TestServerRunningRefusesSaveAndRestore(t *testing.T) {
	dataDir := t.TempDir()
	writeKeys(t, dataDir, "/a")
	saved, err := Save(dataDir, "", t0)
	if err != nil {
		t.Fatal(err)
	}
	d := openStore(t, dataDir) // the "running server"
	defer d.Close()

	if _, err := Save(dataDir, "", t0.Add(time.Second)); !errors.Is(err, ErrServerRunning) ||
		!strings.Contains(err.Error(), "stop it or use the scheduled snapshots") {
		t.Errorf("Save while running = %v", err)
	}
	if _, err := Restore(dataDir, saved.Path, t0); !errors.Is(err, ErrServerRunning) ||
		!strings.Contains(err.Error(), "stop it before restoring") {
		t.Errorf("Restore while running = %v", err)
	}
	if _, err := d.Get(context.Background(), "/a"); err != nil {
		t.Errorf("the running store lost data: %v", err)
	}
}

func TestSaveRejectsBadNames(t *testing.T) {
	dataDir := t.TempDir()
	writeKeys(t, dataDir, "/a")
	for _, name := range []string{"../escape", "a/b", "UPPER", "-lead", "trail-", strings.Repeat("x", 65), "sp ace", ".hidden"} {
		if _, err := Save(dataDir, name, t0); err == nil {
			t.Errorf("Save(%q) succeeded", name)
		}
	}
	if list, _ := List(Dir(dataDir)); len(list) != 0 {
		t.Errorf("bad names left snapshots: %+v", list)
	}
}

func TestListReportsChecksumState(t *testing.T) {
	dir := t.TempDir()
	mk := func(name string, at time.Time, body string) string {
		info, err := write(dir, name, at, func(w io.Writer) (int64, error) {
			n, err := io.WriteString(w, body)
			return int64(n), err
		})
		if err != nil {
			t.Fatal(err)
		}
		return info.Path
	}
	okPath := mk("good", t0, "aaaa")
	bad := mk("bad", t0.Add(time.Second), "bbbb")
	os.WriteFile(bad, []byte("cccc"), 0o600)
	orphan := mk("orphan", t0.Add(2*time.Second), "dddd")
	os.Remove(orphan + ".sha256")
	// Not snapshots: ignored.
	for _, f := range []string{"notes.txt", "x.db", "-5.db", "name-abc.db", ".partial-123"} {
		os.WriteFile(filepath.Join(dir, f), nil, 0o600)
	}

	list, err := List(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, s := range list {
		got[filepath.Base(s.Path)] = s.Checksum
	}
	want := map[string]string{
		filepath.Base(okPath): "ok", filepath.Base(bad): "mismatch", filepath.Base(orphan): "missing",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("List checksums = %v, want %v", got, want)
	}
	if list, err := List(filepath.Join(dir, "none")); err != nil || len(list) != 0 {
		t.Errorf("List(missing dir) = %v, %v", list, err)
	}
}

func TestParseFileName(t *testing.T) {
	tests := []struct {
		file string
		name string
		unix int64
		ok   bool
	}{
		{"on-demand-1800000000.db", "on-demand", 1800000000, true},
		{"scheduled-0.db", "scheduled", 0, true},
		{"a.b_c-12.db", "a.b_c", 12, true},
		{"scheduled-12.db.sha256", "", 0, false},
		{"scheduled.db", "", 0, false},
		{"-12.db", "", 0, false},
		{"x--1.db", "", 0, false},
		{"X-1.db", "", 0, false},
	}
	for _, tc := range tests {
		name, ts, ok := parseFileName(tc.file)
		if ok != tc.ok || name != tc.name || (ok && ts.Unix() != tc.unix) {
			t.Errorf("parseFileName(%q) = %q, %v, %v; want %q, %d, %v", tc.file, name, ts.Unix(), ok, tc.name, tc.unix, tc.ok)
		}
	}
}

func TestScheduledSnapshotsOfARunningStore(t *testing.T) {
	dataDir := t.TempDir()
	writeKeys(t, dataDir, "/a")
	d := openStore(t, dataDir)
	defer d.Close()
	dir := Dir(dataDir)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	manual, err := write(dir, ScheduledName+"-by-hand", t0, d.Snapshot)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := TakeScheduled(d, dir, 3, t0.Add(time.Duration(i)*time.Hour), log); err != nil {
			t.Fatalf("TakeScheduled %d: %v", i, err)
		}
	}
	list, err := List(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range list {
		got = append(got, filepath.Base(s.Path))
		if s.Checksum != "ok" {
			t.Errorf("%s: checksum %s", s.Path, s.Checksum)
		}
	}
	want := []string{
		filepath.Base(manual.Path),
		fmt.Sprintf("scheduled-%d.db", t0.Add(2*time.Hour).Unix()),
		fmt.Sprintf("scheduled-%d.db", t0.Add(3*time.Hour).Unix()),
		fmt.Sprintf("scheduled-%d.db", t0.Add(4*time.Hour).Unix()),
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("after 5 scheduled snapshots with retention 3:\n got %v\nwant %v", got, want)
	}
	sums, _ := filepath.Glob(filepath.Join(dir, "*.sha256"))
	if len(sums) != 4 {
		t.Errorf("%d checksum files, want 4 (pruned ones removed too)", len(sums))
	}
	// A scheduled snapshot of the running store restores like any other,
	// once the server is stopped.
	d.Close()
	if _, err := Restore(dataDir, list[len(list)-1].Path, t0.Add(5*time.Hour)); err != nil {
		t.Errorf("restore a scheduled snapshot: %v", err)
	}
}

type failingSnapshotter struct{ calls chan struct{} }

func (f failingSnapshotter) Snapshot(w io.Writer) (int64, error) {
	w.Write([]byte("partial"))
	select {
	case f.calls <- struct{}{}:
	default:
	}
	return 7, errors.New("disk full")
}

func TestScheduleKeepsGoingAndStops(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if err := Schedule(context.Background(), failingSnapshotter{}, dir, 0, 1, log); err == nil {
		t.Error("Schedule accepted a zero interval")
	}
	if err := Schedule(context.Background(), failingSnapshotter{}, dir, time.Second, 0, log); err == nil {
		t.Error("Schedule accepted zero retention")
	}

	ctx, cancel := context.WithCancel(context.Background())
	calls := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- Schedule(ctx, failingSnapshotter{calls: calls}, dir, 10*time.Millisecond, 2, log) }()
	for range 2 { // a failure does not stop the schedule
		select {
		case <-calls:
		case <-time.After(10 * time.Second):
			t.Fatal("no scheduled snapshot attempt")
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Schedule after cancel = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Schedule did not stop")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Errorf("failed snapshots left files: %v", entries)
	}
}

func TestPrint(t *testing.T) {
	var b strings.Builder
	err := PrintList(&b, []Info{
		{Name: "scheduled", Path: "/d/scheduled-1800000000.db", Size: 3 << 20, Time: t0, Checksum: "ok"},
		{Name: "x", Path: "/d/x-1800000060.db", Size: 100, Time: t0.Add(time.Minute), Checksum: "mismatch"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := "" +
		"NAME       TAKEN                 SIZE     CHECKSUM  FILE\n" +
		"scheduled  2027-01-15T08:00:00Z  3.0 MiB  ok        /d/scheduled-1800000000.db\n" +
		"x          2027-01-15T08:01:00Z  100 B    mismatch  /d/x-1800000060.db\n"
	if b.String() != want {
		t.Errorf("PrintList:\n%s\nwant:\n%s", b.String(), want)
	}
	b.Reset()
	PrintRestored(&b, Restored{DB: "/d/state.db", Backup: "/d/state.db.bak-1", Keys: 3, Revision: 9})
	if want := "previous store kept as /d/state.db.bak-1\nrestored 3 keys into /d/state.db (revision 9); start the server to use it\n"; b.String() != want {
		t.Errorf("PrintRestored = %q, want %q", b.String(), want)
	}
}

func TestSaveWithoutStore(t *testing.T) {
	dataDir := t.TempDir()
	if _, err := Save(dataDir, "", t0); err == nil || !strings.Contains(err.Error(), "no store at") {
		t.Errorf("Save without a store = %v", err)
	}
	if _, err := os.Stat(Dir(dataDir)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Save without a store created %s", Dir(dataDir))
	}
}

// TestValidName checks the hand-written name check against the pattern
// it replaces.
func TestValidName(t *testing.T) {
	re := regexp.MustCompile(`^[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?$`)
	for _, name := range []string{
		"", "a", "0", "on-demand", "etcd-snapshot", "a.b_c-d", "-a", "a-", ".a", "a.", "_", "A", "aB", "a b", "a/b",
		"ä", strings.Repeat("a", 64), strings.Repeat("a", 65), "a" + strings.Repeat("-", 62) + "a", "a" + strings.Repeat("-", 63) + "a",
	} {
		if got, want := validName(name), re.MatchString(name); got != want {
			t.Errorf("validName(%q) = %v, the pattern says %v", name, got, want)
		}
	}
}
