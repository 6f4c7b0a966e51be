package image

import (
	"archive/tar"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// gcStore is a store whose filesystem is 100 bytes: base plus 10 per image.
func gcStore(t *testing.T, base *uint64) *Store {
	t.Helper()
	s, err := Open(Options{Root: t.TempDir(), Platform: Platform{OS: "linux", Architecture: "amd64"}})
	if err != nil {
		t.Fatal(err)
	}
	s.usage = func(dir string) (uint64, uint64, error) {
		recs, err := filepath.Glob(filepath.Join(dir, "images", "*.json"))
		return *base + 10*uint64(len(recs)), 100, err
	}
	return s
}

// importImage imports name: a layer shared by all images and one of its own.
func importImage(t *testing.T, s *Store, name string) Image {
	t.Helper()
	shared := makeTar(t, []tarFile{{name: "bin/", typ: tar.TypeDir}, {name: "bin/tool", body: "shared"}})
	own := makeTar(t, []tarFile{{name: "etc/", typ: tar.TypeDir}, {name: "etc/name", body: name}})
	manifest, _ := json.Marshal([]map[string]any{{"Config": "config.json", "RepoTags": []string{name}, "Layers": []string{"a.tar", "b.tar"}}})
	tarball := makeTar(t, []tarFile{
		{name: "manifest.json", body: string(manifest)},
		{name: "config.json", body: string(configFor(t, "amd64", shared, own))},
		{name: "a.tar", body: string(shared)},
		{name: "b.tar", body: string(own)},
	})
	imgs, err := s.ImportFile(context.Background(), writeFile(t, tarball))
	if err != nil || len(imgs) != 1 {
		t.Fatalf("import %s: %v, %v", name, imgs, err)
	}
	return imgs[0]
}

func TestGarbageCollect(t *testing.T) {
	ctx := context.Background()
	base := uint64(0)
	s := gcStore(t, &base)
	ids := map[string]string{}
	for _, n := range []string{"a:1", "b:1", "c:1", "d:1", "e:1"} {
		ids[n] = importImage(t, s, n).ID
	}
	t0 := time.Unix(1_000_000, 0)
	gc := func(at time.Duration, inUse ...string) ([]string, GCResult, error) {
		t.Helper()
		use := map[string]bool{}
		for _, n := range inUse {
			use[ids[n]] = true
		}
		res, err := s.GarbageCollect(ctx, GCPolicy{}, use, t0.Add(at))
		var removed []string
		for _, img := range res.Removed {
			removed = append(removed, strings.TrimPrefix(img.Names[0], "docker.io/library/"))
		}
		return removed, res, err
	}
	expect := func(what string, got []string, err error, want []string, wantErr string) {
		t.Helper()
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%s: removed %v, want %v", what, got, want)
		}
		if (wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), wantErr)) {
			t.Errorf("%s: error %v, want %q", what, err, wantErr)
		}
	}

	// 50%: below the high threshold nothing goes; the images are seen.
	removed, res, err := gc(0)
	expect("at 50%", removed, err, nil, "")
	if res.UsePercent != 50 {
		t.Errorf("UsePercent = %d, want 50", res.UsePercent)
	}
	// c and d are used a minute later.
	removed, res, err = gc(time.Minute, "c:1", "d:1")
	expect("in use", removed, err, nil, "")

	// 90%: one image must go to reach 80%: the least recently used one
	// among those not in use (a, b and e were last used at the start).
	base = 40
	removed, res, err = gc(10*time.Minute, "d:1")
	expect("at 90%", removed, err, []string{"a:1"}, "")
	if res.UsePercent != 80 {
		t.Errorf("UsePercent = %d, want 80", res.UsePercent)
	}
	if _, err := s.Get("a:1"); err == nil {
		t.Error("a:1 is still in the store")
	}
	// Its own layer went, the shared one stayed for the others.
	if dirs, _ := os.ReadDir(filepath.Join(s.root, "layers")); len(dirs) != 5 {
		t.Errorf("%d layers left, want 5 (one shared, four own)", len(dirs))
	}

	// 100%: two go, b and e (unused since the start) before c.
	base = 60
	removed, _, err = gc(11*time.Minute, "d:1")
	expect("at 100%", removed, err, []string{"b:1", "e:1"}, "")

	// A new image is too young to go, d is in use, c goes, and the store
	// stays above the low threshold: that is reported.
	ids["f:1"] = importImage(t, s, "f:1").ID
	base = 70
	removed, _, err = gc(12*time.Minute, "d:1")
	expect("young and in use", removed, err, []string{"c:1"}, "image filesystem is 90% full after removing 1 unused images; wanted 80%")
	for _, n := range []string{"d:1", "f:1"} {
		if _, err := s.Get(n); err != nil {
			t.Errorf("%s: %v", n, err)
		}
	}
}

func TestGCPolicyChecked(t *testing.T) {
	base := uint64(0)
	s := gcStore(t, &base)
	for _, p := range []GCPolicy{{HighThresholdPercent: 101}, {HighThresholdPercent: 70, LowThresholdPercent: 80}, {LowThresholdPercent: -1}} {
		if _, err := s.GarbageCollect(context.Background(), p, nil, time.Now()); err == nil || !strings.Contains(err.Error(), "image GC thresholds") {
			t.Errorf("GarbageCollect(%+v) = %v, want a threshold error", p, err)
		}
	}
}

func TestStatfsUsage(t *testing.T) {
	used, total, err := statfsUsage(t.TempDir())
	if err != nil || total == 0 || used > total {
		t.Fatalf("statfsUsage = %d, %d, %v", used, total, err)
	}
}
