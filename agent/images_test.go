package agent

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/orch-dev/orch/runtime/image"
)

// fakePuller answers pulls with err and counts them.
type fakePuller struct {
	err   error
	pulls int
}

func (f *fakePuller) Pull(ctx context.Context, dst *image.Store, ref string, secrets []v1.Secret) (image.Image, error) {
	f.pulls++
	if f.err != nil {
		return image.Image{}, f.err
	}
	return image.Image{ID: "sha256:" + strings.Repeat("a", 64), Names: []string{ref}}, nil
}

// TestEnsureImagePullStates walks a failing pull through the kubelet's
// states: ErrImagePull (kept for a moment however often the pod worker
// wakes), ImagePullBackOff until the back-off ends, then a new pull.
func TestEnsureImagePullStates(t *testing.T) {
	a, err := newAgent(Config{ServerURL: "https://127.0.0.1:1", DataDir: t.TempDir(), NodeName: "n", NodeIP: "127.0.0.1",
		HTTPClient: http.DefaultClient, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if a.images, err = image.Open(image.Options{Root: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	a.events = newEventRecorder(nil, "n", a.log)
	puller := &fakePuller{err: errors.New("pull 127.0.0.1:5000/x:1: manifest unknown")}
	a.puller = puller
	start := time.Unix(1_000_000, 0)
	clock := start
	a.now = func() time.Time { return clock }

	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default", UID: "uid"}}
	c := &v1.Container{Name: "c", Image: "127.0.0.1:5000/x:1"}
	steps := []struct {
		at     time.Duration
		reason string
		msg    string
		pulls  int
		retry  time.Duration
	}{
		{at: 0, reason: reasonErrImagePull, msg: "manifest unknown", pulls: 1, retry: 2 * time.Second},
		{at: 500 * time.Millisecond, reason: reasonErrImagePull, msg: "manifest unknown", pulls: 1, retry: 1500 * time.Millisecond},
		{at: 3 * time.Second, reason: reasonImagePullBackOff, msg: `Back-off pulling image "127.0.0.1:5000/x:1": ErrImagePull: pull 127.0.0.1:5000/x:1: manifest unknown`, pulls: 1, retry: 7 * time.Second},
		{at: 11 * time.Second, reason: reasonErrImagePull, msg: "manifest unknown", pulls: 2, retry: 2 * time.Second},
		{at: 14 * time.Second, reason: reasonImagePullBackOff, msg: "Back-off pulling image", pulls: 2, retry: 17 * time.Second},
	}
	for _, s := range steps {
		clock = start.Add(s.at)
		_, werr := a.ensureImage(context.Background(), pod, c, "spec.containers{c}")
		if werr == nil {
			t.Fatalf("at %v: ensureImage succeeded", s.at)
		}
		if werr.waiting.Reason != s.reason || !strings.Contains(werr.waiting.Message, s.msg) || puller.pulls != s.pulls || werr.retry != s.retry {
			t.Errorf("at %v: waiting %s %q, retry %v after %d pulls; want %s %q, retry %v after %d",
				s.at, werr.waiting.Reason, werr.waiting.Message, werr.retry, puller.pulls, s.reason, s.msg, s.retry, s.pulls)
		}
	}

	clock = start.Add(40 * time.Second)
	puller.err = nil
	img, werr := a.ensureImage(context.Background(), pod, c, "spec.containers{c}")
	if werr != nil || img.ID == "" || puller.pulls != 3 {
		t.Fatalf("pull after the back-off: %+v, %v, %d pulls", img, werr, puller.pulls)
	}
}

func TestNodeImageNames(t *testing.T) {
	for _, tc := range []struct {
		img  image.Image
		want []string
	}{
		{image.Image{ID: "sha256:1", Names: []string{"docker.io/library/busybox:1.36"}, RepoDigests: []string{"docker.io/library/busybox@sha256:a"}},
			[]string{"docker.io/library/busybox@sha256:a", "docker.io/library/busybox:1.36"}},
		{image.Image{ID: "sha256:1"}, []string{"sha256:1"}},
		{image.Image{ID: "sha256:1", Names: []string{"a:1", "a:2", "a:3", "a:4"}, RepoDigests: []string{"a@sha256:1", "b@sha256:1"}},
			[]string{"a@sha256:1", "b@sha256:1", "a:1", "a:2", "a:3"}},
	} {
		if got := nodeImageNames(tc.img); !slices.Equal(got, tc.want) {
			t.Errorf("nodeImageNames(%+v) = %v, want %v", tc.img, got, tc.want)
		}
	}
}
