package agent

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"

	"github.com/orch-dev/orch/runtime/image"
)

// ImagePuller fetches an image that is not in the node's store into dst,
// the store the agent opened. runtime/registry implements it; pullSecrets
// are the pod's imagePullSecrets, already read.
type ImagePuller interface {
	Pull(ctx context.Context, dst *image.Store, ref string, pullSecrets []v1.Secret) (image.Image, error)
}

// errNoRegistry explains why a missing image cannot be had.
var errNoRegistry = errors.New(`pulling from registries is not available yet on this node; import the image with "orch images import FILE.tar" or drop the tar in DATA/agent/images/import`)

// errImagePullShown is how long a failed pull shows as ErrImagePull
// before ImagePullBackOff.
const errImagePullShown = 2 * time.Second

// waitingError is why a container cannot start yet, with when to retry.
type waitingError struct {
	waiting *v1.ContainerStateWaiting
	retry   time.Duration
}

// ensureImage makes c's image present according to its pull policy,
// recording the kubelet's events, and backing off failed pulls.
func (a *Agent) ensureImage(ctx context.Context, pod *v1.Pod, c *v1.Container, ref string) (image.Image, *waitingError) {
	policy := c.ImagePullPolicy
	if policy == "" {
		policy = v1.PullIfNotPresent
		if tagOf(c.Image) == "latest" {
			policy = v1.PullAlways
		}
	}
	img, err := a.images.Get(c.Image)
	present := err == nil
	if present && (policy != v1.PullAlways || a.puller == nil) {
		a.events.podEvent(pod, ref, v1.EventTypeNormal, "Pulled", "Container image %q already present on machine", c.Image)
		return img, nil
	}
	if !present && policy == v1.PullNever {
		msg := fmt.Sprintf("Container image %q is not present with pull policy of Never", c.Image)
		a.events.podEvent(pod, ref, v1.EventTypeWarning, "ErrImageNeverPull", "%s", msg)
		return image.Image{}, &waitingError{waiting: &v1.ContainerStateWaiting{Reason: reasonErrImageNeverPull, Message: msg}, retry: 10 * time.Second}
	}
	key := string(pod.UID) + "/" + c.Name + "/" + c.Image
	now := a.now()
	if in, left := a.pullBackOff.inBackOff(key, now); in {
		// The pod's own status write wakes its worker at once; keep
		// showing ErrImagePull for a moment so that clients see it, as
		// they do with the kubelet, before ImagePullBackOff. The time
		// since the failure is the full delay less what is left of it.
		_, delay := a.pullBackOff.inBackOffSince(key, now, now)
		if since := delay - left; since < errImagePullShown {
			return image.Image{}, &waitingError{
				waiting: &v1.ContainerStateWaiting{Reason: reasonErrImagePull, Message: a.pullErr(key)},
				retry:   errImagePullShown - since,
			}
		}
		a.events.podEvent(pod, ref, v1.EventTypeNormal, "BackOff", "Back-off pulling image %q", c.Image)
		return image.Image{}, &waitingError{
			waiting: &v1.ContainerStateWaiting{Reason: reasonImagePullBackOff, Message: fmt.Sprintf("Back-off pulling image %q: %s", c.Image, a.lastPullErr(key))},
			retry:   left,
		}
	}
	a.events.podEvent(pod, ref, v1.EventTypeNormal, "Pulling", "Pulling image %q", c.Image)
	start := a.now()
	if a.puller == nil {
		err = fmt.Errorf("image %q is not in the node's image store: %w", c.Image, errNoRegistry)
	} else {
		img, err = a.puller.Pull(ctx, a.images, c.Image, a.pullSecrets(ctx, pod))
		a.metrics.ObserveImagePull(a.now().Sub(start), err)
	}
	if err == nil {
		a.requestNodeStatus() // status.images changed
		a.events.podEvent(pod, ref, v1.EventTypeNormal, "Pulled", "Successfully pulled image %q in %s", c.Image, a.now().Sub(start).Round(time.Millisecond))
		return img, nil
	}
	delay := a.pullBackOff.next(key, a.now(), a.now())
	a.setPullErr(key, err)
	a.events.podEvent(pod, ref, v1.EventTypeWarning, "Failed", "Failed to pull image %q: %v", c.Image, err)
	a.events.podEvent(pod, ref, v1.EventTypeWarning, "Failed", "Error: %s", reasonErrImagePull)
	return image.Image{}, &waitingError{
		waiting: &v1.ContainerStateWaiting{Reason: reasonErrImagePull, Message: err.Error()},
		// Show ErrImagePull briefly, then ImagePullBackOff until delay.
		retry: min(delay, errImagePullShown),
	}
}

func (a *Agent) setPullErr(key string, err error) {
	a.pullErrMu.Lock()
	defer a.pullErrMu.Unlock()
	if a.pullErrs == nil {
		a.pullErrs = map[string]string{}
	}
	a.pullErrs[key] = err.Error()
}

func (a *Agent) lastPullErr(key string) string {
	return reasonErrImagePull + ": " + a.pullErr(key)
}

// pullErr is the message of key's last failed pull.
func (a *Agent) pullErr(key string) string {
	a.pullErrMu.Lock()
	defer a.pullErrMu.Unlock()
	return a.pullErrs[key]
}

// pullSecrets reads the pod's imagePullSecrets; missing ones are skipped,
// as the kubelet does.
func (a *Agent) pullSecrets(ctx context.Context, pod *v1.Pod) []v1.Secret {
	var out []v1.Secret
	for _, ref := range pod.Spec.ImagePullSecrets {
		s, err := a.getSecret(ctx, pod.Namespace, ref.Name)
		if err == nil {
			out = append(out, *s)
		}
	}
	return out
}

// tagOf returns the tag of an image reference ("latest" when none and no
// digest).
func tagOf(ref string) string {
	if strings.Contains(ref, "@") {
		return ""
	}
	name := ref
	if i := strings.LastIndex(name, "/"); i >= 0 {
		name = name[i+1:]
	}
	if i := strings.LastIndex(name, ":"); i >= 0 {
		return name[i+1:]
	}
	return "latest"
}

// imageGCPeriod is how often the kubelet checks whether images must be
// garbage collected.
const imageGCPeriod = 5 * time.Minute

// collectImages removes unused images when the image filesystem fills,
// every imageGCPeriod until ctx ends, with the kubelet's default
// thresholds.
func (a *Agent) collectImages(ctx context.Context) {
	t := time.NewTicker(imageGCPeriod)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		a.collectImagesOnce(ctx)
	}
}

// collectImagesOnce runs one collection. An image is in use while the
// runtime keeps a container made from it, exited ones included: they may
// be restarted.
func (a *Agent) collectImagesOnce(ctx context.Context) {
	inUse := map[string]bool{}
	for _, c := range a.rt.ListContainers() {
		if id := c.Labels[labelImageID]; id != "" {
			inUse[id] = true
		}
	}
	res, err := a.images.GarbageCollect(ctx, image.GCPolicy{}, inUse, a.now())
	for _, img := range res.Removed {
		a.log.Info("removed unused image", "id", img.ID, "names", img.Names, "imageFSUsePercent", res.UsePercent)
	}
	if len(res.Removed) > 0 {
		a.requestNodeStatus() // status.images changed
	}
	if err != nil && ctx.Err() == nil {
		a.log.Warn("image garbage collection failed", "err", err)
	}
}
