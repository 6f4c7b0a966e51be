// Package snapshot saves, lists and restores copies of the server's store,
// and takes scheduled snapshots with retention while the server runs.
//
// Layout under the data directory:
//
//	server/db/state.db                  the live store
//	server/db/state.db.bak-<unix>       what a restore replaced
//	server/snapshots/<name>-<unix>.db   a snapshot (a bbolt file)
//	server/snapshots/<name>-<unix>.db.sha256   its checksum, sha256sum format
//
// The running server holds the store's file lock: it takes scheduled
// snapshots itself (Schedule) and on-demand ones when asked at APIPath
// (Handler), both consistent copies of the live store (one bbolt read
// transaction); Save copies the store of a stopped server. Restore never
// touches a running server's store. Volatile
// values (node heartbeats, leases) are not in snapshots: see store/bolt.
//
// This package owns the snapshot files only; it never opens the store for
// writing except to install a restored copy.
package snapshot

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/orch-dev/orch/store/bolt"
)

// ScheduledName names the snapshots Schedule takes; retention applies to
// them only, never to snapshots a user saved by hand.
const ScheduledName = "scheduled"

// DefaultName names a `save` without --name.
const DefaultName = "on-demand"

// Dir is where snapshots of the server with this data directory live.
func Dir(dataDir string) string { return filepath.Join(dataDir, "server", "snapshots") }

// DBPath is the server's store file (see server.Run).
func DBPath(dataDir string) string { return filepath.Join(dataDir, "server", "db", "state.db") }

// ErrServerRunning means the store is locked by a running server.
var ErrServerRunning = errors.New("the server is running")

// validName reports whether name matches ^[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?$,
// checked by hand: a compiled regexp with that bounded repetition cost
// every orch process (container shims included) 44 KB of heap at start.
func validName(name string) bool {
	if len(name) == 0 || len(name) > 64 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case (c == '.' || c == '_' || c == '-') && i > 0 && i < len(name)-1:
		default:
			return false
		}
	}
	return true
}

// Info describes one snapshot file. It is also what a running server
// answers a snapshot request with (see Handler), hence the JSON names.
type Info struct {
	Name string    `json:"name"` // as given to save, e.g. "on-demand"
	Path string    `json:"path"`
	Size int64     `json:"size"`
	Time time.Time `json:"time"` // when it was taken (from the file name)
	// Checksum is "ok", "mismatch", "missing" (no .sha256 file) or
	// "unreadable: <reason>".
	Checksum string `json:"checksum"`
}

// Save copies the store of a stopped server into a new snapshot named name
// (DefaultName if empty). It refuses with ErrServerRunning while a server
// holds the store.
func Save(dataDir, name string, now time.Time) (Info, error) {
	if name == "" {
		name = DefaultName
	}
	db := DBPath(dataDir)
	if _, err := os.Stat(db); errors.Is(err, os.ErrNotExist) {
		return Info{}, fmt.Errorf("no store at %s: has a server run with data directory %s?", db, dataDir)
	}
	info, err := write(Dir(dataDir), name, now, func(w io.Writer) (int64, error) {
		return bolt.SnapshotFile(db, w)
	})
	if errors.Is(err, bolt.ErrLocked) {
		return Info{}, fmt.Errorf("%w (it holds %s); stop it or use the scheduled snapshots", ErrServerRunning, db)
	}
	return info, err
}

// errExists is a snapshot of that name taken in the same second.
var errExists = errors.New("already exists")

// checkName refuses names that cannot be part of a snapshot's file name.
func checkName(name string) error {
	if !validName(name) {
		return fmt.Errorf("snapshot name %q: use 1-64 lower-case letters, digits, '.', '-' or '_', starting and ending with a letter or digit", name)
	}
	return nil
}

// snapshotFunc writes a consistent copy of a store to w.
type snapshotFunc func(w io.Writer) (int64, error)

// write stores a new snapshot and its checksum in dir. A failed snapshot
// leaves no file behind: it is written under a temporary name and renamed
// only when complete and synced.
func write(dir, name string, now time.Time, copyTo snapshotFunc) (Info, error) {
	if err := checkName(name); err != nil {
		return Info{}, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Info{}, fmt.Errorf("create snapshot directory: %w", err)
	}
	path := filepath.Join(dir, fmt.Sprintf("%s-%d.db", name, now.Unix()))
	if _, err := os.Lstat(path); err == nil {
		return Info{Path: path}, fmt.Errorf("snapshot %s %w", path, errExists)
	}
	tmp, err := os.CreateTemp(dir, ".partial-*")
	if err != nil {
		return Info{}, fmt.Errorf("create snapshot file: %w", err)
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	sum := sha256.New()
	n, err := copyTo(io.MultiWriter(tmp, sum))
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return Info{}, fmt.Errorf("write snapshot %s: %w", path, err)
	}
	digest := hex.EncodeToString(sum.Sum(nil))
	if err := writeFileSync(path+".sha256", []byte(digest+"  "+filepath.Base(path)+"\n")); err != nil {
		return Info{}, fmt.Errorf("write checksum of %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(path + ".sha256")
		return Info{}, fmt.Errorf("install snapshot %s: %w", path, err)
	}
	if err := syncDir(dir); err != nil {
		return Info{}, err
	}
	return Info{Name: name, Path: path, Size: n, Time: time.Unix(now.Unix(), 0), Checksum: "ok"}, nil
}

// List returns the snapshots in dir, oldest first, with their checksums
// verified. A missing directory is an empty list.
func List(dir string) ([]Info, error) { return list(dir, true) }

// list reads dir, verifying checksums only if asked: pruning needs only the
// names, and reading every snapshot at every tick would be wasted work.
func list(dir string, verifySums bool) ([]Info, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	var out []Info
	for _, e := range entries {
		name, ts, ok := parseFileName(e.Name())
		if !ok || !e.Type().IsRegular() {
			continue
		}
		path := filepath.Join(dir, e.Name())
		info := Info{Name: name, Path: path, Time: ts}
		if fi, err := e.Info(); err == nil {
			info.Size = fi.Size()
		}
		if verifySums {
			info.Checksum = checksumState(path)
		}
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Time.Equal(out[j].Time) {
			return out[i].Time.Before(out[j].Time)
		}
		return out[i].Path < out[j].Path
	})
	return out, nil
}

func checksumState(path string) string {
	switch err := verify(path, io.Discard); {
	case err == nil:
		return "ok"
	case errors.Is(err, errChecksumMismatch):
		return "mismatch"
	case errors.Is(err, os.ErrNotExist):
		return "missing"
	default:
		return "unreadable: " + err.Error()
	}
}

// parseFileName splits "<name>-<unix>.db".
func parseFileName(file string) (name string, ts time.Time, ok bool) {
	base, found := strings.CutSuffix(file, ".db")
	if !found {
		return "", time.Time{}, false
	}
	i := strings.LastIndexByte(base, '-')
	if i <= 0 {
		return "", time.Time{}, false
	}
	sec, err := strconv.ParseInt(base[i+1:], 10, 64)
	if err != nil || sec < 0 || !validName(base[:i]) {
		return "", time.Time{}, false
	}
	return base[:i], time.Unix(sec, 0), true
}

var errChecksumMismatch = errors.New("checksum mismatch")

// verify copies the snapshot at path to w and checks it against its
// .sha256 file. The caller must discard what it wrote if verify fails.
func verify(path string, w io.Writer) error {
	want, err := readChecksum(path + ".sha256")
	if err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sum := sha256.New()
	if _, err := io.Copy(io.MultiWriter(w, sum), f); err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	if got := hex.EncodeToString(sum.Sum(nil)); got != want {
		return fmt.Errorf("%w (the file hashes to %s…, its .sha256 records %s…)", errChecksumMismatch, short(got), short(want))
	}
	return nil
}

func short(digest string) string {
	if len(digest) > 12 {
		return digest[:12]
	}
	return digest
}

// readChecksum reads a sha256sum-format file: "<hex>  <file name>".
func readChecksum(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	fields := strings.Fields(string(b))
	if len(fields) == 0 || len(fields[0]) != hex.EncodedLen(sha256.Size) {
		return "", fmt.Errorf("%s is not a sha256 checksum file", path)
	}
	if _, err := hex.DecodeString(fields[0]); err != nil {
		return "", fmt.Errorf("%s is not a sha256 checksum file", path)
	}
	return strings.ToLower(fields[0]), nil
}

// Restored describes a finished restore.
type Restored struct {
	DB string // the store file that now holds the snapshot
	// Backup is where the replaced store went; empty if there was none.
	Backup string
	Keys   int
	// Revision is where the restored store starts: at least the replaced
	// store's revision, so clients relist rather than miss changes.
	Revision int64
	// Warning is set when the replaced store was unreadable, so its
	// revision could not be carried over.
	Warning string
}

// Restore installs the snapshot file in place of the store of the stopped
// server with this data directory. file is a path, or the file name of a
// snapshot in Dir(dataDir). The snapshot's checksum must match and it must
// be a sound orch database of this version; the replaced store is kept as
// state.db.bak-<unix>. It refuses with ErrServerRunning while a server holds
// the store.
func Restore(dataDir, file string, now time.Time) (Restored, error) {
	if !strings.ContainsRune(file, filepath.Separator) {
		if _, err := os.Stat(file); err != nil {
			file = filepath.Join(Dir(dataDir), file)
		}
	}
	db := DBPath(dataDir)
	running := fmt.Errorf("%w (it holds %s); stop it before restoring", ErrServerRunning, db)

	// Check before copying anything: restore is normally run on a stopped
	// server, and saying so late would waste a large copy.
	live, liveErr := bolt.Inspect(db)
	switch {
	case errors.Is(liveErr, bolt.ErrLocked):
		return Restored{}, running
	case errors.Is(liveErr, os.ErrNotExist):
		liveErr = nil
	}
	if err := os.MkdirAll(filepath.Dir(db), 0o700); err != nil {
		return Restored{}, fmt.Errorf("create store directory: %w", err)
	}

	// Copy next to the store so the final step is one atomic rename.
	tmp, err := os.CreateTemp(filepath.Dir(db), ".restore-*")
	if err != nil {
		return Restored{}, fmt.Errorf("restore: %w", err)
	}
	defer os.Remove(tmp.Name())
	err = verify(file, tmp)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	switch {
	case errors.Is(err, os.ErrNotExist):
		return Restored{}, fmt.Errorf("restore %s: the snapshot or its .sha256 checksum file is missing: %w", file, err)
	case err != nil:
		return Restored{}, fmt.Errorf("restore %s: refusing a snapshot that fails its check: %w", file, err)
	}
	if _, err := bolt.Inspect(tmp.Name()); err != nil {
		return Restored{}, fmt.Errorf("restore %s: not a usable orch database: %w", file, err)
	}
	res := Restored{DB: db}
	if liveErr != nil {
		res.Warning = fmt.Sprintf("the replaced store was unreadable (%v): revisions restart from the snapshot's, so clients that saw later ones should restart their watches", liveErr)
	} else if err := bolt.RaiseRevision(tmp.Name(), live.Revision); err != nil {
		return Restored{}, fmt.Errorf("restore %s: %w", file, err)
	}
	info, err := bolt.Inspect(tmp.Name())
	if err != nil {
		return Restored{}, fmt.Errorf("restore %s: %w", file, err)
	}
	res.Keys, res.Revision = info.Keys, info.Revision
	if err := os.Chmod(tmp.Name(), 0o600); err != nil {
		return Restored{}, fmt.Errorf("restore: %w", err)
	}

	// Hold the server's lock while swapping, so a server starting now waits
	// instead of opening a file that is being replaced.
	release, err := bolt.LockFile(db)
	if errors.Is(err, bolt.ErrLocked) {
		return Restored{}, running
	}
	if err != nil {
		return Restored{}, fmt.Errorf("restore: %w", err)
	}
	defer release()
	if _, err := os.Lstat(db); err == nil {
		res.Backup = fmt.Sprintf("%s.bak-%d", db, now.Unix())
		// A hard link keeps state.db in place until the rename below
		// replaces it atomically: there is no moment without a store.
		if err := os.Link(db, res.Backup); err != nil {
			return Restored{}, fmt.Errorf("restore: keep the old store as %s: %w", res.Backup, err)
		}
	}
	if err := os.Rename(tmp.Name(), db); err != nil {
		return Restored{}, fmt.Errorf("restore: install %s: %w", db, err)
	}
	if err := syncDir(filepath.Dir(db)); err != nil {
		return Restored{}, err
	}
	return res, nil
}

func writeFileSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// syncDir makes renames in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
