package container

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// helperPrefix names the installed helper binaries: orch-helper-<hash of
// the embedded gzip>, so that an upgraded orch installs its own next to
// the one its predecessor's shims still run from.
const helperPrefix = "orch-helper-"

// installHelper writes the gzipped helper binary gz (runtime/helper) to
// dir unless it is there already, removes older versions, and returns its
// path; "" when gz is empty (a build without the helper). The directory
// must not contain libcontainer's state: libcontainer seals the shim's
// binary for each container's init with a read-only overlayfs whose lower
// layers are the binary's directory and the container's state directory,
// and the kernel refuses overlapping layers (libcontainer then copies the
// whole binary into a memfd for every container instead).
func installHelper(dir string, gz []byte) (string, error) {
	if len(gz) == 0 {
		return "", nil
	}
	if len(gz) < 18 {
		return "", errors.New("install container helper: embedded binary is truncated")
	}
	sum := sha256.Sum256(gz)
	name := helperPrefix + hex.EncodeToString(sum[:8])
	path := filepath.Join(dir, name)
	// gzip's trailer holds the uncompressed size (mod 2^32): a file of
	// that size under the content's hash was written whole (rename).
	size := int64(binary.LittleEndian.Uint32(gz[len(gz)-4:]))
	if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() && fi.Size() == size && fi.Mode().Perm()&0o100 != 0 {
		removeOldHelpers(dir, name)
		return path, checkExecutable(path)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("install container helper: %w", err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		return "", fmt.Errorf("install container helper: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".tmp-"+name+"-")
	if err != nil {
		return "", fmt.Errorf("install container helper: %w", err)
	}
	n, err := io.Copy(tmp, zr)
	if err == nil && n != size {
		err = fmt.Errorf("embedded binary is %d bytes, want %d", n, size)
	}
	if err == nil {
		err = tmp.Chmod(0o700)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		return "", fmt.Errorf("install container helper: %w", err)
	}
	removeOldHelpers(dir, name)
	return path, checkExecutable(path)
}

// removeOldHelpers deletes other versions of the helper and leftover
// temporary files. Shims still running from one keep their (unlinked)
// binary.
func removeOldHelpers(dir, keep string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		n := e.Name()
		if n != keep && (strings.HasPrefix(n, helperPrefix) || strings.HasPrefix(n, ".tmp-"+helperPrefix)) {
			_ = os.Remove(filepath.Join(dir, n))
		}
	}
}

// checkExecutable fails on a state directory mounted noexec.
func checkExecutable(path string) error {
	if err := unix.Access(path, unix.X_OK); err != nil {
		return fmt.Errorf("install container helper: %s is not executable (noexec mount?): %w", path, err)
	}
	return nil
}
