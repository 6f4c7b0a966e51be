package image

import (
	"archive/tar"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
)

func TestImageRef(t *testing.T) {
	img := Image{ID: "sha256:1d", RepoDigests: []string{"docker.io/library/busybox@sha256:aa", "example.com/tools/busybox@sha256:bb"}}
	for _, tc := range []struct {
		img  Image
		ref  string
		want string
	}{
		{img, "busybox:1.36", "docker.io/library/busybox@sha256:aa"},
		{img, "docker.io/library/busybox", "docker.io/library/busybox@sha256:aa"},
		{img, "example.com/tools/busybox:v1", "example.com/tools/busybox@sha256:bb"},
		{img, "example.com/tools/busybox@sha256:bb", "example.com/tools/busybox@sha256:bb"},
		// Another repository's name for the same image: the first digest.
		{img, "localhost:5000/copy:1", "docker.io/library/busybox@sha256:aa"},
		{img, "not a reference", "docker.io/library/busybox@sha256:aa"},
		// No repo digest (a record from before they were kept): the ID.
		{Image{ID: "sha256:1d"}, "busybox", "sha256:1d"},
	} {
		if got := tc.img.ImageRef(tc.ref); got != tc.want {
			t.Errorf("ImageRef(%q) = %q, want %q", tc.ref, got, tc.want)
		}
	}
}

func TestRepository(t *testing.T) {
	for ref, want := range map[string]string{
		"docker.io/library/busybox:1.36":  "docker.io/library/busybox",
		"localhost:5000/app:v1":           "localhost:5000/app",
		"localhost:5000/app":              "localhost:5000/app",
		"localhost:5000/app@sha256:abcd":  "localhost:5000/app",
		"example.com/a/b:latest@sha256:0": "example.com/a/b:latest",
	} {
		if got := repository(ref); got != want {
			t.Errorf("repository(%q) = %q, want %q", ref, got, want)
		}
	}
}

// TestImportDockerSaveRepoDigest checks the repo digest of a docker-save
// import against the manifest containerd writes for it, spelled out here
// byte for byte: schema 2, the config, and each layer blob as stored with
// its compression's media type.
func TestImportDockerSaveRepoDigest(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	s, err := Open(Options{Root: t.TempDir(), Platform: Platform{OS: "linux", Architecture: "amd64"}})
	if err != nil {
		t.Fatal(err)
	}
	l1 := makeTar(t, []tarFile{{name: "a", body: "a"}})
	l2raw := makeTar(t, []tarFile{{name: "b", body: "b"}})
	l2 := gz(t, l2raw)
	cfg := configFor(t, "amd64", l1, l2raw)
	save := func(tag string) []byte {
		m, _ := json.Marshal([]map[string]any{{"Config": "config.json", "RepoTags": []string{tag}, "Layers": []string{"l1/layer.tar", "l2/layer.tar"}}})
		return makeTar(t, []tarFile{
			{name: "manifest.json", body: string(m)},
			{name: "config.json", body: string(cfg)},
			{name: "l1/layer.tar", body: string(l1)},
			{name: "l2/layer.tar", body: string(l2)},
		})
	}
	want := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",`+
		`"config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":%q,"size":%d},`+
		`"layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar","digest":%q,"size":%d},`+
		`{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":%q,"size":%d}]}`,
		sha(cfg), len(cfg), sha(l1), len(l1), sha(l2), len(l2))
	imgs, err := s.ImportFile(ctx, writeFile(t, save("example.com/app:v1")))
	if err != nil {
		t.Fatal(err)
	}
	wantRef := "example.com/app@" + sha([]byte(want))
	if len(imgs) != 1 || !slices.Equal(imgs[0].RepoDigests, []string{wantRef}) {
		t.Fatalf("repo digests %v, want [%s]", imgs[0].RepoDigests, wantRef)
	}

	// The same image under another tag keeps both repo digests, the
	// newest first; the stored record has them.
	if _, err := s.ImportFile(ctx, writeFile(t, save("example.com/mirror/app:v2"))); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get("example.com/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"example.com/mirror/app@" + sha([]byte(want)), wantRef}; !slices.Equal(got.RepoDigests, want) {
		t.Errorf("repo digests after a second tag = %v, want %v", got.RepoDigests, want)
	}
	if got.ImageRef("example.com/app:v1") != wantRef {
		t.Errorf("ImageRef = %s, want %s", got.ImageRef("example.com/app:v1"), wantRef)
	}
}

// TestImportDockerSaveWithOCIIndex: docker ≥ 25 writes both layouts;
// containerd imports by index.json, whose manifest digest is the repo
// digest.
func TestImportDockerSaveWithOCIIndex(t *testing.T) {
	requireRoot(t)
	s, err := Open(Options{Root: t.TempDir(), Platform: Platform{OS: "linux", Architecture: "amd64"}})
	if err != nil {
		t.Fatal(err)
	}
	l1 := makeTar(t, []tarFile{{name: "a", body: "a"}})
	cfg := configFor(t, "amd64", l1)
	manifestDigest := sha([]byte("the manifest docker wrote"))
	saved, _ := json.Marshal([]map[string]any{{"Config": "config.json", "RepoTags": []string{"busybox:1.36"}, "Layers": []string{"l1.tar"}}})
	index, _ := json.Marshal(map[string]any{"schemaVersion": 2, "manifests": []map[string]any{{
		"mediaType": MediaTypeOCIManifest, "digest": manifestDigest, "size": 100,
		"annotations": map[string]string{annotationContainerdName: "docker.io/library/busybox:1.36", annotationRefName: "1.36"},
	}}})
	tarball := makeTar(t, []tarFile{
		{name: "manifest.json", body: string(saved)},
		{name: "config.json", body: string(cfg)},
		{name: "l1.tar", body: string(l1)},
		{name: "oci-layout", body: `{"imageLayoutVersion":"1.0.0"}`},
		{name: "index.json", body: string(index)},
		{name: "blobs/", typ: tar.TypeDir},
	})
	imgs, err := s.ImportFile(context.Background(), writeFile(t, tarball))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"docker.io/library/busybox@" + manifestDigest}; len(imgs) != 1 || !slices.Equal(imgs[0].RepoDigests, want) {
		t.Errorf("repo digests %v, want %v", imgs[0].RepoDigests, want)
	}
}
