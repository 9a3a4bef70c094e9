package webhooks_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	"sigs.k8s.io/yaml"

	rkv1 "github.com/rolekeeper/rolekeeper/api/v1alpha1"
	"github.com/rolekeeper/rolekeeper/pkg/inject"
	"github.com/rolekeeper/rolekeeper/test/testenv"
	"github.com/rolekeeper/rolekeeper/webhooks"
)

func readPod(t *testing.T, file string) *corev1.Pod {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{}
	if err := yaml.UnmarshalStrict(b, pod); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return pod
}

func toMap(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// contains reports where got differs from want, given that got may hold fields want does not
// (the API server's defaults): every field of want is in got with the same value, and every
// list has exactly want's elements in want's order.
func contains(path string, got, want any) []string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s: %v, want an object", path, got)}
		}
		var diffs []string
		for k, wv := range w {
			diffs = append(diffs, contains(path+"."+k, g[k], wv)...)
		}
		return diffs
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return []string{fmt.Sprintf("%s: %d elements, want %d: %v", path, len(g), len(w), got)}
		}
		var diffs []string
		for i := range w {
			diffs = append(diffs, contains(fmt.Sprintf("%s[%d]", path, i), g[i], w[i])...)
		}
		return diffs
	default:
		if !reflect.DeepEqual(got, want) {
			return []string{fmt.Sprintf("%s: %v, want %v", path, got, want)}
		}
		return nil
	}
}

func assumedRole(t *testing.T, ns, name string, mutate func(*rkv1.AssumedRole)) {
	t.Helper()
	ar := &rkv1.AssumedRole{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	ar.Spec.AssumeRole = &rkv1.AssumeRoleSpec{RoleArn: "arn:aws:iam::111122223333:role/" + name}
	if mutate != nil {
		mutate(ar)
	}
	if err := k8s.Create(context.Background(), ar); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

func namespace(t *testing.T, name string) string {
	t.Helper()
	if err := k8s.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	return name
}

func createPod(t *testing.T, pod *corev1.Pod) *corev1.Pod {
	t.Helper()
	if err := k8s.Create(context.Background(), pod); err != nil {
		t.Fatalf("creating pod %s: %v", pod.Name, err)
	}
	return pod
}

// TestInjectedAsGolden creates each pod of pkg/inject/testdata through the API server and finds
// exactly its golden file stored (plus the server's defaults): the labelled pod gets the
// sidecar, the volumes and the environment as docs/credentials-sidecar.md shows, variables the
// user set win, a spec copied from an injected pod gets nothing twice, and a pod naming an
// AssumedRole that does not exist yet is admitted with the Secret of the default name.
func TestInjectedAsGolden(t *testing.T) {
	assumedRole(t, "payments", "reader", func(ar *rkv1.AssumedRole) { ar.Spec.Region = "eu-west-1" })
	dir := filepath.Join(testenv.Root(), "pkg", "inject", "testdata")
	inputs, _ := filepath.Glob(filepath.Join(dir, "*.in.yaml"))
	if len(inputs) < 4 {
		t.Fatalf("%d inputs", len(inputs))
	}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".in.yaml")
		t.Run(name, func(t *testing.T) {
			pod := createPod(t, readPod(t, in))
			want := readPod(t, filepath.Join(dir, name+".golden.yaml"))
			if diffs := contains("pod", toMap(t, pod.Spec), toMap(t, want.Spec)); len(diffs) > 0 {
				t.Fatalf("stored pod differs from %s.golden.yaml:\n%s", name, strings.Join(diffs, "\n"))
			}
			// The pod names the token's file, never a token.
			for _, c := range append(pod.Spec.InitContainers, pod.Spec.Containers...) {
				for _, e := range c.Env {
					if e.Name == "AWS_CONTAINER_AUTHORIZATION_TOKEN" {
						t.Errorf("container %s carries a token in its spec", c.Name)
					}
				}
			}
		})
	}
}

// TestReadmissionIdempotent: a pod created from the stored spec of an injected pod (a copy, a
// template taken from a running pod) is stored exactly like the first.
func TestReadmissionIdempotent(t *testing.T) {
	ns := namespace(t, "readmission")
	pod := readPod(t, filepath.Join(testenv.Root(), "pkg", "inject", "testdata", "basic.in.yaml"))
	pod.Namespace = ns
	a := createPod(t, pod)
	b := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "api-again", Namespace: ns, Labels: a.Labels}, Spec: *a.Spec.DeepCopy()}
	createPod(t, b)
	if !reflect.DeepEqual(toMap(t, a.Spec), toMap(t, b.Spec)) {
		t.Fatalf("re-admitted spec differs:\nfirst  %v\nsecond %v", toMap(t, a.Spec), toMap(t, b.Spec))
	}
}

// TestUnlabelledPodNeverSent: the objectSelector keeps every pod without the label away from the
// webhook; the counter in the handler moves for the labelled pod created after it, and only then.
func TestUnlabelledPodNeverSent(t *testing.T) {
	ns := namespace(t, "unlabelled")
	before := injector.Requests()
	plain := createPod(t, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "plain", Namespace: ns, Labels: map[string]string{"app": "plain"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:1"}}}})
	if len(plain.Spec.InitContainers) != 0 || len(plain.Spec.Containers[0].Env) != 0 {
		t.Fatalf("unlabelled pod was mutated: %+v", plain.Spec)
	}
	if got := injector.Requests(); got != before {
		t.Fatalf("the webhook received %d requests for an unlabelled pod", got-before)
	}
	createPod(t, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "labelled", Namespace: ns, Labels: map[string]string{inject.LabelAssumedRole: "reader"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:1"}}}})
	if got := injector.Requests(); got != before+1 {
		t.Fatalf("the webhook received %d requests for one labelled pod", got-before)
	}
}

// TestDeploymentPods: a Deployment's pods are mutated. There is no kube-controller-manager here,
// so the pod the ReplicaSet controller would create (the template's labels and spec, owned by
// the ReplicaSet) is created under the ReplicaSet controller's own identity. This proves that
// the webhook matches such pods by the template's label whoever creates them, and that the
// Deployment itself is stored unmutated (its template is not sent to the webhook); it does not
// run the controllers (the real-node suite does).
func TestDeploymentPods(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, "deployments")
	labels := map[string]string{"app": "api", inject.LabelAssumedRole: "reader"}
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "api", Namespace: ns}, Spec: appsv1.DeploymentSpec{
		Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "api"}},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "api:1"}}}},
	}}
	if err := k8s.Create(ctx, dep); err != nil {
		t.Fatal(err)
	}
	if len(dep.Spec.Template.Spec.InitContainers) != 0 {
		t.Fatal("the Deployment's template was mutated")
	}
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: "api-6d4cf56db6", Namespace: ns, Labels: labels,
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: dep.Name, UID: dep.UID, Controller: ptr.To(true)}}},
		Spec: appsv1.ReplicaSetSpec{Selector: dep.Spec.Selector, Template: dep.Spec.Template}}
	if err := k8s.Create(ctx, rs); err != nil {
		t.Fatal(err)
	}
	asController := rest.CopyConfig(cfg)
	asController.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:kube-system:replicaset-controller",
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"}}
	rsController, err := client.New(asController, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{GenerateName: rs.Name + "-", Namespace: ns, Labels: rs.Spec.Template.Labels,
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs.Name, UID: rs.UID, Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}}},
		Spec: *rs.Spec.Template.Spec.DeepCopy()}
	if err := rsController.Create(ctx, pod); err != nil {
		t.Fatalf("creating the pod as the ReplicaSet controller: %v", err)
	}
	if len(pod.Spec.InitContainers) != 1 || pod.Spec.InitContainers[0].Name != inject.SidecarName || len(pod.Spec.Containers[0].Env) != 2 {
		t.Fatalf("the Deployment's pod was not injected: %+v", pod.Spec)
	}
}

// TestRefusedWithReason: the webhook's refusals reach the user through the API server naming
// rolekeeper and saying what to change.
func TestRefusedWithReason(t *testing.T) {
	ns := namespace(t, "refused")
	assumedRole(t, ns, "ecr-pull", func(ar *rkv1.AssumedRole) {
		ar.Spec.Secret.Type = corev1.SecretTypeDockerConfigJson
		ar.Spec.Secret.ECR = &rkv1.ECRSpec{}
	})
	cases := map[string]struct {
		label string
		mut   func(*corev1.Pod)
		want  string
	}{
		"image-pull AssumedRole": {"ecr-pull", nil, "image-pull Secret"},
		"hostNetwork":            {"reader", func(p *corev1.Pod) { p.Spec.HostNetwork = true }, "hostNetwork"},
		"port taken":             {"reader", func(p *corev1.Pod) { p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 8910}} }, inject.AnnotationPort},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: strings.ReplaceAll(name, " ", "-"), Namespace: ns, Labels: map[string]string{inject.LabelAssumedRole: c.label}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:1"}}}}
			if c.mut != nil {
				c.mut(pod)
			}
			err := k8s.Create(context.Background(), pod)
			if err == nil || !strings.Contains(err.Error(), "rolekeeper: ") || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want a refusal from rolekeeper about %q", err, c.want)
			}
		})
	}
}

// TestWebhookDown: while the API server cannot reach the webhook, a labelled pod is refused
// with a message naming rolekeeper (failurePolicy Fail), and other pods are created as usual.
func TestWebhookDown(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, "webhook-down")
	var conf admissionv1.MutatingWebhookConfiguration
	if err := k8s.Get(ctx, client.ObjectKey{Name: webhooks.ConfigurationName}, &conf); err != nil {
		t.Fatal(err)
	}
	l, err := (&net.ListenConfig{}).Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "https://" + l.Addr().String() + webhooks.PodPath
	_ = l.Close()
	original := conf.Webhooks[0].ClientConfig.URL
	conf.Webhooks[0].ClientConfig.URL = &dead
	if err := k8s.Update(ctx, &conf); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := k8s.Get(ctx, client.ObjectKey{Name: webhooks.ConfigurationName}, &conf); err != nil {
			t.Fatal(err)
		}
		conf.Webhooks[0].ClientConfig.URL = original
		if err := k8s.Update(ctx, &conf); err != nil {
			t.Fatal(err)
		}
	}()
	labelled := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "labelled", Namespace: ns, Labels: map[string]string{inject.LabelAssumedRole: "reader"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:1"}}}}
	err = k8s.Create(ctx, labelled)
	if err == nil || !strings.Contains(err.Error(), webhooks.WebhookName) || !strings.Contains(err.Error(), "rolekeeper") {
		t.Fatalf("labelled pod while the webhook is down: %v", err)
	}
	t.Logf("refused: %v", err)
	createPod(t, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "plain", Namespace: ns}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:1"}}}})
}

// addContainerPath serves a second mutating webhook, called after rolekeeper's, that adds a
// container to pods labelled test.rolekeeper.io/add-container (as a service mesh adds its proxy).
const addContainerPath = "/test-add-container"

func addContainer(_ context.Context, req admission.Request) admission.Response {
	pod := &corev1.Pod{}
	if err := json.Unmarshal(req.Object.Raw, pod); err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	if !slices.ContainsFunc(pod.Spec.Containers, func(c corev1.Container) bool { return c.Name == "added" }) {
		pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: "added", Image: "proxy:1"})
	}
	raw, _ := json.Marshal(pod)
	return admission.PatchResponseFromRaw(req.Object.Raw, raw)
}

// TestReinvocation: a container that a later webhook adds still gets the environment, because
// the API server calls rolekeeper's webhook again (reinvocationPolicy IfNeeded), and the second
// call adds nothing twice.
func TestReinvocation(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, "reinvocation")
	url := fmt.Sprintf("https://%s%s", net.JoinHostPort(wio.LocalServingHost, strconv.Itoa(wio.LocalServingPort)), addContainerPath)
	conf := &admissionv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "zz-test-add-container"},
		Webhooks: []admissionv1.MutatingWebhook{{
			Name:                    "add-container.test.rolekeeper.io",
			AdmissionReviewVersions: []string{"v1"},
			ClientConfig:            admissionv1.WebhookClientConfig{URL: &url, CABundle: wio.LocalServingCAData},
			Rules: []admissionv1.RuleWithOperations{{Operations: []admissionv1.OperationType{admissionv1.Create},
				Rule: admissionv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}}},
			ObjectSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"test.rolekeeper.io/add-container": "true"}},
			SideEffects:    ptr.To(admissionv1.SideEffectClassNone),
		}}}
	if err := k8s.Create(ctx, conf); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = k8s.Delete(ctx, conf) }()
	pod := createPod(t, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "meshed", Namespace: ns,
		Labels: map[string]string{inject.LabelAssumedRole: "reader", "test.rolekeeper.io/add-container": "true"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:1"}}}})
	if len(pod.Spec.Containers) != 2 || len(pod.Spec.InitContainers) != 1 {
		t.Fatalf("containers %d, init containers %d", len(pod.Spec.Containers), len(pod.Spec.InitContainers))
	}
	for _, c := range pod.Spec.Containers {
		if len(c.Env) != 2 || c.Env[0].Name != inject.EnvFullURI || len(c.VolumeMounts) != 1 {
			t.Errorf("container %s: env %v, mounts %v", c.Name, c.Env, c.VolumeMounts)
		}
	}
}
