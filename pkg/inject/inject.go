// Package inject is the pod mutation of the credentials sidecar: a pure function from a Pod and
// the facts the webhook looked up (the Secret to mount, the region, the operator's image) to the
// Pod that runs `rolekeeper serve-credentials` as a native sidecar and points every SDK in its
// containers at it. It reads nothing and writes nothing; webhooks/ wires it into admission.
package inject

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/utils/ptr"

	rkv1 "github.com/rolekeeper/rolekeeper/api/v1alpha1"
	"github.com/rolekeeper/rolekeeper/pkg/credserver"
)

// Names rolekeeper owns in an injected pod. A pod that defines them itself gets rolekeeper's
// definitions instead, which is what makes the mutation idempotent.
const (
	// LabelAssumedRole on a pod names the AssumedRole (in the pod's namespace) whose credentials
	// it gets; the webhook sees only pods with this label.
	LabelAssumedRole = rkv1.LabelAssumedRole
	// SidecarName is the native sidecar (an init container with restartPolicy Always).
	SidecarName = "rolekeeper-credentials"
	// SecretVolume mounts the AssumedRole's Secret, into the sidecar only.
	SecretVolume = "rolekeeper-credentials"
	// TokenVolume is the in-memory volume holding the pod's token, shared with the app containers.
	TokenVolume = "rolekeeper-token"
	// TokenDir is where TokenVolume is mounted in every container; the token file is
	// credserver.DefaultTokenFile in it.
	TokenDir = "/var/run/secrets/rolekeeper.io/token"
	// AnnotationPort on a pod overrides the sidecar's loopback port (default credserver.DefaultPort),
	// for pods whose own containers use that port.
	AnnotationPort = "rolekeeper.io/credentials-port"
	// Binary is the manager binary in the operator's image (see Dockerfile).
	Binary = "/rolekeeper"
)

// Environment variables set in the app containers.
const (
	EnvFullURI   = "AWS_CONTAINER_CREDENTIALS_FULL_URI"
	EnvTokenFile = "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"
	EnvRegion    = "AWS_REGION"
	// EnvDefaultRegion is the one botocore (boto3, the AWS CLI) reads.
	EnvDefaultRegion = "AWS_DEFAULT_REGION"
)

// containerCredentialsEnv are the variables that configure an SDK's container credentials; a
// container that sets any of them itself keeps its own configuration, and the pod's token is
// never sent to an endpoint rolekeeper did not choose.
var containerCredentialsEnv = []string{EnvFullURI, EnvTokenFile, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN"}

// Config is what the mutation needs besides the pod.
type Config struct {
	// Image is the operator's own image; the sidecar runs its serve-credentials subcommand.
	Image           string
	ImagePullPolicy corev1.PullPolicy
	// SecretName is the Secret to serve (the AssumedRole's spec.secret.name, default its name).
	SecretName string
	// Region is set as AWS_REGION and AWS_DEFAULT_REGION; empty sets neither.
	Region string
}

// Resources of the sidecar: it serves from a few MiB of heap (see docs/benchmarks.md).
var sidecarResources = corev1.ResourceRequirements{
	Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("5m"), corev1.ResourceMemory: resource.MustParse("24Mi")},
	Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")},
}

// Port returns the sidecar's loopback port for pod: AnnotationPort, or credserver.DefaultPort.
func Port(pod *corev1.Pod) (int, error) {
	v, ok := pod.Annotations[AnnotationPort]
	if !ok {
		return credserver.DefaultPort, nil
	}
	port, err := strconv.Atoi(v)
	if err != nil || port < 1024 || port > 65535 {
		return 0, fmt.Errorf("annotation %s must be a port number from 1024 to 65535, got %q", AnnotationPort, v)
	}
	return port, nil
}

// Mutate returns a copy of pod with the credentials sidecar injected. Mutate(Mutate(p)) equals
// Mutate(p). The error says why the pod cannot get the sidecar.
func Mutate(pod *corev1.Pod, cfg Config) (*corev1.Pod, error) {
	if cfg.Image == "" || cfg.SecretName == "" {
		return nil, errors.New("the webhook has no sidecar image or Secret name")
	}
	if pod.Spec.HostNetwork {
		return nil, errors.New("a pod with hostNetwork cannot use the credentials sidecar: its loopback port would be the node's")
	}
	port, err := Port(pod)
	if err != nil {
		return nil, err
	}
	out := pod.DeepCopy()
	spec := &out.Spec
	spec.InitContainers = slices.DeleteFunc(spec.InitContainers, func(c corev1.Container) bool { return c.Name == SidecarName })
	spec.Volumes = slices.DeleteFunc(spec.Volumes, func(v corev1.Volume) bool { return v.Name == SecretVolume || v.Name == TokenVolume })
	for _, c := range allContainers(spec) {
		for _, p := range c.Ports {
			if int(p.ContainerPort) == port {
				return nil, fmt.Errorf("container %s uses port %d, which the credentials sidecar listens on; set the annotation %s to a free port", c.Name, port, AnnotationPort)
			}
		}
		for _, m := range c.VolumeMounts {
			if path.Clean(m.MountPath) == TokenDir && m.Name != TokenVolume {
				return nil, fmt.Errorf("container %s mounts %s at %s, where the credentials token goes", c.Name, m.Name, TokenDir)
			}
		}
	}
	for _, c := range allContainers(spec) {
		addEnv(c, cfg, port)
	}
	spec.InitContainers = append([]corev1.Container{sidecar(cfg, port)}, spec.InitContainers...)
	spec.Volumes = append(spec.Volumes,
		corev1.Volume{Name: SecretVolume, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: cfg.SecretName}}},
		corev1.Volume{Name: TokenVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory, SizeLimit: ptr.To(resource.MustParse("64Ki"))}}},
	)
	return out, nil
}

// allContainers are the app containers and the init containers other than the sidecar.
func allContainers(spec *corev1.PodSpec) []*corev1.Container {
	var out []*corev1.Container
	for i := range spec.InitContainers {
		if spec.InitContainers[i].Name != SidecarName {
			out = append(out, &spec.InitContainers[i])
		}
	}
	for i := range spec.Containers {
		out = append(out, &spec.Containers[i])
	}
	return out
}

func hasEnv(c *corev1.Container, names ...string) bool {
	return slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool { return slices.Contains(names, e.Name) })
}

// addEnv points c at the sidecar, keeping whatever the container sets itself: its own container
// credentials configuration, or its own region (then neither region variable is added, so
// that every SDK in it agrees on one region).
func addEnv(c *corev1.Container, cfg Config, port int) {
	if !hasEnv(c, containerCredentialsEnv...) {
		c.Env = append(c.Env,
			corev1.EnvVar{Name: EnvFullURI, Value: "http://127.0.0.1:" + strconv.Itoa(port) + credserver.CredentialsPath},
			corev1.EnvVar{Name: EnvTokenFile, Value: credserver.DefaultTokenFile},
		)
		if !slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == TokenVolume }) {
			c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: TokenVolume, MountPath: TokenDir, ReadOnly: true})
		}
	}
	if cfg.Region != "" && !hasEnv(c, EnvRegion, EnvDefaultRegion) {
		c.Env = append(c.Env, corev1.EnvVar{Name: EnvRegion, Value: cfg.Region}, corev1.EnvVar{Name: EnvDefaultRegion, Value: cfg.Region})
	}
}

func sidecar(cfg Config, port int) corev1.Container {
	flags := []string{
		"--port=" + strconv.Itoa(port),
		"--secret-dir=" + credserver.DefaultSecretDir,
		"--token-file=" + credserver.DefaultTokenFile,
	}
	return corev1.Container{
		Name:            SidecarName,
		Image:           cfg.Image,
		ImagePullPolicy: cfg.ImagePullPolicy,
		Command:         []string{Binary, "serve-credentials"},
		Args:            flags,
		// A native sidecar: started before the app containers, running beside them, stopped
		// after them; in a Job it does not keep the pod from completing.
		RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways),
		// The app containers start once the token is written and the server answers.
		StartupProbe: &corev1.Probe{
			ProbeHandler:     corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: append([]string{Binary, "serve-credentials", "--probe"}, flags...)}},
			PeriodSeconds:    1,
			FailureThreshold: 30,
		},
		Resources: sidecarResources,
		SecurityContext: &corev1.SecurityContext{
			RunAsNonRoot:             ptr.To(true),
			RunAsUser:                ptr.To[int64](65532),
			RunAsGroup:               ptr.To[int64](65532),
			AllowPrivilegeEscalation: ptr.To(false),
			ReadOnlyRootFilesystem:   ptr.To(true),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		VolumeMounts: []corev1.VolumeMount{
			{Name: SecretVolume, MountPath: credserver.DefaultSecretDir, ReadOnly: true},
			{Name: TokenVolume, MountPath: TokenDir},
		},
	}
}
