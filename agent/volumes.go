package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	authenticationv1 "k8s.io/api/authentication/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/orch-dev/orch/agent/apiclient"
)

// setupVolumes prepares every volume of the pod under
// pods/<uid>/volumes/<name> and returns the host directory (or file) each
// one is bind mounted from. ConfigMap, Secret, downward API and projected
// contents are rewritten on every call, so a restarted container sees
// current data.
func (a *Agent) setupVolumes(ctx context.Context, pod *v1.Pod, podIP string) (map[string]string, error) {
	base := filepath.Join(a.podDir(pod.UID), "volumes")
	out := map[string]string{}
	for i := range pod.Spec.Volumes {
		vol := &pod.Spec.Volumes[i]
		dir := filepath.Join(base, vol.Name)
		path, err := a.setupVolume(ctx, pod, vol, dir, podIP)
		if err != nil {
			a.events.podEvent(pod, "", v1.EventTypeWarning, "FailedMount", "MountVolume.SetUp failed for volume %q : %v", vol.Name, err)
			return nil, fmt.Errorf("volume %q: %w", vol.Name, err)
		}
		out[vol.Name] = path
	}
	return out, nil
}

func (a *Agent) setupVolume(ctx context.Context, pod *v1.Pod, vol *v1.Volume, dir, podIP string) (string, error) {
	src := vol.VolumeSource
	switch {
	case src.EmptyDir != nil:
		if err := os.MkdirAll(dir, 0o777); err != nil {
			return "", err
		}
		if err := os.Chmod(dir, 0o777); err != nil {
			return "", err
		}
		if src.EmptyDir.Medium == v1.StorageMediumMemory {
			opts := "mode=0777"
			if l := src.EmptyDir.SizeLimit; l != nil && !l.IsZero() {
				opts += ",size=" + strconv.FormatInt(l.Value(), 10)
			}
			if err := ensureTmpfs(dir, opts); err != nil {
				return "", err
			}
		}
		return dir, nil
	case src.HostPath != nil:
		return src.HostPath.Path, checkHostPath(src.HostPath)
	case src.ConfigMap != nil:
		files, err := a.configMapFiles(ctx, pod.Namespace, src.ConfigMap.Name, src.ConfigMap.Items, src.ConfigMap.Optional, src.ConfigMap.DefaultMode)
		if err != nil {
			return "", err
		}
		return dir, writeVolumeFiles(dir, files, false)
	case src.Secret != nil:
		files, err := a.secretFiles(ctx, pod.Namespace, src.Secret.SecretName, src.Secret.Items, src.Secret.Optional, src.Secret.DefaultMode)
		if err != nil {
			return "", err
		}
		return dir, writeVolumeFiles(dir, files, true)
	case src.DownwardAPI != nil:
		files, err := a.downwardFiles(pod, src.DownwardAPI.Items, src.DownwardAPI.DefaultMode, podIP)
		if err != nil {
			return "", err
		}
		return dir, writeVolumeFiles(dir, files, false)
	case src.Projected != nil:
		var files []volumeFile
		for _, s := range src.Projected.Sources {
			var fs []volumeFile
			var err error
			mode := src.Projected.DefaultMode
			switch {
			case s.ConfigMap != nil:
				fs, err = a.configMapFiles(ctx, pod.Namespace, s.ConfigMap.Name, s.ConfigMap.Items, s.ConfigMap.Optional, mode)
			case s.Secret != nil:
				fs, err = a.secretFiles(ctx, pod.Namespace, s.Secret.Name, s.Secret.Items, s.Secret.Optional, mode)
			case s.DownwardAPI != nil:
				fs, err = a.downwardFiles(pod, s.DownwardAPI.Items, mode, podIP)
			case s.ServiceAccountToken != nil:
				fs, err = a.tokenFile(ctx, pod, vol.Name, dir, s.ServiceAccountToken, mode)
			}
			if err != nil {
				return "", err
			}
			files = append(files, fs...)
		}
		return dir, writeVolumeFiles(dir, files, true)
	}
	return "", errors.New("volume type is not supported by this node")
}

// checkHostPath applies a hostPath volume's type.
func checkHostPath(hp *v1.HostPathVolumeSource) error {
	t := v1.HostPathUnset
	if hp.Type != nil {
		t = *hp.Type
	}
	fi, err := os.Stat(hp.Path)
	switch t {
	case v1.HostPathUnset:
		return nil
	case v1.HostPathDirectoryOrCreate:
		if os.IsNotExist(err) {
			return os.MkdirAll(hp.Path, 0o755)
		}
		if err == nil && !fi.IsDir() {
			return fmt.Errorf("hostPath type check failed: %s is not a directory", hp.Path)
		}
		return nil
	case v1.HostPathFileOrCreate:
		if os.IsNotExist(err) {
			if err := os.MkdirAll(filepath.Dir(hp.Path), 0o755); err != nil {
				return err
			}
			f, err := os.OpenFile(hp.Path, os.O_CREATE|os.O_RDONLY, 0o644)
			if err != nil {
				return err
			}
			return f.Close()
		}
		if err == nil && !fi.Mode().IsRegular() {
			return fmt.Errorf("hostPath type check failed: %s is not a file", hp.Path)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("hostPath type check failed: %s does not exist", hp.Path)
	}
	ok := true
	switch t {
	case v1.HostPathDirectory:
		ok = fi.IsDir()
	case v1.HostPathFile:
		ok = fi.Mode().IsRegular()
	case v1.HostPathSocket:
		ok = fi.Mode()&os.ModeSocket != 0
	case v1.HostPathCharDev:
		ok = fi.Mode()&os.ModeCharDevice != 0
	case v1.HostPathBlockDev:
		ok = fi.Mode()&os.ModeDevice != 0 && fi.Mode()&os.ModeCharDevice == 0
	}
	if !ok {
		return fmt.Errorf("hostPath type check failed: %s is not a %s", hp.Path, t)
	}
	return nil
}

// volumeFile is one file of a ConfigMap, Secret, downward API or projected
// volume.
type volumeFile struct {
	path string
	data []byte
	mode os.FileMode
}

func fileMode(item *int32, def *int32) os.FileMode {
	switch {
	case item != nil:
		return os.FileMode(*item) & 0o777
	case def != nil:
		return os.FileMode(*def) & 0o777
	}
	return 0o644
}

// keyFiles projects data by items (all keys when none).
func keyFiles(data map[string][]byte, items []v1.KeyToPath, defMode *int32, kind, ns, name string, optional bool) ([]volumeFile, error) {
	var out []volumeFile
	if len(items) == 0 {
		for k, v := range data {
			out = append(out, volumeFile{path: k, data: v, mode: fileMode(nil, defMode)})
		}
		sort.Slice(out, func(i, j int) bool { return out[i].path < out[j].path })
		return out, nil
	}
	for _, it := range items {
		v, ok := data[it.Key]
		if !ok {
			if optional {
				continue
			}
			return nil, fmt.Errorf("configured to use key %s of %s %s/%s, but the key is missing", it.Key, kind, ns, name)
		}
		out = append(out, volumeFile{path: it.Path, data: v, mode: fileMode(it.Mode, defMode)})
	}
	return out, nil
}

func (a *Agent) configMapFiles(ctx context.Context, ns, name string, items []v1.KeyToPath, optional *bool, defMode *int32) ([]volumeFile, error) {
	cm, err := a.getConfigMap(ctx, ns, name)
	if err != nil {
		if isOptional(optional) && isNotFound(err) {
			return nil, nil
		}
		return nil, err
	}
	data := map[string][]byte{}
	for k, v := range cm.Data {
		data[k] = []byte(v)
	}
	for k, v := range cm.BinaryData {
		data[k] = v
	}
	return keyFiles(data, items, defMode, "configmap", ns, name, isOptional(optional))
}

func (a *Agent) secretFiles(ctx context.Context, ns, name string, items []v1.KeyToPath, optional *bool, defMode *int32) ([]volumeFile, error) {
	s, err := a.getSecret(ctx, ns, name)
	if err != nil {
		if isOptional(optional) && isNotFound(err) {
			return nil, nil
		}
		return nil, err
	}
	return keyFiles(s.Data, items, defMode, "secret", ns, name, isOptional(optional))
}

func (a *Agent) downwardFiles(pod *v1.Pod, items []v1.DownwardAPIVolumeFile, defMode *int32, podIP string) ([]volumeFile, error) {
	var out []volumeFile
	for _, it := range items {
		var v string
		var err error
		switch {
		case it.FieldRef != nil:
			v, err = podFieldValue(pod, it.FieldRef.FieldPath, a.hostIP, podIP)
		case it.ResourceFieldRef != nil:
			c := specContainer(pod, it.ResourceFieldRef.ContainerName)
			if c == nil {
				return nil, fmt.Errorf("downward API item %s: unknown container %q", it.Path, it.ResourceFieldRef.ContainerName)
			}
			v, err = resourceFieldValue(pod, c, it.ResourceFieldRef, a.allocatable())
		}
		if err != nil {
			return nil, err
		}
		out = append(out, volumeFile{path: it.Path, data: []byte(v), mode: fileMode(it.Mode, defMode)})
	}
	return out, nil
}

// Projected service account tokens are requested from the API server
// (TokenRequest bound to the pod) and kept until 80% of their lifetime has
// passed, the kubelet's rule, or 24 hours, whichever comes first: a
// container (re)start reuses the current token, and refreshTokens, called
// on every pod sync, rewrites the volume when one is due. What is known
// about each token (not the token, which lives only on the volume's tmpfs)
// is kept in pods/<uid>/tokens/<volume>.json, so an agent restart does not
// ask again.
const (
	tokenRefreshFraction = 0.8
	tokenMaxAge          = 24 * time.Hour
)

// tokenState describes a token written to a projected volume.
type tokenState struct {
	Audience          string    `json:"audience,omitempty"`
	ExpirationSeconds int64     `json:"expirationSeconds"`
	Expires           time.Time `json:"expires"`
}

// refreshAt is when the token must be replaced.
func (s tokenState) refreshAt() time.Time {
	ttl := time.Duration(s.ExpirationSeconds) * time.Second
	issued := s.Expires.Add(-ttl)
	at := issued.Add(time.Duration(float64(ttl) * tokenRefreshFraction))
	if maxAt := issued.Add(tokenMaxAge); maxAt.Before(at) {
		return maxAt
	}
	return at
}

func (a *Agent) tokenStatePath(pod *v1.Pod, volume string) string {
	return filepath.Join(a.podDir(pod.UID), "tokens", volume+".json")
}

// loadTokenStates returns the states of a volume's tokens by file path.
func (a *Agent) loadTokenStates(pod *v1.Pod, volume string) map[string]tokenState {
	states := map[string]tokenState{}
	if b, err := os.ReadFile(a.tokenStatePath(pod, volume)); err == nil {
		_ = json.Unmarshal(b, &states) // unreadable: tokens are asked for again
	}
	return states
}

func (a *Agent) saveTokenStates(pod *v1.Pod, volume string, states map[string]tokenState) error {
	path := a.tokenStatePath(pod, volume)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	b, err := json.Marshal(states)
	if err != nil {
		return err
	}
	return writeFileAtomic(path, b, 0o600)
}

// tokenFile returns the projected token of p for the volume in dir: the
// one written before while it is fresh, else a new one from the server.
func (a *Agent) tokenFile(ctx context.Context, pod *v1.Pod, volume, dir string, p *v1.ServiceAccountTokenProjection, defMode *int32) ([]volumeFile, error) {
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	exp := int64(3600)
	if p.ExpirationSeconds != nil {
		exp = *p.ExpirationSeconds
	}
	mode := fileMode(nil, defMode)
	if defMode == nil {
		mode = 0o600
	}
	states := a.loadTokenStates(pod, volume)
	if st, ok := states[p.Path]; ok && st.Audience == p.Audience && st.ExpirationSeconds == exp && a.now().Before(st.refreshAt()) {
		if token, err := os.ReadFile(filepath.Join(dir, filepath.Clean(p.Path))); err == nil && len(token) > 0 {
			return []volumeFile{{path: p.Path, data: token, mode: mode}}, nil
		}
	}

	tr := &authenticationv1.TokenRequest{
		TypeMeta: metav1.TypeMeta{APIVersion: "authentication.k8s.io/v1", Kind: "TokenRequest"},
		Spec: authenticationv1.TokenRequestSpec{
			ExpirationSeconds: &exp,
			BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
		},
	}
	if p.Audience != "" {
		tr.Spec.Audiences = []string{p.Audience}
	}
	var out authenticationv1.TokenRequest
	if err := a.api.CreateSubresource(ctx, apiclient.ServiceAccounts, pod.Namespace, sa, "token", tr, &out); err != nil {
		return nil, fmt.Errorf("request token for service account %s/%s: %w", pod.Namespace, sa, err)
	}
	if out.Status.Token == "" {
		return nil, fmt.Errorf("request token for service account %s/%s: the answer holds no token", pod.Namespace, sa)
	}
	expires := out.Status.ExpirationTimestamp.Time
	if expires.IsZero() {
		expires = a.now().Add(time.Duration(exp) * time.Second)
	}
	states[p.Path] = tokenState{Audience: p.Audience, ExpirationSeconds: exp, Expires: expires}
	if err := a.saveTokenStates(pod, volume, states); err != nil {
		// The token still works; it is only asked for again sooner.
		a.log.Warn("cannot record service account token state", "pod", pod.Namespace+"/"+pod.Name, "volume", volume, "err", err)
	}
	return []volumeFile{{path: p.Path, data: []byte(out.Status.Token), mode: mode}}, nil
}

// refreshTokens rewrites the projected volumes of pod whose service
// account tokens are due for renewal. Volumes not set up yet are left to
// the container start that needs them.
func (a *Agent) refreshTokens(ctx context.Context, pod *v1.Pod, podIP string) error {
	base := filepath.Join(a.podDir(pod.UID), "volumes")
	var errs []error
	for i := range pod.Spec.Volumes {
		vol := &pod.Spec.Volumes[i]
		if vol.Projected == nil || !a.tokensDue(pod, vol) {
			continue
		}
		dir := filepath.Join(base, vol.Name)
		if _, err := a.setupVolume(ctx, pod, vol, dir, podIP); err != nil {
			errs = append(errs, fmt.Errorf("volume %q: %w", vol.Name, err))
		}
	}
	return errors.Join(errs...)
}

// tokensDue reports whether a token the agent wrote into vol needs renewal.
func (a *Agent) tokensDue(pod *v1.Pod, vol *v1.Volume) bool {
	states := a.loadTokenStates(pod, vol.Name)
	now := a.now()
	for _, s := range vol.Projected.Sources {
		if s.ServiceAccountToken == nil {
			continue
		}
		if st, ok := states[s.ServiceAccountToken.Path]; ok && !now.Before(st.refreshAt()) {
			return true
		}
	}
	return false
}

// writeVolumeFiles writes files into dir (on a tmpfs when secret) and
// removes files that are no longer projected.
func writeVolumeFiles(dir string, files []volumeFile, secret bool) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if secret {
		if err := ensureTmpfs(dir, "mode=0755"); err != nil {
			return err
		}
	}
	keep := map[string]bool{}
	for _, f := range files {
		clean := filepath.Clean(f.path)
		if filepath.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, "../") {
			return fmt.Errorf("invalid file path %q", f.path)
		}
		p := filepath.Join(dir, clean)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := writeFileAtomic(p, f.data, f.mode); err != nil {
			return err
		}
		keep[p] = true
	}
	return filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || keep[p] {
			return err
		}
		return os.Remove(p)
	})
}

// ensureTmpfs mounts a tmpfs on dir unless one is there already.
func ensureTmpfs(dir, opts string) error {
	var st, parent unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return err
	}
	if err := unix.Stat(filepath.Dir(dir), &parent); err != nil {
		return err
	}
	if st.Dev != parent.Dev {
		return nil // already a mount point
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		return fmt.Errorf("mount tmpfs on %s: %w", dir, err)
	}
	return nil
}
