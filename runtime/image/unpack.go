package image

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// unpackLayer extracts a layer tar into dst (an empty directory), turning
// whiteouts into overlayfs' form: ".wh.NAME" becomes a 0/0 character
// device NAME, ".wh..wh..opq" marks its directory opaque. No path may
// leave dst, also not through a symlink the layer itself created.
func unpackLayer(dst string, r io.Reader) error {
	tr := tar.NewReader(r)
	realDirs := map[string]bool{"/": true}
	type dirTime struct {
		path string
		t    time.Time
	}
	var dirTimes []dirTime
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read layer tar: %w", err)
		}
		name := path.Clean("/" + hdr.Name)
		if name == "/" {
			continue
		}
		parent, base := path.Split(name)
		parent = path.Clean(parent)
		if err := ensureParents(dst, parent, realDirs); err != nil {
			return fmt.Errorf("%s: %w", hdr.Name, err)
		}
		hostParent := filepath.Join(dst, parent)
		target := filepath.Join(dst, name)

		if base == whiteoutOpaque {
			if err := unix.Lsetxattr(hostParent, overlayOpaqueXattr, []byte(overlayOpaqueXattrValue), 0); err != nil {
				return fmt.Errorf("mark %s opaque: %w", parent, err)
			}
			continue
		}
		if strings.HasPrefix(base, whiteoutPrefix) {
			wh := filepath.Join(hostParent, strings.TrimPrefix(base, whiteoutPrefix))
			if err := os.RemoveAll(wh); err != nil {
				return err
			}
			if err := unix.Mknod(wh, unix.S_IFCHR, 0); err != nil {
				return fmt.Errorf("whiteout %s: %w", name, err)
			}
			continue
		}

		// A later entry replaces an earlier one, except a directory over a
		// directory, which only updates its metadata.
		if st, err := os.Lstat(target); err == nil && !(st.IsDir() && hdr.Typeflag == tar.TypeDir) {
			if err := os.RemoveAll(target); err != nil {
				return err
			}
			delete(realDirs, name)
		}
		mode := uint32(hdr.Mode & 0o7777)
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.Mkdir(target, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
				return err
			}
			realDirs[name] = true
			dirTimes = append(dirTimes, dirTime{target, hdr.ModTime})
		case tar.TypeReg, tar.TypeRegA:
			f, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("write %s: %w", name, err)
			}
		case tar.TypeSymlink:
			if err := os.Symlink(hdr.Linkname, target); err != nil {
				return err
			}
		case tar.TypeLink:
			src := path.Clean("/" + hdr.Linkname)
			srcParent, _ := path.Split(src)
			if err := ensureParents(dst, path.Clean(srcParent), realDirs); err != nil {
				return fmt.Errorf("%s: link target: %w", hdr.Name, err)
			}
			if err := os.Link(filepath.Join(dst, src), target); err != nil {
				return err
			}
		case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
			dev := int(unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor)))
			kind := map[byte]uint32{tar.TypeChar: unix.S_IFCHR, tar.TypeBlock: unix.S_IFBLK, tar.TypeFifo: unix.S_IFIFO}[hdr.Typeflag]
			if err := unix.Mknod(target, kind|mode, dev); err != nil {
				return fmt.Errorf("mknod %s: %w", name, err)
			}
		default:
			continue // pax globals and the like carry nothing to extract
		}
		if err := os.Lchown(target, hdr.Uid, hdr.Gid); err != nil {
			return fmt.Errorf("chown %s: %w", name, err)
		}
		for k, v := range hdr.PAXRecords {
			if x, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
				if err := unix.Lsetxattr(target, x, []byte(v), 0); err != nil && !errors.Is(err, unix.ENOTSUP) {
					return fmt.Errorf("xattr %s on %s: %w", x, name, err)
				}
			}
		}
		if hdr.Typeflag == tar.TypeLink {
			continue // shares the target's inode and metadata
		}
		if hdr.Typeflag != tar.TypeSymlink {
			// After chown, which clears set-id bits.
			if err := unix.Chmod(target, mode); err != nil {
				return fmt.Errorf("chmod %s: %w", name, err)
			}
		}
		if hdr.Typeflag != tar.TypeDir {
			ts := []unix.Timespec{unix.NsecToTimespec(hdr.ModTime.UnixNano()), unix.NsecToTimespec(hdr.ModTime.UnixNano())}
			_ = unix.UtimesNanoAt(unix.AT_FDCWD, target, ts, unix.AT_SYMLINK_NOFOLLOW)
		}
	}
	// Directory times last: creating entries inside changed them.
	for i := len(dirTimes) - 1; i >= 0; i-- {
		d := dirTimes[i]
		ts := []unix.Timespec{unix.NsecToTimespec(d.t.UnixNano()), unix.NsecToTimespec(d.t.UnixNano())}
		_ = unix.UtimesNanoAt(unix.AT_FDCWD, d.path, ts, unix.AT_SYMLINK_NOFOLLOW)
	}
	return nil
}

// ensureParents makes every component of dir (a clean absolute path in
// the layer) a real directory under dst, refusing symlinks.
func ensureParents(dst, dir string, realDirs map[string]bool) error {
	if realDirs[dir] {
		return nil
	}
	if err := ensureParents(dst, path.Dir(dir), realDirs); err != nil {
		return err
	}
	host := filepath.Join(dst, dir)
	st, err := os.Lstat(host)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := os.Mkdir(host, 0o755); err != nil {
			return err
		}
	case err != nil:
		return err
	case st.Mode()&os.ModeSymlink != 0:
		return fmt.Errorf("path goes through symlink %s", dir)
	case !st.IsDir():
		return fmt.Errorf("%s is not a directory", dir)
	}
	realDirs[dir] = true
	return nil
}
