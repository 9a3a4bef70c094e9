//go:build node

package node

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rkv1 "github.com/rolekeeper/rolekeeper/api/v1alpha1"
	"github.com/rolekeeper/rolekeeper/pkg/sts/ststest"
)

// credsMount is where consumer pods mount the Secret, as README's example does.
const credsMount = "/var/run/secrets/rolekeeper.io/creds"

// keyHash is how the consumer's log names an access key (test/node/consumer).
func keyHash(accessKeyID string) string {
	sum := sha256.Sum256([]byte(accessKeyID))
	return hex.EncodeToString(sum[:])[:12]
}

// Session lengths: at the emulator's time scale a short session lasts 30 s and rotates every 20 s;
// a long one lasts 24 minutes, so nothing is due while a test runs.
const (
	short = 900
	long  = 43200
)

// assumedRole applies an AssumedRole with a session of duration seconds and extra spec lines, and
// waits until it is Ready.
func assumedRole(t *testing.T, ns, name string, duration int, spec string) *rkv1.AssumedRole {
	t.Helper()
	apply(t, fmt.Sprintf(`apiVersion: rolekeeper.io/v1alpha1
kind: AssumedRole
metadata: {name: %s, namespace: %s}
spec:
  assumeRole: {roleArn: "arn:aws:iam::111122223333:role/%s", durationSeconds: %d}
%s`, name, ns, name, duration, spec))
	return waitReady(t, ns, name, 2*time.Minute)
}

// consumerPod is a pod of image that mounts Secret secretName at credsMount and runs the consumer
// with AWS_CONFIG_FILE pointing at the Secret's config (credential_process), as README shows, and
// more environment as NAME=value.
func consumerPod(ns, name, img, secretName string, env ...string) string {
	extra := ""
	for _, e := range env {
		k, v, _ := strings.Cut(e, "=")
		extra += fmt.Sprintf("    - {name: %s, value: %q}\n", k, v)
	}
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s, namespace: %s}
spec:
  terminationGracePeriodSeconds: 1
  securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
  containers:
  - name: consumer
    image: %s
    imagePullPolicy: IfNotPresent
    env:
    - {name: AWS_CONFIG_FILE, value: %s/config}
    - {name: AWS_SHARED_CREDENTIALS_FILE, value: /nonexistent}
    - {name: AWS_ENDPOINT_URL_STS, value: %q}
    - {name: AWS_EC2_METADATA_DISABLED, value: "true"}
    - {name: EXPIRY_WINDOW, value: 2s}
%s    securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
    volumeMounts:
    - {name: aws, mountPath: %s, readOnly: true}
  volumes:
  - name: aws
    secret: {secretName: %s}
`, name, ns, img, credsMount, stsURL, extra, credsMount, secretName)
}

func waitPodRunning(t *testing.T, ns, name string) *corev1.Pod {
	t.Helper()
	var p corev1.Pod
	eventually(t, 2*time.Minute, "pod "+ns+"/"+name+" running", func() bool {
		return admin.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &p) == nil && p.Status.Phase == corev1.PodRunning
	})
	return &p
}

// podLog is the log of a pod's first container, through the API server and the kubelet.
func podLog(t *testing.T, ns, name string) string {
	t.Helper()
	b, err := clientset.CoreV1().Pods(ns).GetLogs(name, &corev1.PodLogOptions{}).Do(context.Background()).Raw()
	if err != nil {
		t.Fatalf("logs of %s/%s: %v", ns, name, err)
	}
	return string(b)
}

// issuedKeys are the access keys the emulator issued to an AssumedRole, in order.
func issuedKeys(all []ststest.Call, ns, name string) []string {
	var keys []string
	for _, c := range all {
		if c.Action == "AssumeRole" && c.SessionName == ns+"."+name && c.Code == "" {
			keys = append(keys, c.IssuedAccessKey)
		}
	}
	return keys
}

// keyWatch records when each access key was first seen by a poller.
type keyWatch struct {
	mu   sync.Mutex
	seen map[string]time.Time
}

// watchKeys polls read every interval until the test ends.
func watchKeys(t *testing.T, interval time.Duration, read func() string) *keyWatch {
	t.Helper()
	w := &keyWatch{seen: map[string]time.Time{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			if k := read(); k != "" {
				w.mu.Lock()
				if w.seen[k].IsZero() {
					w.seen[k] = time.Now()
				}
				w.mu.Unlock()
			}
			time.Sleep(interval)
		}
	}()
	return w
}

func (w *keyWatch) at(key string) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.seen[key]
}

// watchSecret records when each access key appeared in a Secret, as the API server has it.
func watchSecret(t *testing.T, ns, name string) *keyWatch {
	t.Helper()
	return watchKeys(t, 100*time.Millisecond, func() string {
		if s := secret(t, ns, name); s != nil {
			return string(s.Data["AWS_ACCESS_KEY_ID"])
		}
		return ""
	})
}

// watchVolume records when each access key appeared in a pod's Secret volume, as the container
// sees it: the kubelet's directory for the volume is the very tmpfs bind-mounted into the
// container, and the test shares the kubelet's mount namespace.
func watchVolume(t *testing.T, pod *corev1.Pod, volume string) *keyWatch {
	t.Helper()
	file := filepath.Join(node.Dir, "kubelet", "pods", string(pod.UID), "volumes", "kubernetes.io~secret", volume, "AWS_ACCESS_KEY_ID")
	return watchKeys(t, 50*time.Millisecond, func() string {
		b, _ := os.ReadFile(file)
		return string(b)
	})
}

// A pod from a locally built image, with aws-sdk-go-v2's default configuration reading the
// mounted Secret through credential_process, authenticates on every call across three rotations
// and past the first credentials' expiry, without a restart; the kubelet's propagation delay of
// each rotation is logged. The same program in an image without a shell or cat fails as README
// says.
func TestCredentialProcessConsumer(t *testing.T) {
	withOperator(t)
	ns := namespace(t, "consumer")
	ar := assumedRole(t, ns, "app", short, fmt.Sprintf("  secret: {credentialProcess: {mountPath: %s}}\n", credsMount))
	firstExpiry := ar.Status.Expiration.Time
	secrets := watchSecret(t, ns, "app")
	apply(t, consumerPod(ns, "consumer", consumerImage, "app"))
	apply(t, consumerPod(ns, "distroless", consumerDistrolessImage, "app"))
	pod := waitPodRunning(t, ns, "consumer")
	volume := watchVolume(t, pod, "aws")

	var keys []string
	eventually(t, 3*time.Minute, "the consumer signing with the first credentials and three rotations, past the first expiry", func() bool {
		keys = issuedKeys(calls(t), ns, "app")
		log := podLog(t, ns, "consumer")
		return len(keys) >= 4 && strings.Contains(log, "key:"+keyHash(keys[3])) && time.Now().After(firstExpiry.Add(2*time.Second))
	})
	log := podLog(t, ns, "consumer")
	lines := strings.Split(strings.TrimSpace(log), "\n")
	var failures []string
	used := map[string]int{}
	for _, l := range lines {
		if !strings.HasPrefix(l, "ok ") {
			failures = append(failures, l)
			continue
		}
		used[l[strings.LastIndex(l, "key:")+4:]]++
	}
	if len(failures) > 0 {
		t.Errorf("%d of %d calls failed, first: %s", len(failures), len(lines), failures[0])
	}
	for i, k := range keys[:4] {
		if used[keyHash(k)] == 0 {
			t.Errorf("the consumer never signed with the credentials of issue %d", i)
		}
	}
	var p corev1.Pod
	if err := admin.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "consumer"}, &p); err != nil {
		t.Fatal(err)
	}
	if p.UID != pod.UID || p.Status.ContainerStatuses[0].RestartCount != 0 {
		t.Errorf("the consumer was replaced or restarted (restarts %d)", p.Status.ContainerStatuses[0].RestartCount)
	}
	var delays []string
	for i, k := range keys[1:4] {
		written, seen := secrets.at(k), volume.at(k)
		if written.IsZero() || seen.IsZero() {
			t.Errorf("rotation %d: Secret updated at %v, seen in the volume at %v", i+1, written, seen)
			continue
		}
		delays = append(delays, seen.Sub(written).Round(100*time.Millisecond).String())
	}
	t.Logf("%d calls, all signed; kubelet propagation of the three rotations (Secret updated → file in the container): %s",
		len(lines), strings.Join(delays, ", "))

	// No shell, no cat: the SDK cannot run credential_process.
	waitPodRunning(t, ns, "distroless")
	const documented = `error in credential_process: exec: "sh": executable file not found in $PATH`
	var dlog string
	eventually(t, time.Minute, "the distroless consumer's first calls", func() bool {
		dlog = podLog(t, ns, "distroless")
		return strings.Count(dlog, "\n") >= 3
	})
	if strings.Contains(dlog, "\nok ") || strings.HasPrefix(dlog, "ok ") || !strings.Contains(dlog, documented) {
		t.Errorf("the distroless consumer should fail with %q on every call; its log:\n%s", documented, tail(dlog, 5))
	}
}

// A Deployment that takes the Secret with envFrom and is listed in rolloutRestartTargets rolls
// once per rotation, and the new pods sign with the new key.
func TestRolloutRestartOnRotation(t *testing.T) {
	withOperator(t)
	ctx := context.Background()
	ns := namespace(t, "rollout")
	apply(t, fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: %s}
spec:
  replicas: 1
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: consumer
        image: %s
        imagePullPolicy: IfNotPresent
        envFrom: [{secretRef: {name: app}}]
        env:
        - {name: AWS_CONFIG_FILE, value: /nonexistent}
        - {name: AWS_SHARED_CREDENTIALS_FILE, value: /nonexistent}
        - {name: AWS_ENDPOINT_URL_STS, value: %q}
        - {name: AWS_EC2_METADATA_DISABLED, value: "true"}
        - {name: INTERVAL, value: 1s}
`, ns, consumerImage, stsURL))
	assumedRole(t, ns, "app", short, "  rolloutRestartTargets: [{kind: Deployment, name: api}]\n")
	dep := &appsv1.Deployment{}
	key := client.ObjectKey{Namespace: ns, Name: "api"}

	// Which key each ReplicaSet's pods sign with, read from their logs while they run.
	signed := map[string]map[string]bool{} // ReplicaSet → key hashes
	collect := func() {
		var pods corev1.PodList
		if admin.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabels{"app": "api"}) != nil {
			return
		}
		for _, p := range pods.Items {
			if p.Status.Phase != corev1.PodRunning || len(p.OwnerReferences) == 0 {
				continue
			}
			b, err := clientset.CoreV1().Pods(ns).GetLogs(p.Name, &corev1.PodLogOptions{}).Do(ctx).Raw()
			if err != nil {
				continue
			}
			rs := p.OwnerReferences[0].Name
			for _, l := range strings.Split(string(b), "\n") {
				if i := strings.LastIndex(l, "key:"); strings.HasPrefix(l, "ok ") && i > 0 {
					if signed[rs] == nil {
						signed[rs] = map[string]bool{}
					}
					signed[rs][l[i+4:]] = true
				}
			}
		}
	}
	if err := admin.Get(ctx, key, dep); err != nil {
		t.Fatal(err)
	}
	gen0 := dep.Generation
	// A consistent moment: the last issued key is in the Secret, the Deployment carries that
	// issue's time, and no issue came while the ReplicaSets were listed.
	var keys []string
	var sets appsv1.ReplicaSetList
	eventually(t, 3*time.Minute, "three rotations, each rolled out and signing", func() bool {
		collect()
		keys = issuedKeys(calls(t), ns, "app")
		s := secret(t, ns, "app")
		if len(keys) < 4 || s == nil || string(s.Data["AWS_ACCESS_KEY_ID"]) != keys[len(keys)-1] || admin.Get(ctx, key, dep) != nil ||
			dep.Spec.Template.Annotations[rkv1.AnnotationRestartedAt] != s.Annotations[rkv1.AnnotationIssuedAt] {
			return false
		}
		last := false
		for _, set := range signed {
			last = last || set[keyHash(keys[len(keys)-1])]
		}
		return last && admin.List(ctx, &sets, client.InNamespace(ns)) == nil && len(issuedKeys(calls(t), ns, "app")) == len(keys)
	})
	rotations := int64(len(keys) - 1)
	if got := dep.Generation - gen0; got != rotations {
		t.Errorf("the Deployment changed %d times for %d rotations", got, rotations)
	}
	if int64(len(sets.Items)) != rotations+1 {
		t.Errorf("%d ReplicaSets for %d rotations, want one per rotation plus the first", len(sets.Items), rotations)
	}
	// ReplicaSet revision n was made for the credentials of issue n-1, and its pods use only those.
	revision := func(rs appsv1.ReplicaSet) int {
		n, _ := strconv.Atoi(rs.Annotations["deployment.kubernetes.io/revision"])
		return n
	}
	sort.Slice(sets.Items, func(i, j int) bool { return revision(sets.Items[i]) < revision(sets.Items[j]) })
	for i, rs := range sets.Items {
		if got := signed[rs.Name]; i < len(keys) && (len(got) != 1 || !got[keyHash(keys[i])]) {
			t.Errorf("ReplicaSet %s (revision %d) signed with %v, want only the key of issue %d (%s)", rs.Name, revision(rs), got, i, keyHash(keys[i]))
		}
	}
	t.Logf("%d rotations, %d ReplicaSets, keys per ReplicaSet: %v", rotations, len(sets.Items), signed)
}
