package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

type tarFile struct {
	name, body, link string
	typ              byte
	mode             int64
}

func makeTar(t *testing.T, files []tarFile) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		typ := f.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		mode := f.mode
		if mode == 0 {
			mode = 0o644
			if typ == tar.TypeDir {
				mode = 0o755
			}
		}
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Typeflag: typ, Mode: mode, Size: int64(len(f.body)), Linkname: f.link}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(f.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

func gz(t *testing.T, b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

func configFor(t *testing.T, arch string, layers ...[]byte) []byte {
	t.Helper()
	var diffIDs []string
	for _, l := range layers {
		diffIDs = append(diffIDs, sha(l))
	}
	b, err := json.Marshal(map[string]any{
		"architecture": arch, "os": "linux",
		"config": map[string]any{"Cmd": []string{"sh"}, "Env": []string{"PATH=/bin"}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t *testing.T, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "image.tar")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

var (
	layer1 = []tarFile{
		{name: "etc/", typ: tar.TypeDir},
		{name: "etc/a", body: "a"},
		{name: "etc/b", body: "b"},
		{name: "d/", typ: tar.TypeDir},
		{name: "d/x", body: "x"},
		{name: "bin/", typ: tar.TypeDir},
		{name: "bin/tool", body: "#!", mode: 0o755},
		{name: "bin/sh", typ: tar.TypeSymlink, link: "tool"},
		{name: "bin/hard", typ: tar.TypeLink, link: "bin/tool"},
	}
	layer2 = []tarFile{
		{name: "etc/.wh.a"},
		{name: "d/", typ: tar.TypeDir},
		{name: "d/.wh..wh..opq"},
		{name: "d/y", body: "y"},
	}
)

func dockerSave(t *testing.T, tag string, l1, l2 []byte) []byte {
	t.Helper()
	cfg := configFor(t, "amd64", l1, l2)
	manifest, _ := json.Marshal([]map[string]any{{
		"Config": "config.json", "RepoTags": []string{tag}, "Layers": []string{"l1/layer.tar", "l2/layer.tar"},
	}})
	return makeTar(t, []tarFile{
		{name: "manifest.json", body: string(manifest)},
		{name: "config.json", body: string(cfg)},
		{name: "l1/layer.tar", body: string(l1)},
		{name: "blobs/l2", body: string(l2)},
		// docker ≥ 25 links layers into blobs/.
		{name: "l2/layer.tar", typ: tar.TypeSymlink, link: "../blobs/l2"},
	})
}

func requireRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: whiteouts are device nodes, opaque dirs trusted xattrs")
	}
}

func TestImportDockerSaveWhiteouts(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	s, err := Open(Options{Root: t.TempDir(), Platform: Platform{OS: "linux", Architecture: "amd64"}})
	if err != nil {
		t.Fatal(err)
	}
	l1, l2 := makeTar(t, layer1), makeTar(t, layer2)
	imgs, err := s.ImportFile(ctx, writeFile(t, dockerSave(t, "example.com/app:v1", l1, l2)))
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 1 || imgs[0].Names[0] != "example.com/app:v1" || len(imgs[0].Layers) != 2 {
		t.Fatalf("imported %+v", imgs)
	}
	lowers, err := s.LowerDirs("example.com/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	top, bottom := lowers[0], lowers[1]
	if st, err := os.Lstat(filepath.Join(top, "etc/a")); err != nil || st.Mode()&os.ModeCharDevice == 0 || st.Sys().(*syscall.Stat_t).Rdev != 0 {
		t.Errorf("etc/a whiteout: %v %v", st, err)
	}
	buf := make([]byte, 8)
	if n, err := unix.Lgetxattr(filepath.Join(top, "d"), "trusted.overlay.opaque", buf); err != nil || string(buf[:n]) != "y" {
		t.Errorf("d not opaque: %q %v", buf[:n], err)
	}
	if l, err := os.Readlink(filepath.Join(bottom, "bin/sh")); err != nil || l != "tool" {
		t.Errorf("bin/sh = %q %v", l, err)
	}
	if st, err := os.Stat(filepath.Join(bottom, "bin/hard")); err != nil || st.Sys().(*syscall.Stat_t).Nlink != 2 {
		t.Errorf("hard link: %v %v", st, err)
	}

	// The merged view is what a container sees.
	mnt, work, upper := t.TempDir(), t.TempDir(), t.TempDir()
	if err := unix.Mount("overlay", mnt, "overlay", 0, "lowerdir="+top+":"+bottom+",upperdir="+upper+",workdir="+work); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	for p, want := range map[string]bool{"etc/a": false, "etc/b": true, "d/x": false, "d/y": true, "bin/tool": true} {
		_, err := os.Lstat(filepath.Join(mnt, p))
		if (err == nil) != want {
			t.Errorf("%s exists = %v, want %v", p, err == nil, want)
		}
	}
	unix.Unmount(mnt, unix.MNT_DETACH)

	// A second image sharing layer 1 reuses it; removing one keeps it.
	l3 := makeTar(t, []tarFile{{name: "other", body: "o"}})
	if _, err := s.ImportFile(ctx, writeFile(t, dockerSave(t, "app2", l1, l3))); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove("example.com/app:v1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get("example.com/app:v1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after Remove: %v", err)
	}
	if _, err := os.Stat(bottom); err != nil {
		t.Errorf("shared layer removed: %v", err)
	}
	if _, err := os.Stat(top); err == nil {
		t.Errorf("unused layer kept")
	}
	list, _ := s.List()
	if len(list) != 1 || list[0].Names[0] != "docker.io/library/app2:latest" {
		t.Errorf("List = %+v", list)
	}
}

func TestImportOCILayoutMultiArch(t *testing.T) {
	requireRoot(t)
	blobs := map[string][]byte{}
	add := func(b []byte) string { d := sha(b); blobs[d] = b; return d }
	manifestFor := func(arch string) (string, int) {
		layer := makeTar(t, []tarFile{{name: "arch", body: arch}})
		gzLayer := gz(t, layer)
		cfg := configFor(t, arch, layer)
		m, _ := json.Marshal(map[string]any{
			"schemaVersion": 2, "mediaType": MediaTypeOCIManifest,
			"config": map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": add(cfg), "size": len(cfg)},
			"layers": []map[string]any{{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": add(gzLayer), "size": len(gzLayer)}},
		})
		return add(m), len(m)
	}
	amd, amdSize := manifestFor("amd64")
	arm, armSize := manifestFor("arm64")
	index, _ := json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": MediaTypeOCIIndex,
		"manifests": []map[string]any{
			{"mediaType": MediaTypeOCIManifest, "digest": amd, "size": amdSize, "platform": map[string]string{"os": "linux", "architecture": "amd64"}},
			{"mediaType": MediaTypeOCIManifest, "digest": arm, "size": armSize, "platform": map[string]string{"os": "linux", "architecture": "arm64", "variant": "v8"}},
		},
	})
	indexDigest := add(index)
	top, _ := json.Marshal(map[string]any{"schemaVersion": 2, "manifests": []map[string]any{{
		"mediaType": MediaTypeOCIIndex, "digest": indexDigest, "size": len(index),
		"annotations": map[string]string{annotationRefName: "localhost:5000/multi:1"},
	}}})
	files := []tarFile{{name: "oci-layout", body: `{"imageLayoutVersion":"1.0.0"}`}, {name: "index.json", body: string(top)}}
	for d, b := range blobs {
		files = append(files, tarFile{name: "blobs/sha256/" + hexOf(d), body: string(b)})
	}
	file := writeFile(t, makeTar(t, files))

	for _, arch := range []string{"amd64", "arm64"} {
		t.Run(arch, func(t *testing.T) {
			s, err := Open(Options{Root: t.TempDir(), Platform: Platform{OS: "linux", Architecture: arch}})
			if err != nil {
				t.Fatal(err)
			}
			imgs, err := s.ImportFile(context.Background(), file)
			if err != nil {
				t.Fatal(err)
			}
			if len(imgs) != 1 || imgs[0].Platform.Architecture != arch || imgs[0].Names[0] != "localhost:5000/multi:1" {
				t.Fatalf("imported %+v", imgs)
			}
			// The repo digest is the index's, which index.json points at.
			if want := []string{"localhost:5000/multi@" + indexDigest}; !slices.Equal(imgs[0].RepoDigests, want) {
				t.Errorf("repo digests %v, want %v", imgs[0].RepoDigests, want)
			}
			lowers, err := s.LowerDirs("localhost:5000/multi:1")
			if err != nil {
				t.Fatal(err)
			}
			if b, err := os.ReadFile(filepath.Join(lowers[0], "arch")); err != nil || string(b) != arch {
				t.Errorf("arch file = %q, %v", b, err)
			}
		})
	}
	s, _ := Open(Options{Root: t.TempDir(), Platform: Platform{OS: "linux", Architecture: "riscv64"}})
	if _, err := s.ImportFile(context.Background(), file); err == nil {
		t.Errorf("import for a platform the index lacks succeeded")
	}
}

func TestUnpackRejectsEscapes(t *testing.T) {
	requireRoot(t)
	tests := []struct {
		name  string
		files []tarFile
	}{
		{"through symlink", []tarFile{{name: "evil", typ: tar.TypeSymlink, link: "/tmp"}, {name: "evil/x", body: "x"}}},
		{"dotdot is clamped", []tarFile{{name: "../../outside", body: "x"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			outer := t.TempDir()
			dst := filepath.Join(outer, "layer")
			os.Mkdir(dst, 0o755)
			err := unpackLayer(dst, bytes.NewReader(makeTar(t, tt.files)))
			if _, serr := os.Stat(filepath.Join(outer, "outside")); serr == nil {
				t.Errorf("wrote outside the layer")
			}
			if _, serr := os.Stat("/tmp/x"); serr == nil && tt.name == "through symlink" && err == nil {
				t.Errorf("followed a symlink out of the layer")
			}
		})
	}
}

func TestNormalize(t *testing.T) {
	for in, want := range map[string]string{
		"busybox":                        "docker.io/library/busybox:latest",
		"busybox:1.36":                   "docker.io/library/busybox:1.36",
		"user/app":                       "docker.io/user/app:latest",
		"localhost:5000/app":             "localhost:5000/app:latest",
		"ghcr.io/o/a:v1":                 "ghcr.io/o/a:v1",
		"busybox@sha256:" + sha256Hex(1): "docker.io/library/busybox@sha256:" + sha256Hex(1),
	} {
		got, err := Normalize(in)
		if err != nil || got != want {
			t.Errorf("Normalize(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "Busybox", "a b", "sha256:abc"} {
		if _, err := Normalize(bad); err == nil {
			t.Errorf("Normalize(%q) succeeded", bad)
		}
	}
}

func sha256Hex(i int) string { return hexOf(sha([]byte{byte(i)})) }
