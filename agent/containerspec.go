package agent

import (
	"context"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/orch-dev/orch/agent/apiclient"
	"github.com/orch-dev/orch/runtime/container"
	"github.com/orch-dev/orch/runtime/image"
)

// containerConfig translates one container of the pod spec into the
// runtime's request: command, environment, user, mounts and resources.
func (a *Agent) containerConfig(ctx context.Context, pod *v1.Pod, c *v1.Container, img image.Image, sb *container.Sandbox, restarts int, podIP string) (container.ContainerConfig, error) {
	lower, err := a.images.LowerDirs(img.ID)
	if err != nil {
		return container.ContainerConfig{}, err
	}
	env, err := a.containerEnv(ctx, pod, c, img, podIP)
	if err != nil {
		return container.ContainerConfig{}, err
	}
	args := containerArgs(c, img.Config, env)
	if len(args) == 0 {
		return container.ContainerConfig{}, fmt.Errorf("no command specified")
	}
	vols, err := a.setupVolumes(ctx, pod, podIP)
	if err != nil {
		return container.ContainerConfig{}, err
	}
	mounts, err := containerMounts(c, vols)
	if err != nil {
		return container.ContainerConfig{}, err
	}
	logDir := filepath.Join(a.podLogDir(pod), c.Name)
	if err := os.MkdirAll(logDir, 0o700); err != nil {
		return container.ContainerConfig{}, err
	}
	uid, gid, groups := containerUser(pod, c, img.Config)
	cfg := container.ContainerConfig{
		SandboxID: sb.ID,
		Name:      c.Name,
		Labels: map[string]string{
			labelPodUID: string(pod.UID), labelPodName: pod.Name, labelPodNamespace: pod.Namespace,
			labelContainerName: c.Name, labelRestartCount: strconv.Itoa(restarts), labelImageID: img.ID,
			labelImageRef: img.ImageRef(c.Image),
		},
		Lower:          lower,
		Args:           args,
		Env:            envList(env),
		WorkingDir:     firstNonEmpty(c.WorkingDir, img.Config.WorkingDir),
		UID:            uid,
		GID:            gid,
		AdditionalGIDs: groups,
		Mounts:         mounts,
		Resources:      containerResources(c),
		LogPath:        filepath.Join(logDir, strconv.Itoa(restarts)+".log"),
		Stdin:          c.Stdin,
		StdinOnce:      c.StdinOnce,
		TTY:            c.TTY,
	}
	podDir := a.podDir(pod.UID)
	cfg.HostsPath = filepath.Join(podDir, "etc-hosts")
	cfg.ResolvConfPath = filepath.Join(podDir, "resolv.conf")
	cfg.HostnamePath = filepath.Join(podDir, "hostname")
	if sc := c.SecurityContext; sc != nil {
		cfg.ReadOnlyRootfs = sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem
		cfg.Privileged = sc.Privileged != nil && *sc.Privileged
		if sc.Capabilities != nil {
			for _, cp := range sc.Capabilities.Add {
				cfg.CapAdd = append(cfg.CapAdd, string(cp))
			}
			for _, cp := range sc.Capabilities.Drop {
				cfg.CapDrop = append(cfg.CapDrop, string(cp))
			}
		}
	}
	return cfg, nil
}

// containerArgs merges the image's entrypoint and cmd with the
// container's command and args the way Kubernetes documents it, then
// expands $(VAR) references.
func containerArgs(c *v1.Container, ic image.Config, env []envVar) []string {
	var args []string
	switch {
	case len(c.Command) > 0:
		args = append(append(args, c.Command...), c.Args...)
	case len(c.Args) > 0:
		args = append(append(args, ic.Entrypoint...), c.Args...)
	default:
		args = append(append(args, ic.Entrypoint...), ic.Cmd...)
	}
	vars := envMap(env)
	for i := range args {
		args[i] = expandVars(args[i], vars)
	}
	return args
}

// envVar is one environment variable; order matters for $(VAR) expansion.
type envVar struct{ name, value string }

func envMap(env []envVar) map[string]string {
	m := make(map[string]string, len(env))
	for _, e := range env {
		m[e.name] = e.value
	}
	return m
}

func envList(env []envVar) []string {
	out := make([]string, 0, len(env))
	seen := map[string]int{}
	for _, e := range env {
		if i, ok := seen[e.name]; ok {
			out[i] = e.name + "=" + e.value
			continue
		}
		seen[e.name] = len(out)
		out = append(out, e.name+"="+e.value)
	}
	return out
}

// expandVars replaces $(NAME) with its value when NAME is defined and
// $$ with $, leaving anything else as written (Kubernetes' expansion).
func expandVars(s string, vars map[string]string) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			name := s[i+2 : i+2+end]
			if v, ok := vars[name]; ok {
				b.WriteString(v)
			} else {
				b.WriteString(s[i : i+3+end])
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}

// containerEnv builds the environment: the image's, then envFrom, then
// env, with valueFrom resolved, then the service variables (serviceEnv)
// that envFrom and env did not set, as the kubelet orders them.
func (a *Agent) containerEnv(ctx context.Context, pod *v1.Pod, c *v1.Container, img image.Image, podIP string) ([]envVar, error) {
	svcEnv, err := a.serviceEnv(pod)
	if err != nil {
		return nil, err
	}
	var env []envVar
	for _, kv := range img.Config.Env {
		k, v, _ := strings.Cut(kv, "=")
		env = append(env, envVar{k, v})
	}
	fromImage := len(env)
	cms := map[string]*v1.ConfigMap{}
	secrets := map[string]*v1.Secret{}
	getCM := func(name string) (*v1.ConfigMap, error) {
		if cm, ok := cms[name]; ok {
			return cm, nil
		}
		cm, err := a.getConfigMap(ctx, pod.Namespace, name)
		if err != nil {
			return nil, err
		}
		cms[name] = cm
		return cm, nil
	}
	getSecret := func(name string) (*v1.Secret, error) {
		if s, ok := secrets[name]; ok {
			return s, nil
		}
		s, err := a.getSecret(ctx, pod.Namespace, name)
		if err != nil {
			return nil, err
		}
		secrets[name] = s
		return s, nil
	}
	for _, from := range c.EnvFrom {
		var data map[string]string
		switch {
		case from.ConfigMapRef != nil:
			cm, err := getCM(from.ConfigMapRef.Name)
			if err != nil {
				if isOptional(from.ConfigMapRef.Optional) && isNotFound(err) {
					continue
				}
				return nil, err
			}
			data = cm.Data
		case from.SecretRef != nil:
			s, err := getSecret(from.SecretRef.Name)
			if err != nil {
				if isOptional(from.SecretRef.Optional) && isNotFound(err) {
					continue
				}
				return nil, err
			}
			data = map[string]string{}
			for k, v := range s.Data {
				data[k] = string(v)
			}
		}
		for _, k := range slices.Sorted(maps.Keys(data)) {
			env = append(env, envVar{from.Prefix + k, data[k]})
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			// $(VAR) names a variable set above by envFrom or env, or a
			// service variable; not the image's, as with the kubelet.
			vars := envMap(env[fromImage:])
			for k, v := range svcEnv {
				if _, ok := vars[k]; !ok {
					vars[k] = v
				}
			}
			env = append(env, envVar{e.Name, expandVars(e.Value, vars)})
			continue
		}
		vf := e.ValueFrom
		switch {
		case vf.ConfigMapKeyRef != nil:
			ref := vf.ConfigMapKeyRef
			cm, err := getCM(ref.Name)
			if err != nil {
				if isOptional(ref.Optional) && isNotFound(err) {
					continue
				}
				return nil, err
			}
			v, ok := cm.Data[ref.Key]
			if !ok {
				if isOptional(ref.Optional) {
					continue
				}
				return nil, fmt.Errorf("couldn't find key %s in ConfigMap %s/%s", ref.Key, pod.Namespace, ref.Name)
			}
			env = append(env, envVar{e.Name, v})
		case vf.SecretKeyRef != nil:
			ref := vf.SecretKeyRef
			s, err := getSecret(ref.Name)
			if err != nil {
				if isOptional(ref.Optional) && isNotFound(err) {
					continue
				}
				return nil, err
			}
			v, ok := s.Data[ref.Key]
			if !ok {
				if isOptional(ref.Optional) {
					continue
				}
				return nil, fmt.Errorf("couldn't find key %s in Secret %s/%s", ref.Key, pod.Namespace, ref.Name)
			}
			env = append(env, envVar{e.Name, string(v)})
		case vf.FieldRef != nil:
			v, err := podFieldValue(pod, vf.FieldRef.FieldPath, a.hostIP, podIP)
			if err != nil {
				return nil, err
			}
			env = append(env, envVar{e.Name, v})
		case vf.ResourceFieldRef != nil:
			v, err := resourceFieldValue(pod, c, vf.ResourceFieldRef, a.allocatable())
			if err != nil {
				return nil, err
			}
			env = append(env, envVar{e.Name, v})
		}
	}
	set := envMap(env[fromImage:])
	for _, k := range slices.Sorted(maps.Keys(svcEnv)) {
		if _, ok := set[k]; !ok {
			env = append(env, envVar{k, svcEnv[k]})
		}
	}
	return env, nil
}

func isOptional(b *bool) bool { return b != nil && *b }

func (a *Agent) allocatable() v1.ResourceList { return hostCapacity(a.dir) }

// podFieldValue resolves a downward API field path.
func podFieldValue(pod *v1.Pod, path, hostIP, podIP string) (string, error) {
	if k, ok := subscript(path, "metadata.labels"); ok {
		return pod.Labels[k], nil
	}
	if k, ok := subscript(path, "metadata.annotations"); ok {
		return pod.Annotations[k], nil
	}
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "metadata.labels":
		return formatMap(pod.Labels), nil
	case "metadata.annotations":
		return formatMap(pod.Annotations), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.hostIP", "status.hostIPs":
		return hostIP, nil
	case "status.podIP", "status.podIPs":
		return podIP, nil
	}
	return "", fmt.Errorf("unsupported fieldRef path %q", path)
}

// subscript parses `prefix['key']`.
func subscript(path, prefix string) (string, bool) {
	rest, ok := strings.CutPrefix(path, prefix+"[")
	if !ok || !strings.HasSuffix(rest, "]") {
		return "", false
	}
	rest = strings.TrimSuffix(rest, "]")
	if u, err := strconv.Unquote(strings.ReplaceAll(rest, "'", `"`)); err == nil {
		return u, true
	}
	return rest, true
}

// formatMap renders labels or annotations as the downward API does:
// sorted key="value" lines.
func formatMap(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "%s=%q", k, m[k])
	}
	return b.String()
}

// resourceFieldValue resolves a resourceFieldRef: limits default to the
// node's allocatable, values are rounded up in units of the divisor.
func resourceFieldValue(pod *v1.Pod, c *v1.Container, ref *v1.ResourceFieldSelector, alloc v1.ResourceList) (string, error) {
	if ref.ContainerName != "" {
		if cc := specContainer(pod, ref.ContainerName); cc != nil {
			c = cc
		}
	}
	kind, name, ok := strings.Cut(ref.Resource, ".")
	if !ok {
		return "", fmt.Errorf("unsupported resourceFieldRef %q", ref.Resource)
	}
	rn := v1.ResourceName(name)
	var q resource.Quantity
	switch kind {
	case "limits":
		var has bool
		q, has = c.Resources.Limits[rn]
		if !has {
			q = alloc[rn]
		}
	case "requests":
		q = c.Resources.Requests[rn]
	default:
		return "", fmt.Errorf("unsupported resourceFieldRef %q", ref.Resource)
	}
	div := ref.Divisor
	if div.IsZero() {
		div = resource.MustParse("1")
	}
	if rn == v1.ResourceCPU {
		return strconv.FormatInt(int64(math.Ceil(float64(q.MilliValue())/float64(div.MilliValue()))), 10), nil
	}
	return strconv.FormatInt(int64(math.Ceil(float64(q.Value())/float64(div.Value()))), 10), nil
}

// containerUser picks uid, gid and supplementary groups: the container's
// securityContext, then the pod's, then the image's numeric USER.
func containerUser(pod *v1.Pod, c *v1.Container, ic image.Config) (uint32, uint32, []uint32) {
	var uid, gid uint32
	if u, g, ok := strings.Cut(ic.User, ":"); ic.User != "" {
		if n, err := strconv.ParseUint(u, 10, 32); err == nil {
			uid = uint32(n)
		}
		if ok {
			if n, err := strconv.ParseUint(g, 10, 32); err == nil {
				gid = uint32(n)
			}
		}
	}
	var groups []uint32
	if psc := pod.Spec.SecurityContext; psc != nil {
		if psc.RunAsUser != nil {
			uid = uint32(*psc.RunAsUser)
		}
		if psc.RunAsGroup != nil {
			gid = uint32(*psc.RunAsGroup)
		}
		for _, g := range psc.SupplementalGroups {
			groups = append(groups, uint32(g))
		}
		if psc.FSGroup != nil {
			groups = append(groups, uint32(*psc.FSGroup))
		}
	}
	if sc := c.SecurityContext; sc != nil {
		if sc.RunAsUser != nil {
			uid = uint32(*sc.RunAsUser)
		}
		if sc.RunAsGroup != nil {
			gid = uint32(*sc.RunAsGroup)
		}
	}
	return uid, gid, groups
}

// containerResources maps requests and limits onto cgroup settings.
func containerResources(c *v1.Container) container.Resources {
	var r container.Resources
	req := c.Resources.Requests.Cpu().MilliValue()
	lim := c.Resources.Limits.Cpu().MilliValue()
	if req == 0 && lim > 0 {
		req = lim
	}
	r.CPUShares = container.MilliCPUToShares(req)
	r.CPUQuota, r.CPUPeriod = container.MilliCPUToQuota(lim)
	r.MemoryLimit = c.Resources.Limits.Memory().Value()
	return r
}

// containerMounts turns volumeMounts into bind mounts from the pod's
// volume directories.
func containerMounts(c *v1.Container, vols map[string]string) ([]container.Mount, error) {
	var out []container.Mount
	for _, m := range c.VolumeMounts {
		src, ok := vols[m.Name]
		if !ok {
			return nil, fmt.Errorf("volume %q of mount %s is not defined", m.Name, m.MountPath)
		}
		if m.SubPath != "" {
			sub := filepath.Join(src, m.SubPath)
			if rel, err := filepath.Rel(src, sub); err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
				return nil, fmt.Errorf("subPath %q of volume %q escapes the volume", m.SubPath, m.Name)
			}
			if _, err := os.Lstat(sub); os.IsNotExist(err) {
				if err := os.MkdirAll(sub, 0o755); err != nil {
					return nil, fmt.Errorf("create subPath %q of volume %q: %w", m.SubPath, m.Name, err)
				}
			}
			src = sub
		}
		out = append(out, container.Mount{Source: src, Destination: m.MountPath, ReadOnly: m.ReadOnly})
	}
	return out, nil
}

func (a *Agent) getConfigMap(ctx context.Context, ns, name string) (*v1.ConfigMap, error) {
	var cm v1.ConfigMap
	if err := a.api.Get(ctx, apiclient.ConfigMaps, ns, name, &cm); err != nil {
		if isNotFound(err) {
			return nil, notFoundError{fmt.Sprintf("configmap %q not found", name)}
		}
		return nil, err
	}
	return &cm, nil
}

func (a *Agent) getSecret(ctx context.Context, ns, name string) (*v1.Secret, error) {
	var s v1.Secret
	if err := a.api.Get(ctx, apiclient.Secrets, ns, name, &s); err != nil {
		if isNotFound(err) {
			return nil, notFoundError{fmt.Sprintf("secret %q not found", name)}
		}
		return nil, err
	}
	return &s, nil
}
