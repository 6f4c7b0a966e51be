// Package textpages gives the kernel back the pages of orch's own binary
// that only its start used.
//
// orch is one ~40 MB executable. Starting it touches much of it (package
// initialisation, the API server's tables, the first list of every
// resource), and the kernel keeps what was touched mapped, in large folios
// read ahead around each fault: an idle server or agent showed ~27–35 MB
// of its binary in RSS, three times its anonymous memory. Once running, an
// idle process uses a small part of that (~2.5 MB here).
//
// Release, called once the process has settled, marks the binary's
// mappings MADV_RANDOM (later faults read single pages instead of reading
// ahead into large folios) and reclaims them with MADV_PAGEOUT (Linux 5.4
// and later). Pages another process also maps (a shim of the same binary)
// are left alone by the kernel. The cost is a page fault, and a read of
// 4 KB, the first time a code path that only the start used runs again.
package textpages

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Release reclaims the resident pages of the running executable's file
// mappings. It returns the bytes of mappings it advised, and
// errors.ErrUnsupported on kernels without MADV_PAGEOUT.
func Release() (int64, error) {
	var st syscall.Stat_t
	if err := syscall.Stat("/proc/self/exe", &st); err != nil {
		return 0, fmt.Errorf("text pages: %w", err)
	}
	ranges, err := mappingsOf("/proc/self/maps", st.Dev, st.Ino)
	if err != nil {
		return 0, fmt.Errorf("text pages: %w", err)
	}
	var advised int64
	for _, r := range ranges {
		if err := madvise(r.start, r.end-r.start, unix.MADV_RANDOM); err != nil {
			return advised, fmt.Errorf("text pages: madvise random: %w", err)
		}
		if err := madvise(r.start, r.end-r.start, unix.MADV_PAGEOUT); err != nil {
			if errors.Is(err, unix.EINVAL) {
				return advised, errors.ErrUnsupported
			}
			return advised, fmt.Errorf("text pages: madvise pageout: %w", err)
		}
		advised += int64(r.end - r.start)
	}
	return advised, nil
}

// madvise is madvise(2) on an address range given as integers: the ranges
// come from /proc/self/maps, not from Go memory.
func madvise(start, length uintptr, advice int) error {
	if _, _, errno := unix.Syscall(unix.SYS_MADVISE, start, length, uintptr(advice)); errno != 0 {
		return errno
	}
	return nil
}

type addrRange struct{ start, end uintptr }

// mappingsOf returns the ranges of the maps file (/proc/PID/maps format)
// that map the file with device dev and inode ino.
func mappingsOf(path string, dev, ino uint64) ([]addrRange, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []addrRange
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// start-end perms offset major:minor inode [path]
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		if n, err := strconv.ParseUint(fields[4], 10, 64); err != nil || n != ino || ino == 0 {
			continue
		}
		major, minor, ok := hexPair(fields[3], ":")
		if !ok || unix.Mkdev(uint32(major), uint32(minor)) != dev {
			continue
		}
		start, end, ok := hexPair(fields[0], "-")
		if !ok || end <= start {
			continue
		}
		out = append(out, addrRange{uintptr(start), uintptr(end)})
	}
	return out, sc.Err()
}

// hexPair parses two hexadecimal numbers joined by sep ("7f00-7f10",
// "fd:01").
func hexPair(s, sep string) (uint64, uint64, bool) {
	a, b, ok := strings.Cut(s, sep)
	if !ok {
		return 0, 0, false
	}
	x, err1 := strconv.ParseUint(a, 16, 64)
	y, err2 := strconv.ParseUint(b, 16, 64)
	return x, y, err1 == nil && err2 == nil
}
